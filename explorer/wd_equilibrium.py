"""Page 2: the weight-decay equilibrium of each simulated optimizer (001 Fig. 7)."""

from __future__ import annotations

import streamlit as st

from explorer.computations import (
    OPTIMIZERS,
    SPHERE_DIM,
    STEP_CHOICES,
    default_lr,
    wd_equilibrium,
    wd_trajectory,
)
from explorer.display import axes_row, show
from scalewise.theory import equilibrium as eq
from scalewise.vocabulary import Optimizer


def main() -> None:
    st.header("2 · Weight-decay equilibrium (001 Fig. 7)")
    st.write("With weight decay the norm, effective LR and angular update settle at theory's "
             "equilibrium (dotted; 001 Eq. 24-25 for SGD, theory.equilibria for the others). SGD "
             f"iterates the exact recurrence; the others train {SPHERE_DIM}-dimensional unit "
             "directions driven by gradient noise (sphere engine, mean of 4 runs).")
    optimizer = st.selectbox("Optimizer", OPTIMIZERS)
    lr, weight_decay, momentum, betas = _optimizer_widgets(optimizer)
    steps = st.select_slider("Steps", STEP_CHOICES[:3], value=3000)
    if weight_decay <= 0:
        st.info("Set a weight decay λ > 0: without it there is no equilibrium (see page 1).")
        return
    try:
        data = wd_trajectory(optimizer, lr, weight_decay, steps, momentum, betas)
        target = wd_equilibrium(optimizer, lr, weight_decay, momentum, betas)
    except ValueError as error:
        st.error(f"Impossible input: {error}")
        return
    _equilibrium_summary(target)
    fig, axes = axes_row(3)
    for ax, name, label in zip(axes, ("norm_sq", "effective_lr", "angular_update"),
                               ("‖w‖²", "effective LR", "angular update (rad/step)")):
        ax.loglog(data["step"].clip(lower=1), data[name], color="tab:blue", label="simulated")
        if isinstance(target, dict):
            ax.axhline(target[name], color="k", ls=":", label="equilibrium (theory)")
        ax.set(xlabel="step k", ylabel=label)
    axes[0].legend()
    show(fig, data, f"wd_equilibrium_{optimizer}")


def _optimizer_widgets(optimizer: str) -> tuple[float, float, float, tuple[float, float]]:
    """The hyperparameters ``optimizer`` reads (vocabulary.PROPERTIES), each with its widget."""
    properties = Optimizer.parse(optimizer).properties
    lr = st.number_input("Learning rate α", 1e-6, 10.0, default_lr(optimizer), format="%g")
    weight_decay = st.number_input("Weight decay λ", 0.0, 10.0, 1e-2, format="%g")
    momentum = 0.0
    if properties.uses_momentum:
        momentum = st.slider("Momentum", 0.0, 0.99, properties.default_momentum)
    betas = (0.9, 0.999)
    if "betas" in properties.hyperparameters:
        betas = (st.slider("β₁", 0.0, 0.99, 0.9), st.slider("β₂", 0.9, 0.9999, 0.999,
                                                           format="%.4f"))
    return lr, weight_decay, momentum, betas


def _equilibrium_summary(target: dict[str, float] | str) -> None:
    if isinstance(target, str):
        st.warning(f"No equilibrium, by theory: {target}")
        return
    rate = target["approach_rate"]
    columns = st.columns(4)
    columns[0].metric("‖w‖² at equilibrium", f"{target['norm_sq']:.4g}")
    columns[1].metric("effective LR", f"{target['effective_lr']:.4g}")
    columns[2].metric("angular update", f"{target['angular_update']:.4g} rad")
    columns[3].metric("approach rate per step", f"{rate:.6f}")
    st.caption(f"A deviation from the equilibrium shrinks by the approach rate per step: a time "
               f"constant of {eq.time_constant(rate):.4g} steps. Runs shorter than a few time "
               "constants have not settled yet.")


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
