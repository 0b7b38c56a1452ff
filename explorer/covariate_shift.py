"""Page 6: internal covariate shift, the outlier eigenvalue of uncentered activations, with the
committed ``ics`` report."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.computations import outliers
from explorer.display import intuition, ratio_metrics, show_comparison
from explorer.reports import reference_section
from scalewise.figures.comparison import Comparison


def main() -> None:
    st.header("6 · Internal covariate shift")
    intuition("Activations that are not centered make K-FAC's input factor A = E[aaᵀ] = "
              "Cov + mmᵀ ill-conditioned: the mean adds one outlier eigenvalue 1 + ‖m‖² in the "
              "direction of m, far above the rest. Gradient descent then crawls along the other "
              "directions — the curvature view of internal covariate shift, which centering "
              "(batch norm) removes (001 Sec. 3, Eq. 5; theory.kronecker).")
    columns = st.columns(3)
    max_mean = columns[0].slider("largest ‖m‖", 0.5, 10.0, 4.0)
    dim = columns[1].select_slider("units", (8, 16, 32, 64), value=32)
    samples = columns[2].select_slider("samples", (512, 1024, 4096, 16384), value=4096)
    data = outliers(max_mean, dim, samples, 0)
    st.caption("Thin, with points: the top eigenvalue of A estimated from sampled activations "
               "with mean m and covariance I; thick translucent: theory, 1 + ‖m‖², and with the "
               "bias coordinate the larger root of ν² − (2 + ‖m‖²)ν + 1. The estimate carries a "
               "sampling error of order √(units / samples).")
    comparison = _outlier_comparison(data)
    show_comparison(comparison, "covariate_shift_outlier")
    ratio_metrics(comparison, f"at ‖m‖ = {max_mean:g}")
    reference_section("ics")


def _outlier_comparison(data: pd.DataFrame) -> Comparison:
    panel = "largest eigenvalue of A"
    series = {"": "A = E[aaᵀ]", "_homogeneous": "with the bias coordinate"}
    rows = [pd.DataFrame({"panel": panel, "series": label, "role": role,
                          "step": data["mean_norm"], "value": data[f"{column}{suffix}"]})
            for suffix, label in series.items()
            for role, column in (("data", "measured"), ("theory", "theory"))]
    return Comparison(pd.concat(rows, ignore_index=True), x_title="‖m‖ (mean of the activations)",
                      theory="theory", data="measured", x_scale="linear", log_y=(panel,),
                      markers=True)


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
