"""Weight norms under learning-rate and weight-decay schedules: the exact discrete recurrences,
the continuous-time solution, the quasi-static prediction, and the gradient-to-weight ratio.

Every formula is theory's (:mod:`scalewise.theory.norm_under_schedules`), lambdified here:

* :func:`norm_recurrence` iterates the exact per-step map, ``x' = (1 - eta_k lam_k)^2 x +
  eta_k^2 g^2 / x`` (``"sgd"``, 001 Eq. 23) or ``x' = (1 - eta_k lam_k)^2 x + eta_k^2 C``
  (``"scale_free"``: Muon, Lion, AdamW's converged update, in expectation);
* :func:`norm_continuous` solves the continuous equation ``dz/dt = -a z + b`` exactly for rates
  held constant over each step (``z_{k+1} = z*_k + (z_k - z*_k) e^{-a_k}``, ``z* = b/a``), which
  is the integrating-factor solution for a piecewise-constant schedule;
* :func:`quasi_static_norm_sq` is ``z*`` at the current rates, the norm where the schedule is
  slow against the time constant ``1 / a_k`` (:func:`schedule_speed`) and several time
  constants have passed (:func:`elapsed_time_constants`), and :func:`grad_weight_ratio` the
  ratio ``||grad J|| / ||w|| = g / x``.

Recurrence and continuous solution part by the per-step ``(eta lam)^2 x`` the continuum drops
(identity ``norm_ode_from_recurrence``), relatively about ``eta lam / 2`` at equilibrium; the
quasi-static norm parts from both where the schedule moves within a time constant, as at the
end of a decay to zero, where the norm freezes while the quasi-static value keeps falling.

``corrected=True`` replaces the decay by Defazio's ``lam eta_k / eta_max`` (identity
``corrected_decay_solution``): the quasi-static norm and ratio then stay level.

>>> from scalewise.sim.schedules import Linear
>>> lr = 0.1 * Linear().factors(4)
>>> norm_recurrence("sgd", lr, decay_schedule(lr, 0.5), scale=1.0, init_norm_sq=1.0).shape
(5,)
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.theory import norm_under_schedules as theory_schedules
from scalewise.theory.equilibrium import alpha, g, lam, x

KINDS = tuple(theory_schedules.NORM_ODE)
"""``"sgd"`` (the step scales with the gradient) and ``"scale_free"`` (a fixed-size step)."""

_SCALE = {"sgd": g, "scale_free": theory_schedules.C}
_STEP = {kind: sp.lambdify((x, alpha, lam, _SCALE[kind]), theory_schedules.DISCRETE_STEP[kind],
                           "numpy") for kind in KINDS}
_RATES = {kind: sp.lambdify((alpha, lam, _SCALE[kind]), theory_schedules.LINEAR_FORM[kind][1:],
                            "numpy") for kind in KINDS}
_Z = sp.Symbol("z", positive=True)
_X_OF_Z = {kind: sp.lambdify(_Z, sp.solve(sp.Eq(theory_schedules.LINEAR_FORM[kind][0], _Z), x)[0],
                             "numpy") for kind in KINDS}
_Z_OF_X = {kind: sp.lambdify(x, theory_schedules.LINEAR_FORM[kind][0], "numpy") for kind in KINDS}
_RATIO = sp.lambdify((x, g), g / x, "numpy")


def _inputs(kind: str, lr, weight_decay) -> tuple[np.ndarray, np.ndarray]:
    checks.one_of("kind", kind, KINDS)
    lr = checks.positive("lr", lr)
    weight_decay = checks.nonnegative("weight_decay", weight_decay)
    if lr.ndim == 0 or np.broadcast_shapes(lr.shape, weight_decay.shape)[0] != lr.shape[0]:
        checks.fail("lr", lr, "per-step learning rates, an array of shape (steps, ...) that "
                    "weight_decay broadcasts against")
    checks.decay_factor(lr, weight_decay)
    return np.broadcast_arrays(lr, weight_decay)


def decay_schedule(lr, weight_decay, *, corrected: bool = False) -> np.ndarray:
    """Per-step weight decay: ``weight_decay`` at every step, or with ``corrected`` Defazio's
    ``weight_decay * lr_k / max(lr)`` (the per-step decay ``lam eta_k^2 / eta_max``)."""
    lr = checks.positive("lr", lr)
    weight_decay = checks.nonnegative("weight_decay", weight_decay)
    if not corrected:
        return np.broadcast_to(weight_decay, np.broadcast_shapes(lr.shape,
                                                                 weight_decay.shape)).copy()
    return weight_decay * lr / lr.max(axis=0)


def norm_recurrence(kind: str, lr, weight_decay, *, scale, init_norm_sq) -> np.ndarray:
    """``x_0 .. x_steps`` of the exact per-step map (shape ``(steps + 1, ...)``): ``lr`` and
    ``weight_decay`` per step (shape ``(steps, ...)``), ``scale`` the gradient norm at unit
    weight norm ``g`` (``"sgd"``) or the update energy ``C`` per squared learning rate
    (``"scale_free"``), broadcast against ``lr``: constant, or one per step (a measured
    ``g_k`` driving the map)."""
    lr, weight_decay = _inputs(kind, lr, weight_decay)
    scale = checks.positive("scale", scale)
    try:
        scale = np.broadcast_to(scale, lr.shape)
    except ValueError:
        checks.fail("scale", scale, f"a value or an array broadcasting against lr's shape "
                    f"{lr.shape} (steps, ...)")
    x_k = np.broadcast_to(checks.positive("init_norm_sq", init_norm_sq), lr.shape[1:]) * 1.0
    out = [x_k]
    for lr_k, wd_k, scale_k in zip(lr, weight_decay, scale):
        x_k = _STEP[kind](x_k, lr_k, wd_k, scale_k)
        out.append(x_k)
    return np.array(out)


def norm_continuous(kind: str, lr, weight_decay, *, scale, init_norm_sq) -> np.ndarray:
    """``x(0) .. x(steps)`` of the continuous equation, the rates constant over each unit of
    time (same arguments as :func:`norm_recurrence`)."""
    lr, weight_decay = _inputs(kind, lr, weight_decay)
    scale = checks.positive("scale", scale)
    z = _Z_OF_X[kind](np.broadcast_to(checks.positive("init_norm_sq", init_norm_sq),
                                      lr.shape[1:]) * 1.0)
    out = [z]
    for lr_k, wd_k in zip(lr, weight_decay):
        a, b = (np.asarray(v, dtype=float) for v in _RATES[kind](lr_k, wd_k, scale))
        decayed = np.exp(-a)
        # b (1 - e^{-a}) / a, which is b where a = 0 (no decay: the norm grows linearly)
        gain = np.where(a > 0, -np.expm1(-a) / np.where(a > 0, a, 1.0), 1.0)
        z = z * decayed + b * gain
        out.append(z)
    return _X_OF_Z[kind](np.array(out))


def quasi_static_norm_sq(kind: str, lr, weight_decay, *, scale) -> np.ndarray:
    """``x*`` of the continuous equation at each step's rates (``z* = b / a``)."""
    lr, weight_decay = _inputs(kind, lr, weight_decay)
    a, b = _RATES[kind](lr, weight_decay, checks.positive("scale", scale))
    with np.errstate(divide="ignore"):
        return _X_OF_Z[kind](np.asarray(b) / np.asarray(a))


