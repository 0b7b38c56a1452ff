"""The sphere engine: explicit weight vectors updated by the real optimizer rules.

Weights ``w`` have shape ``(*shape, runs, dim)``: one vector per hyperparameter combination and
independent run. Each step the gradient is tangent to the sphere through ``w`` and scales as
``1 / ||w||``, as for any scale-invariant cost (001 Eq. 16 and 18):

* noise-driven (default): ``grad J(w_k) = (g_k / ||w_k||) u_k`` with ``u_k`` a uniformly random
  unit vector orthogonal to ``w_k``, independent across steps (the mean-field model in which
  theory derives the equilibria of the adaptive optimizers);
* loss-driven: ``grad J(w_k) = g_k * loss_gradient(w_hat_k) / ||w_k||`` where ``loss_gradient``
  maps unit vectors ``(..., dim)`` to the gradient of a scale-invariant loss at them (same shape),
  e.g. :class:`sim.losses.RayleighQuotient`; ``grad_norm`` then scales the loss.

The optimizer step is :func:`sim.update_rules.update` (``torch.optim``'s rules). It is the ground
truth for optimizers whose norm dynamics do not close as a scalar recurrence.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scalewise import checks
from scalewise.sim.effective import effective_lr
from scalewise.sim.spec import SimulationSpec, check_memory
from scalewise.sim.trajectory import Trajectory
from scalewise.sim.update_rules import Hyper, OptimizerState, init_state, update

GradientFn = Callable[[np.ndarray], np.ndarray]

_TANGENT_TOLERANCE = 1e-8


def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("...d,...d->...", v, v))[..., None]  # (..., 1)


def _axes(a: np.ndarray) -> np.ndarray:
    """A hyperparameter array, broadcastable to ``shape``, made broadcastable to
    ``(*shape, runs, dim)``."""
    return np.asarray(a)[..., None, None]


def random_unit_vectors(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniformly random unit vectors along the last axis of ``shape``."""
    z = rng.standard_normal(shape)
    return z / _norm(z)


def noise_gradient(rng: np.random.Generator, w_hat: np.ndarray) -> np.ndarray:
    """A uniformly random unit vector orthogonal to each unit vector ``w_hat`` (``(..., dim)``)."""
    z = rng.standard_normal(w_hat.shape)
    z -= np.einsum("...d,...d->...", z, w_hat)[..., None] * w_hat
    return z / _norm(z)


def _checked_loss_gradient(loss_gradient: GradientFn, w_hat: np.ndarray) -> np.ndarray:
    grad = np.asarray(loss_gradient(w_hat), dtype=np.float64)
    if grad.shape != w_hat.shape or not np.all(np.isfinite(grad)):
        checks.fail("loss_gradient", loss_gradient, "a function returning finite gradients of "
                    f"shape {w_hat.shape} (the shape of its input); it returned shape {grad.shape}")
    radial = np.abs(np.einsum("...d,...d->...", grad, w_hat))
    if np.any(radial > _TANGENT_TOLERANCE * (1 + _norm(grad)[..., 0])):
        checks.fail("loss_gradient", loss_gradient, "a function returning gradients tangent to "
                    "the sphere (w_hat . grad = 0), as the gradient of a scale-invariant loss is "
                    "(001 Eq. 16)")
    return grad


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between the vectors ``a`` and ``b`` along the last axis, accurate for tiny angles."""
    a_hat, b_hat = a / _norm(a), b / _norm(b)
    return 2 * np.arctan2(_norm(a_hat - b_hat)[..., 0], _norm(a_hat + b_hat)[..., 0])


def run_sphere(spec: SimulationSpec, *, dim: int, runs: int, seed: int,
               loss_gradient: GradientFn | None, keep_direction: bool,
               memory_limit: float,
               initial: tuple[np.ndarray, OptimizerState] | None = None) -> Trajectory:
    """Simulate ``runs`` independent weight vectors of dimension ``dim`` per hyperparameter
    combination of ``spec``, recording the steps ``spec.record_steps``. The weights start at
    random directions of norm ``spec.init_norm`` with zero optimizer state, or at ``initial``
    (weights of shape ``(*shape, runs, dim)`` and their optimizer state); ``seed`` drives the
    random directions (and gradients)."""
    records = spec.record_steps
    vectors = int(np.prod(spec.shape)) * runs
    nbytes = 8.0 * vectors * (10 * dim + 3 * len(records) + keep_direction * len(records) * dim)
    check_memory(nbytes, memory_limit)
    rng = np.random.default_rng(seed)
    if initial is None:
        w = _axes(spec.init_norm) * random_unit_vectors(rng, (*spec.shape, runs, dim))
        state = init_state(w)
    else:
        w, state = initial
    out_shape = (len(records), *spec.shape, runs)
    recorded = {name: np.empty(out_shape) for name in ("norm_sq", "effective_lr", "angular_update")}
    direction = np.empty((*out_shape, dim)) if keep_direction else None
    for k in range(spec.steps):
        norm = _norm(w)  # (*shape, runs, 1)
        w_hat = w / norm
        unit_grad = (noise_gradient(rng, w_hat) if loss_gradient is None
                     else _checked_loss_gradient(loss_gradient, w_hat))
        grad = _axes(spec.grad_norm_at(k)) * unit_grad / norm
        w_next, state = update(spec.optimizer, state, w, grad, _hyper(spec, k))
        if k % spec.record_every == 0:
            row = k // spec.record_every
            x = norm[..., 0] ** 2
            recorded["norm_sq"][row] = x
            lr = spec.lr_at(k)[..., None]  # broadcasts against (*shape, runs)
            recorded["effective_lr"][row] = effective_lr(spec.optimizer, x, lr)
            recorded["angular_update"][row] = _angle(w, w_next)
            if direction is not None:
                direction[row] = w_hat
        w = w_next / _norm(w_next) if spec.renormalize else w_next
    return Trajectory(spec=spec, engine="sphere", dim=dim, runs=runs, seed=seed, step=records,
                      final_norm_sq=_norm(w)[..., 0] ** 2, direction=direction, **recorded)


def _hyper(spec: SimulationSpec, k: int) -> Hyper:
    return Hyper(
        lr=_axes(spec.lr_at(k)),
        weight_decay=_axes(spec.weight_decay),
        momentum=_axes(spec.momentum),
        beta1=spec.betas[0],
        beta2=spec.betas[1],
        eps=spec.eps,
        rmsprop_alpha=spec.rmsprop_alpha,
    )
