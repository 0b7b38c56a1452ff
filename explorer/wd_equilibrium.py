"""Page 2: the weight-decay equilibrium of each simulated optimizer (001 Fig. 7)."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from explorer.computations import (
    DIM_CHOICES,
    OPTIMIZERS,
    SETTLING,
    SPHERE_DIM,
    STEP_CHOICES,
    default_lr,
    default_weight_decay,
    settling_steps,
    sphere_trajectory,
    time_constant,
    wd_equilibrium,
    wd_trajectory,
)
from explorer.display import intuition, ratio_metrics, show_comparison
from scalewise.figures.curves import wd_comparison
from scalewise.figures.layout import format_number
from scalewise.vocabulary import Optimizer


def main() -> None:
    st.header("2 · Weight-decay equilibrium (001 Fig. 7)")
    intuition("Weight decay shrinks a scale-invariant weight by the factor 1 − αλ every step "
              "while the gradient step, orthogonal to it, lengthens it by α²g²/‖w‖². The two "
              "balance at an equilibrium norm, so the effective learning rate stops decaying and "
              "settles at about √(2αλ)/g for SGD (001 Eq. 24-25), whatever the initial norm: "
              "weight decay sets the effective learning rate. Each optimizer has its own "
              "equilibrium (theory.equilibria) and approaches it at its own rate.")
    columns = st.columns(5)
    optimizer = columns[0].selectbox("Optimizer", OPTIMIZERS,
                                     format_func=lambda o: Optimizer(o).label)
    lr, weight_decay, momentum, betas, dim = _optimizer_widgets(optimizer, columns[1:])
    steps, sphere = _run_widgets(optimizer)
    if weight_decay <= 0:
        st.info("Set a weight decay λ > 0: without it there is no equilibrium, and the norm "
                "grows for ever (page 1).")
        return
    try:
        target = wd_equilibrium(optimizer, lr, weight_decay, momentum, betas, dim)
        trajectories = _trajectories(optimizer, lr, weight_decay, steps, momentum, betas, dim,
                                     sphere)
    except ValueError as error:
        st.error(f"Impossible input: {error}")
        return
    _equilibrium_summary(target, steps)
    if not trajectories:
        st.info("Theory has no mean-field map for this optimizer; tick “check with the sphere "
                "engine” above to simulate it.")
        return
    _divergence(trajectories)
    comparison = wd_comparison(trajectories, target if isinstance(target, dict) else None)
    show_comparison(comparison, f"wd_equilibrium_{optimizer}")
    if isinstance(target, dict):
        ratio_metrics(comparison, f"at step {steps:,}", panel=comparison.panels[0])


def _optimizer_widgets(optimizer: str, columns) -> tuple[float, float, float, tuple[float, float],
                                                       int]:
    """The hyperparameters ``optimizer`` reads (vocabulary.PROPERTIES), each with its widget in
    one of the four ``columns``; keyed by the optimizer, so that each starts from its own
    defaults."""
    properties = Optimizer.parse(optimizer).properties
    lr = columns[0].number_input("Learning rate α", 1e-6, 10.0, default_lr(optimizer),
                                 format="%g", key=f"lr-{optimizer}")
    weight_decay = columns[1].number_input("Weight decay λ", 0.0, 10.0,
                                           default_weight_decay(optimizer), format="%g",
                                           key=f"wd-{optimizer}")
    momentum, betas, dim = 0.0, (0.9, 0.999), SPHERE_DIM
    if properties.uses_momentum:
        momentum = columns[2].slider("Momentum", 0.0, 0.99, properties.default_momentum,
                                     key=f"momentum-{optimizer}")
    if "betas" in properties.hyperparameters:
        betas = (columns[2].slider("β₁", 0.0, 0.99, 0.9, key=f"beta1-{optimizer}"),
                 columns[3].slider("β₂", 0.9, 0.9999, 0.999, format="%.4f",
                                   key=f"beta2-{optimizer}"))
    if properties.adaptive:
        dim = st.select_slider("Dimension d of the weight vector (the adaptive step depends on "
                               "it)", DIM_CHOICES, value=SPHERE_DIM, key=f"dim-{optimizer}")
    return lr, weight_decay, momentum, betas, dim


def _run_widgets(optimizer: str) -> tuple[int, bool]:
    """Steps, starting from the fewest that show this optimizer's default settings settle
    (three time constants), and whether to check against the sphere engine."""
    target = _default_target(optimizer)
    rate = target["approach_rate"] if isinstance(target, dict) else math.nan
    start = settling_steps(rate) or STEP_CHOICES[-1]
    columns = st.columns([3, 2])
    steps = columns[0].select_slider("Steps", STEP_CHOICES, value=max(start, 3000),
                                     key=f"steps-{optimizer}")
    sphere = columns[1].checkbox(
        "Check with the sphere engine (slower)", value=False, key=f"sphere-{optimizer}",
        help="Explicit weight vectors trained by the optimizer's real update rule on random "
             "tangent gradients (mean of 4 runs): the model whose expectation the mean-field "
             "map iterates.")
    return steps, sphere


def _default_target(optimizer: str) -> dict[str, float] | str:
    properties = Optimizer(optimizer).properties
    return wd_equilibrium(optimizer, default_lr(optimizer), default_weight_decay(optimizer),
                          properties.default_momentum if properties.uses_momentum else 0.0,
                          (0.9, 0.999), SPHERE_DIM)


def _trajectories(optimizer: str, lr: float, weight_decay: float, steps: int, momentum: float,
                  betas: tuple[float, float], dim: int, sphere: bool) -> dict:
    found = {}
    mean_field = wd_trajectory(optimizer, lr, weight_decay, steps, momentum, betas, dim)
    if mean_field is not None:
        found["exact recurrence (001 Eq. 23)" if optimizer == "sgd"
              else "mean-field map (theory.mean_field)"] = mean_field
    if sphere:
        sphere_dim = dim if Optimizer(optimizer).properties.adaptive else SPHERE_DIM
        found[f"sphere engine, d = {sphere_dim}, 4 runs"] = sphere_trajectory(
            optimizer, lr, weight_decay, steps, momentum, betas, sphere_dim)
    return found


def _divergence(trajectories: dict) -> None:
    for source, table in trajectories.items():
        finite = np.isfinite(table["norm_sq"].to_numpy())
        if not finite.all():
            last = int(table["step"][finite].max()) if finite.any() else 0
            st.warning(f"The {source} leaves the floating-point range after step {last:,}: at "
                       "these settings the dynamics are unstable (lower α, λ or the momentum).")


def _equilibrium_summary(target: dict[str, float] | str, steps: int) -> None:
    if isinstance(target, str):
        st.warning(f"No equilibrium, by theory: {target}")
        return
    columns = st.columns(4)
    columns[0].metric("‖w‖² at equilibrium", format_number(target["norm_sq"], 4))
    columns[1].metric("effective LR", format_number(target["effective_lr"], 4))
    columns[2].metric("angular update", f"{format_number(target['angular_update'], 4)} rad")
    rate = target["approach_rate"]
    tau = time_constant(rate)
    columns[3].metric("time constant τ", "—" if math.isnan(tau) else f"{tau:,.0f} steps",
                      help="Steps per e-fold of a deviation from the equilibrium: −1/ln|r| for "
                           "the approach rate r.")
    st.caption(_approach_text(rate, tau))
    needed = SETTLING * tau
    if math.isfinite(needed) and steps < needed:
        st.warning(f"{steps:,} steps are fewer than {SETTLING} time constants "
                   f"({needed:,.0f} steps): the run has not settled yet. Choose at least "
                   f"{settling_steps(rate) or math.ceil(needed):,} steps.")


def _approach_text(rate: float, tau: float) -> str:
    """What the approach rate ``rate`` means, including an oscillating (negative) one."""
    if math.isnan(rate):
        return "Theory has not derived this optimizer's approach rate."
    if rate == 0:
        return "The approach rate is 0: the equilibrium is reached in one step."
    base = (f"A deviation from the equilibrium shrinks by the approach rate |r| = "
            f"{abs(rate):.6f} per step: a time constant of {tau:,.4g} steps.")
    if rate > 0:
        return base
    return (base + f" The rate is negative (r = {rate:.4f}): the approach oscillates, the "
            "deviation changes sign every step while its size shrinks by |r|. For SGD this "
            "happens once αλ > 1 − 1/√2 ≈ 0.29 (001 Eq. 23 linearised, identity "
            "wd_approach_rate).")


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