def grad_weight_ratio(norm_sq, grad_norm) -> np.ndarray:
    """``||grad J(w)|| / ||w|| = g / x`` of a scale-invariant weight at ``x = ||w||^2``
    (``grad_norm = g``, the gradient norm at unit weight norm, 001 Eq. 18)."""
    return np.asarray(_RATIO(checks.positive("norm_sq", norm_sq),
                             checks.positive("grad_norm", grad_norm)))


def elapsed_time_constants(kind: str, lr, weight_decay) -> np.ndarray:
    """Time constants elapsed before each step, ``sum_{j<k} a_j`` (shape ``(steps, ...)``): the
    initial deviation from the quasi-static norm has shrunk by ``e^{-sum a}`` (in the linear
    variable ``z``), so the quasi-static norm can hold only once this is several."""
    lr, weight_decay = _inputs(kind, lr, weight_decay)
    a = np.broadcast_to(np.asarray(_RATES[kind](lr, weight_decay, 1.0)[0], dtype=float),
                        lr.shape)
    return np.cumsum(a, axis=0) - a


def schedule_speed(kind: str, lr, weight_decay, *, scale) -> np.ndarray:
    """``|ln z*_{k+1} - ln z*_k| / a_k``: how far the quasi-static target moves per time
    constant (shape ``(steps - 1, ...)``). The quasi-static norm holds where this is small
    against 1 and parts from the solution where it is not."""
    lr, weight_decay = _inputs(kind, lr, weight_decay)
    a, b = (np.asarray(v, dtype=float) for v in _RATES[kind](lr, weight_decay,
                                                              checks.positive("scale", scale)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(np.diff(np.log(b / a), axis=0)) / a[:-1]
