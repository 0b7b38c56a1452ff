"""Page 1: norm growth without weight decay (001 Fig. 6)."""

from __future__ import annotations

import streamlit as st

from explorer.computations import LR_CHOICES, STEP_CHOICES, norm_growth
from explorer.display import axes_row, show
from scalewise.figures.layout import colors


def main() -> None:
    st.header("1 · Norm growth without weight decay (001 Fig. 6)")
    st.write("SGD on a scale-invariant weight from ‖w₀‖ = 1: the exact recurrence ‖w⁺‖² = ‖w‖² + "
             "α²g²/‖w‖² (001 Eq. 23, λ = 0), dashed the closed-form law ‖w_k‖² = √(1 + k/k₀) "
             "(001 Sec. 4.3). Late in training the effective LR no longer depends on α.")
    lrs = st.multiselect("Learning rates α", LR_CHOICES, default=(0.01, 0.1, 1.0))
    steps = st.select_slider("Steps", STEP_CHOICES, value=30_000)
    grad_norm = st.number_input("g = ‖∇J(ŵ)‖ at unit norm", 0.01, 100.0, 1.0)
    if not lrs:
        st.info("Pick at least one learning rate.")
        return
    data = norm_growth(tuple(sorted(lrs)), steps, grad_norm)
    fig, (left, right) = axes_row(2)
    for (lr, group), color in zip(data.groupby("lr"), colors(len(lrs))):
        k = group["step"].clip(lower=1)
        left.loglog(k, group["norm_sq"], color=color, label=f"α = {lr:g}")
        left.loglog(k, group["law_norm_sq"], color=color, ls="--", lw=0.9)
        right.loglog(k, group["effective_lr"], color=color, label=f"α = {lr:g}")
        right.loglog(k, group["law_effective_lr"], color=color, ls="--", lw=0.9)
    left.set(xlabel="step k", ylabel="‖w_k‖²", title="Norm (dashed: √(1+k/k₀) law)")
    right.set(xlabel="step k", ylabel="α/‖w_k‖²", title="Effective learning rate")
    left.legend()
    show(fig, data, "norm_growth")


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
