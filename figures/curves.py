"""The curves of 001 Fig. 6 and Fig. 7, any optimizer's approach to its equilibrium and K-FAC's
effective damping, as long-form tables (one row per recorded step and setting) and as
:class:`~scalewise.figures.comparison.Comparison` s of theory beside the simulation, for the
explorer, its downloads and CSV exports.

The trajectories come from theory's mean-field moment map iterated step by step
(:func:`sim.mean_field`; for SGD it is 001 Eq. 23 exactly, the recurrence engine's values to
rounding), recorded at about :data:`POINTS` steps evenly spaced on a log axis, so 100,000 steps
take milliseconds; the closed forms come from :mod:`theory.equilibrium` and
:func:`sim.equilibrium`; the optional check by the sphere engine from :func:`sim.simulate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scalewise import checks
from scalewise.figures.comparison import Comparison
from scalewise.sim.dynamics import simulate
from scalewise.sim.equilibria import equilibrium
from scalewise.sim.mean_field import log_steps, mean_field
from scalewise.sim.recurrence import effective_damping
from scalewise.theory import equilibrium as eq
from scalewise.theory.equilibria import NO_EQUILIBRIUM
from scalewise.vocabulary import Optimizer

POINTS = 400  # points per curve: enough for a smooth curve on a log step axis
SPHERE_RECORDS = 1000  # the sphere engine records several arrays per step: fewer records
QUANTITIES = ("norm_sq", "effective_lr", "angular_update")
TITLES = {"norm_sq": "‖w‖²", "effective_lr": "effective LR", "angular_update":
          "angular update (rad/step)"}


def norm_growth_table(lrs: Sequence[float], *, steps: int, grad_norm: float = 1.0) -> pd.DataFrame:
    """001 Fig. 6: SGD without weight decay from ``||w_0|| = 1``; per learning rate and recorded
    step the simulated ``norm_sq`` and ``effective_lr`` (001 Eq. 23) beside the square-root law
    ``||w_k||^2 = sqrt(1 + k / k0)`` and its effective LR (001 Sec. 4.3;
    :func:`theory.equilibrium.growth_norm_sq`)."""
    if len(lrs) == 0:
        checks.fail("lrs", lrs, "at least one learning rate")
    k = log_steps(steps, POINTS)
    parts = []
    for lr in lrs:
        t = mean_field("sgd", lr=lr, weight_decay=0.0, steps=steps, grad_norm=grad_norm,
                       record=k)
        law = eq.growth_norm_sq(k, 1.0, lr, grad_norm)
        parts.append(pd.DataFrame({"step": k, "lr": float(lr), "norm_sq": t.norm_sq,
                                   "effective_lr": t.effective_lr, "law_norm_sq": law,
                                   "law_effective_lr": eq.effective_lr(law, lr)}))
    return pd.concat(parts, ignore_index=True)


def norm_growth_comparison(data: pd.DataFrame) -> Comparison:
    """:func:`norm_growth_table` as theory (the square-root law) beside data (the exact
    recurrence), per learning rate."""
    series = [f"α = {lr:g}" for lr in data["lr"]]
    rows = [pd.DataFrame({"panel": TITLES[name], "series": series, "role": role,
                          "step": data["step"], "value": data[column]})
            for name in ("norm_sq", "effective_lr")
            for role, column in (("data", name), ("theory", f"law_{name}"))]
    return Comparison(pd.concat(rows, ignore_index=True), theory="√(1+k/k₀) law",
                      data="recurrence", log_y=(TITLES["norm_sq"], TITLES["effective_lr"]))


def wd_trajectory_table(optimizer: str, *, lr: float, weight_decay: float, steps: int,
                        momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                        dim: int = 64) -> pd.DataFrame:
    """001 Fig. 7 for any optimizer with a mean-field map: ``norm_sq``, ``effective_lr`` and
    ``angular_update`` per recorded step from ``||w_0|| = 1`` (SGD: 001 Eq. 23 exactly; the
    others: theory's mean-field map, :func:`sim.mean_field`, on vectors of dimension ``dim``)."""
    t = mean_field(optimizer, lr=lr, weight_decay=weight_decay, steps=steps, momentum=momentum,
                   beta1=betas[0], dim=dim, record=log_steps(steps, POINTS))
    return pd.DataFrame({"step": t.step, **{name: getattr(t, name) for name in QUANTITIES}})


def sphere_trajectory_table(optimizer: str, *, lr: float, weight_decay: float, steps: int,
                            momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                            dim: int = 64, runs: int = 4, seed: int = 0) -> pd.DataFrame:
    """The same quantities from the sphere engine: ``runs`` explicit weight vectors of dimension
    ``dim`` trained by the optimizer's real update rule on random tangent gradients (their mean
    per recorded step)."""
    t = simulate(optimizer, lr=lr, weight_decay=weight_decay, steps=steps, momentum=momentum,
                 betas=betas, dim=dim, runs=runs, seed=seed, engine="sphere",
                 record_every=max(1, steps // SPHERE_RECORDS))
    i = np.unique(np.searchsorted(t.step, log_steps(int(t.step[-1]), POINTS)))
    return pd.DataFrame({"step": t.step[i], **{name: t.run_mean(name)[i] for name in QUANTITIES}})


def equilibrium_or_reason(optimizer: str, *, lr: float, weight_decay: float,
                          momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                          dim: int = 64) -> dict[str, float] | str:
    """Theory's equilibrium of ``optimizer`` (``norm_sq``, ``effective_lr``, ``angular_update``,
    ``approach_rate``), or, where theory proves there is none (Adagrad), its reason."""
    name = Optimizer.parse(optimizer).value
    if name in NO_EQUILIBRIUM:
        return NO_EQUILIBRIUM[name]
    values = equilibrium(name, lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas,
                         dim=dim)
    return {key: float(value) for key, value in values.items()}


def wd_comparison(trajectories: Mapping[str, pd.DataFrame],
                  target: Mapping[str, float] | None) -> Comparison:
    """Trajectories (source -> :func:`wd_trajectory_table` or :func:`sphere_trajectory_table`)
    as data beside theory's equilibrium ``target`` (drawn over their steps; none without one)."""
    rows = [pd.DataFrame({"panel": TITLES[name], "series": source, "role": "data",
                          "step": table["step"], "value": table[name]})
            for source, table in trajectories.items() for name in QUANTITIES]
    if target is not None:
        ends = [min(t["step"].min() for t in trajectories.values()),
                max(t["step"].max() for t in trajectories.values())]
        rows += [pd.DataFrame({"panel": TITLES[name], "series": "equilibrium",
                               "role": "theory", "step": ends, "value": target[name]})
                 for name in QUANTITIES]
    return Comparison(pd.concat(rows, ignore_index=True), theory="equilibrium",
                      data="simulated", log_y=tuple(TITLES.values()))


def effective_damping_table(*, lr: float, weight_decay: float, damping: float, steps: int,
                            grad_norm: float = 1.0) -> pd.DataFrame:
    """K-FAC's effective damping ``eta ||w_k||^2`` of a scale-invariant layer (001 Sec. 5.2,
    004 Eq. 14; :func:`sim.effective_damping`) along the SGD norm trajectory of 001 Eq. (23),
    without and with weight decay: it grows with the norm without (beside theory's square-root
    law), and settles with (beside theory's equilibrium, 001 Eq. 24)."""
    k = log_steps(steps, POINTS)
    parts = []
    for wd in (0.0, weight_decay):
        t = mean_field("sgd", lr=lr, weight_decay=wd, steps=steps, grad_norm=grad_norm,
                       record=k)
        law = (eq.growth_norm_sq(k, 1.0, lr, grad_norm) if wd == 0
               else np.full(len(k), float(eq.wd_norm_sq(lr, wd, grad_norm))))
        parts.append(pd.DataFrame({"step": k, "weight_decay": wd, "norm_sq": t.norm_sq,
                                   "effective_damping": effective_damping(t.norm_sq, damping),
                                   "theory": effective_damping(law, damping)}))
    return pd.concat(parts, ignore_index=True)


def effective_damping_comparison(data: pd.DataFrame) -> Comparison:
    """:func:`effective_damping_table` as theory beside the recurrence, per weight decay."""
    series = ["no weight decay" if wd == 0 else f"λ = {wd:g}" for wd in data["weight_decay"]]
    panel = "η‖w_k‖²"
    rows = [pd.DataFrame({"panel": panel, "series": series, "role": role, "step": data["step"],
                          "value": data[column]})
            for role, column in (("data", "effective_damping"), ("theory", "theory"))]
    return Comparison(pd.concat(rows, ignore_index=True), theory="law / equilibrium",
                      data="recurrence", log_y=(panel,))
