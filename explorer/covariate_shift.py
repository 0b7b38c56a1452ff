"""Page 6: internal covariate shift, the outlier eigenvalue of uncentered activations, with the
committed ``ics`` report."""

from __future__ import annotations

import streamlit as st

from explorer.computations import outliers
from explorer.display import axes_row, reference_section, show


def main() -> None:
    st.header("6 · Internal covariate shift")
    st.write("Activations with mean m and covariance I give K-FAC's factor A = E[aaᵀ] = I + mmᵀ "
             "an outlier eigenvalue 1 + ‖m‖²; with the bias coordinate, the larger root of "
             "ν² − (2 + ‖m‖²)ν + 1 (001 Sec. 3, Eq. 5; theory.kronecker). Measured: the top "
             "eigenvalue of A estimated from sampled activations.")
    columns = st.columns(3)
    max_mean = columns[0].slider("largest ‖m‖", 0.5, 10.0, 4.0)
    dim = columns[1].select_slider("units", (8, 16, 32, 64), value=32)
    samples = columns[2].select_slider("samples", (512, 1024, 4096, 16384), value=4096)
    data = outliers(max_mean, dim, samples, 0)
    fig, (ax,) = axes_row(1, width=7.0)
    ax.semilogy(data["mean_norm"], data["theory"], "k-", label="theory 1 + ‖m‖²")
    ax.semilogy(data["mean_norm"], data["theory_homogeneous"], "k--",
                label="theory, with bias coordinate")
    ax.semilogy(data["mean_norm"], data["measured"], "o", color="tab:blue", label="measured")
    ax.semilogy(data["mean_norm"], data["measured_homogeneous"], "s", color="tab:orange",
                mfc="none", label="measured, with bias coordinate")
    ax.set(xlabel="‖m‖ (mean of the activations)", ylabel="largest eigenvalue of A")
    ax.legend()
    show(fig, data, "covariate_shift_outlier")
    reference_section("ics")


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
