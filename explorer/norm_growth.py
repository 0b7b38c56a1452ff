"""Page 1: norm growth without weight decay (001 Fig. 6)."""

from __future__ import annotations

import streamlit as st

from explorer.computations import LR_CHOICES, STEP_CHOICES, norm_growth
from explorer.display import intuition, ratio_metrics, show_comparison
from scalewise.figures.curves import norm_growth_comparison


def main() -> None:
    st.header("1 · Norm growth without weight decay (001 Fig. 6)")
    intuition("A weight feeding batch norm is scale invariant, so its gradient is orthogonal to "
              "it: every SGD step is the hypotenuse of a right triangle and the norm can only "
              "grow, ‖w⁺‖² = ‖w‖² + α²g²/‖w‖² (001 Eq. 23 with λ = 0). A larger norm makes the "
              "next step smaller on the sphere, α/‖w‖², so the growth slows to the square-root "
              "law ‖w_k‖² ≈ √(1 + k/k₀) and the effective learning rate decays like 1/√k — late "
              "in training at a rate that no longer depends on α (001 Sec. 4.3).")
    columns = st.columns(3)
    lrs = columns[0].multiselect("Learning rates α", LR_CHOICES, default=(0.01, 0.1, 1.0))
    steps = columns[1].select_slider("Steps", STEP_CHOICES, value=100_000)
    grad_norm = columns[2].number_input("g = ‖∇J(ŵ)‖ at unit norm", 0.01, 100.0, 1.0)
    if not lrs:
        st.info("Pick at least one learning rate.")
        return
    data = norm_growth(tuple(sorted(lrs)), steps, grad_norm)
    st.caption("Thin: the exact recurrence from ‖w₀‖ = 1 (step 0 at the left edge); thick "
               "translucent: the square-root law with its k₀ = ‖w₀‖⁴/(2α²g²) from theory. The law "
               "is the recurrence's continuous limit, so their ratio tends to 1 once k ≫ k₀.")
    comparison = norm_growth_comparison(data)
    show_comparison(comparison, "norm_growth")
    ratio_metrics(comparison, f"at step {steps:,}", panel=comparison.panels[0])


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
