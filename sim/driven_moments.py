"""Weight norms of momentum SGD and the Adam family driven by the measured tangential energy of
each update: the radial part of every step predicted from the buffer's memory, nothing else
assumed but ``<G, w> = 0`` and (Adam family) one step scale for all coordinates.

Each step iterates theory's driven moment step (:func:`scalewise.theory.radial_update.
driven_step`, the mean field's moment map with the buffer's energy taken from the measurement)::

    x' = rho^2 x - 2 rho c P + tau + c^2 P^2 / x,    p' = rho P - (tau + c^2 P^2 / x) / c

with ``x = ||w||^2``, ``p = <w, m>`` (0 before the first step), ``P = b p + a l x`` and the
measured ``tau``. The step scale ``c`` is the learning rate for momentum SGD; for Adam, AdamW and
RMSprop it is ``torch.optim``'s ``lr / ((1 - beta1^t) (sqrt(v_hat) + eps))`` with an isotropic
``v_hat``: the running mean (bias-corrected as torch does) of the measured squared gradient per
coordinate, ``(||G||^2 + l^2 x) / d``. Where the prediction misses, either the preconditioner is
not isotropic (Adam family) or the weights are not scale invariant; the mean field
(:func:`scalewise.sim.drive`) additionally predicts ``tau`` from the gradient norm alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from scalewise import checks
from scalewise.sim.schedules import ScheduleLike, lr_factors
from scalewise.theory.radial_update import DRIVEN, numpy_driven_step
from scalewise.vocabulary import Decay, Optimizer


def drive_moments(
    optimizer: str,
    tangent_energy: Any,
    *,
    lr: float,
    init_norm_sq: Any,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    rmsprop_alpha: float = 0.99,
    grad_sq: Any = None,
    dim: int | None = None,
    schedule: ScheduleLike = None,
) -> np.ndarray:
    """Predicted ``||w_k||^2`` for ``k = 0 .. steps`` of ``optimizer`` (``"sgdm"``, ``"adam"``,
    ``"adamw"``, ``"rmsprop"``; their ``torch.optim`` conventions), shape ``(steps + 1, *shape)``.

    ``tangent_energy``: per step ``||u_k||^2 - <w_hat_k, u_k>^2`` of the update (measured per
    unit: :data:`~scalewise.models.probes.UNIT_STATISTICS` ``update_sq`` minus
    ``w_dot_update^2 / norm_sq``), shape ``(steps, *shape)``; ``init_norm_sq``: the measured
    ``||w_0||^2`` (broadcasts against ``shape``). The Adam family also needs ``grad_sq``, the
    measured ``||G_k||^2`` of the loss gradient (same shape as ``tangent_energy``), and ``dim``,
    the coordinates of a unit."""
    name = Optimizer.parse(optimizer)
    checks.one_of("optimizer", name.value, DRIVEN)
    energy = checks.nonnegative("tangent_energy", tangent_energy)
    if energy.ndim == 0:
        checks.fail("tangent_energy", tangent_energy, "an array of shape (steps, *shape)")
    steps = energy.shape[0]
    x = np.broadcast_to(checks.positive("init_norm_sq", init_norm_sq), energy.shape[1:]).copy()
    lrs = checks.number("lr", lr, 0.0, low_open=True) * lr_factors(schedule, steps)  # (steps,)
    wd = checks.number("weight_decay", weight_decay, 0.0)
    mu = checks.number("momentum", momentum, 0.0, 1.0)
    adam = _adam_settings(name, grad_sq, energy.shape, dim, betas, rmsprop_alpha, wd)
    step = numpy_driven_step(DRIVEN[name.value])
    p, v = np.zeros_like(x), np.zeros_like(x)
    norms = [x]
    for k in range(steps):
        c = lrs[k]
        if adam is not None:  # torch's Adam/RMSprop step scale with an isotropic v_hat
            v = adam.beta2 * v + (1 - adam.beta2) * (adam.grad_sq[k] + adam.l2**2 * x) / adam.dim
            first, second = adam.corrections(k + 1)
            c = lrs[k] / (first * (np.sqrt(v / second) + eps))
        x, p = step(x, p, energy[k], c, lrs[k], wd, mu, adam.beta1 if adam else 0.0)
        x = np.broadcast_to(np.asarray(x, dtype=np.float64), norms[0].shape)
        norms.append(x)
    return np.stack(norms)


@dataclass(frozen=True)
class _AdamSettings:
    """What the Adam family's step scale needs: the measured ``grad_sq`` (steps, *shape), the
    unit's ``dim``, the coupled ``l2`` term (0 for AdamW), the decays and whether the moments
    are bias-corrected (Adam, AdamW; not RMSprop)."""

    grad_sq: np.ndarray
    dim: int
    l2: float
    beta1: float
    beta2: float
    corrected: bool

    def corrections(self, t: int) -> tuple[float, float]:
        if not self.corrected:
            return 1.0, 1.0
        return 1 - self.beta1**t, 1 - self.beta2**t


def _adam_settings(name: Optimizer, grad_sq: Any, shape: tuple[int, ...], dim: int | None,
                   betas: tuple[float, float], rmsprop_alpha: float,
                   weight_decay: float) -> _AdamSettings | None:
    if not name.properties.adaptive:
        return None
    energy = checks.nonnegative("grad_sq", grad_sq)
    if energy.shape != shape:
        checks.fail("grad_sq", grad_sq, f"an array of shape {shape}, as tangent_energy (the "
                    f"measured ||G||^2 per step, needed by {name.value!r})")
    l2 = weight_decay if name.properties.decay is Decay.COUPLED else 0.0
    if name is Optimizer.RMSPROP:
        return _AdamSettings(energy, checks.integer("dim", dim, 1), l2, 0.0,
                             checks.number("rmsprop_alpha", rmsprop_alpha, 0.0, 1.0), False)
    return _AdamSettings(energy, checks.integer("dim", dim, 1), l2,
                         checks.number("betas[0]", betas[0], 0.0, 1.0),
                         checks.number("betas[1]", betas[1], 0.0, 1.0), True)
