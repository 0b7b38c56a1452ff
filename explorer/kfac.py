"""Page 5: K-FAC's effective damping on a BN layer and the Gauss-Newton norm against the
Jacobian norm, with the committed ``kfac`` report."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.computations import STEP_CHOICES, damping, family_norms, stored_gn_norms
from explorer.display import formatted, intuition, ratio_metrics, show_comparison
from explorer.reports import reference_section
from scalewise.figures.comparison import Comparison
from scalewise.figures.curves import effective_damping_comparison

DEPTHS = (0, 1, 2, 3)


def main() -> None:
    st.header("5 · K-FAC")
    intuition("K-FAC divides the gradient by a curvature that scales as 1/‖w‖² on a "
              "scale-invariant layer, so its step does not shrink as the weights grow — except "
              "through its damping η, which weighs like η‖w‖² against that curvature. Without "
              "weight decay the norm grows and the effective damping with it, turning K-FAC "
              "into plain gradient descent; weight decay holds the norm at its equilibrium "
              "(004 Sec. 4.3, mechanism III). Without normalization, weight decay under K-FAC "
              "instead penalizes a Gauss–Newton norm tied to the network's Jacobian "
              "(004 Sec. 4.2, mechanism II).")
    _damping_section()
    _gauss_newton_section()
    reference_section("kfac")


def _damping_section() -> None:
    st.subheader("Effective damping η‖w‖² (001 Sec. 5.2, 004 Eq. 14)")
    columns = st.columns(4)
    lr = columns[0].number_input("α", 1e-4, 10.0, 0.1, format="%g")
    weight_decay = columns[1].number_input("λ", 1e-6, 10.0, 1e-3, format="%g")
    eta = columns[2].number_input("damping η", 1e-6, 10.0, 1e-3, format="%g")
    steps = columns[3].select_slider("Steps", STEP_CHOICES, value=30_000)
    try:
        data = damping(lr, weight_decay, eta, steps)
    except ValueError as error:
        st.error(f"Impossible input: {error}")
        return
    st.caption("Thin: η‖w_k‖² along SGD's exact norm recurrence from ‖w₀‖ = 1; thick "
               "translucent: theory's square-root growth law without decay and the equilibrium "
               "η‖w_∞‖² with it (001 Eq. 24).")
    comparison = effective_damping_comparison(data)
    show_comparison(comparison, "effective_damping")
    ratio_metrics(comparison, f"at step {steps:,}")


def _gauss_newton_section() -> None:
    st.subheader("Gauss–Newton norm vs Jacobian norm (004 Sec. 4.2, Theorem 1)")
    stored = stored_gn_norms()
    if not stored.empty:
        st.write("From the stored runs' costly probes:")
        st.dataframe(formatted(stored), hide_index=True)
    else:
        st.info("No stored run has Gauss–Newton probes (they need a network of Linear layers and "
                "elementwise activations); computed live on a family of bias-free networks with "
                "whitened inputs instead.")
    width = st.slider("Width of the live networks", 2, 8, 4)
    data = family_norms(DEPTHS, width, 0)
    dead = data[data["gn_ratio"].isna()]
    if not dead.empty:
        st.warning("At this width some ReLU networks have a zero Jacobian on these inputs (every "
                   "unit of a layer dead: the network computes a constant), so their ratios are "
                   f"undefined and left out: depth L = {', '.join(map(str, dead['L']))}.")
    st.caption("Thin, with points: θᵀGθ and θᵀĜθ measured on networks of L + 1 weight matrices, "
               "divided by ‖J‖²_F; thick translucent: theory for linear networks, (L+1)² (004 "
               "Lemma 2) and L+1 (K-FAC, 004 Theorem 1). ReLU networks are shown against the "
               "linear theory for contrast.")
    comparison = _gauss_newton_comparison(data)
    show_comparison(comparison, "gauss_newton_norms")


def _gauss_newton_comparison(data: pd.DataFrame) -> Comparison:
    panels = {"gn_ratio": ("θᵀGθ / ‖J‖²_F", "theory_gn_ratio"),
              "kfac_ratio": ("θᵀĜθ / ‖J‖²_F (K-FAC)", "theory_kfac_ratio")}
    rows = []
    for column, (panel, theory) in panels.items():
        rows.append(pd.DataFrame({"panel": panel, "series": data["activation"], "role": "data",
                                  "step": data["L"], "value": data[column]}))
        linear = data[data["activation"] == "linear"]
        rows.append(pd.DataFrame({"panel": panel, "series": "linear", "role": "theory",
                                  "step": linear["L"], "value": linear[theory]}))
    return Comparison(pd.concat(rows, ignore_index=True).dropna(subset=["value"]),
                      x_title="L (L + 1 weight matrices)", theory="theory (linear)",
                      data="measured", x_scale="linear", markers=True)


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
