"""A run's equilibrium, measured with the estimators theory's closed forms are about
(:data:`scalewise.theory.equilibria.ESTIMATORS`), over its settled steps only.

:func:`settle` judges each compared layer of a run (:func:`scalewise.validation.estimators.
settling`: at least five of theory's time constants, and the layer's squared norm over theory's
equilibrium norm at its current gradient norm steady to 1% between the last two windows)
and :func:`estimate` measures, over the last :func:`window` steps and the layer's scale-invariant
units, the unit mean of ``E||w_i||^2``, the effective LR at it, the angular update as a ratio of
sums, and theory's prediction of each from every unit's own ``g = sqrt(E[g^2])`` (its
equilibrium norm averaged over the units in the same way); the mean of per-step angles is kept
for contrast. The layer's effective LR is the one at its mean squared norm: a unit whose ``g``
is small has a small equilibrium norm it approaches slowly from above, and the mean of
per-unit effective LRs would be ruled by such units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalewise.validation.effective_lr.runs import Measured, unit_grad_norm, unit_values
from scalewise.validation.estimators import Settling, angular_update, settling

QUANTITIES = ("angular_update", "effective_lr", "norm_sq")


def window(m: Measured) -> int:
    """Steps measured at the end of a run: two of theory's time constants, at least 100 and at
    most a third of the run."""
    steps = m.run.config.steps
    return int(min(max(2 * m.setting.time_constant(), 100), steps // 3))


def settle(m: Measured, layer: str) -> Settling:
    """Whether ``layer`` of ``m`` has settled, judged on its unit-mean squared norm over
    theory's equilibrium norm at the layer's unit-mean ``g`` of each step: the gradient norm
    keeps falling as the loss does, so the norm itself never stops moving, while its ratio to
    the equilibrium it tracks does. (The ratio ``E<w_k, w_{k+1}> / E||w_k||^2`` would not do:
    for SGD it is ``1 - alpha lam`` at every step, settled or not.)"""
    frame = pd.DataFrame({"x": m.sums("sum_norm_sq")[layer] / m.units.layers[layer].units.size,
                          "g": m.sums("grad_norm_unit")[layer]}).dropna()
    frame = frame[frame["g"] > 0]
    x_star = np.broadcast_to(m.setting.equilibrium(grad_norm=frame["g"].to_numpy(),
                                                   dim=m.dims[layer])["norm_sq"], len(frame))
    return settling(frame["x"].to_numpy(), m.setting.time_constant(), denominator=x_star)


@dataclass(frozen=True)
class Estimate:
    """One layer of one run at equilibrium: ``measured`` and ``predicted`` per quantity of
    :data:`QUANTITIES`, ``mean_of_steps`` the per-step angles' mean (the estimator theory is not
    about), ``grad_norm`` the layer's mean unit ``g``, ``units`` compared."""

    measured: dict[str, float]
    predicted: dict[str, float]
    mean_of_steps: float
    grad_norm: float
    units: int


def window_values(m: Measured, layer: str, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The per-unit records of the last :func:`window` steps, invariant units only
    (records, units)."""
    return unit_values(m, layer, mask, first=m.run.config.steps - window(m))


def estimate(m: Measured, layer: str, mask: np.ndarray) -> Estimate:
    """Theory's estimators of ``layer`` of ``m`` over its settled window (see the module
    docstring), and theory's prediction at each unit's measured ``g``."""
    v = window_values(m, layer, mask)
    x = v["norm_sq"].mean(axis=0)  # (units,) E||w_i||^2
    g = np.sqrt((unit_grad_norm(v) ** 2).mean(axis=0))  # (units,) sqrt(E[g_i^2])
    power = m.setting.name.properties.effective_lr_power
    lr = m.setting.lr
    theory = m.setting.equilibrium(grad_norm=g, dim=m.dims[layer])
    cos_theory = np.broadcast_to(np.cos(theory["angular_update"]), g.shape)
    x_star = np.broadcast_to(theory["norm_sq"], g.shape)  # (units,)
    measured = {
        "angular_update": angular_update(v["w_dot_next"], v["norm_sq"], v["next_norm_sq"]),
        "effective_lr": float(lr / x.mean() ** (power / 2)),
        "norm_sq": float(x.mean()),
    }
    predicted = {
        "angular_update": math.acos(min(1.0, float(np.sum(cos_theory * x_star) / x_star.sum()))),
        "effective_lr": float(lr / x_star.mean() ** (power / 2)),
        "norm_sq": float(x_star.mean()),
    }
    steps = m.sums("angular_update")[layer]
    mean_of_steps = float(steps[steps.index >= m.run.config.steps - window(m)].mean())
    return Estimate(measured, predicted, mean_of_steps, float(g.mean()), int(mask.sum()))
