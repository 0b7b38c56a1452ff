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

Three implementations run it, chosen by :func:`run_sphere`:

* compiled (:mod:`sim.sphere_kernel`), the default where numba is installed, for noise-driven
  runs: every vector runs all its steps in the cache, vectors split over the cores; its noise is
  counter-based, so its random stream is its own;
* NumPy (this module), for loss-driven runs and where numba is absent or disabled: whole arrays
  per step, noise from ``numpy.random.default_rng(seed)``;
* torch (:mod:`sim.sphere_torch`) on any torch device given as ``device`` (``"cuda"``), noise
  from a ``torch.Generator`` seeded from ``seed``.

All three start from the same initial directions (drawn by NumPy from ``seed``) and apply the
same rules; their noise streams differ, so they agree in distribution (tested against each other
and against theory), not draw by draw.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from scalewise import checks
from scalewise.sim import compiled
from scalewise.sim.effective import effective_lr
from scalewise.sim.spec import MEMORY_LIMIT_BYTES, Footprint, SimulationSpec, check_memory
from scalewise.sim.trajectory import Trajectory
from scalewise.sim.update_rules import RULES, Hyper, OptimizerState, init_state, update
from scalewise.vocabulary import Decay

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


def footprint(shape: tuple[int, ...], *, runs: int, dim: int,
              keep_direction: bool) -> Footprint:
    """Bytes of a run on the hyperparameter ``shape``: about ten arrays of the weights' size
    (``w``, the optimizer state, the gradient and the NumPy engine's temporaries), and per
    record ``norm_sq``, ``effective_lr``, ``angular_update`` and a temporary (plus
    ``direction``, ``dim`` floats per vector, when kept)."""
    vectors = float(np.prod(shape)) * runs
    return Footprint(fixed=8 * 10 * vectors * dim, per_step=0.0,
                     per_record=8 * vectors * (4 + keep_direction * dim))


def run_sphere(spec: SimulationSpec, *, dim: int, runs: int, seed: int,
               loss_gradient: GradientFn | None, keep_direction: bool,
               memory_limit: float = MEMORY_LIMIT_BYTES,
               initial: tuple[np.ndarray, OptimizerState] | None = None,
               device: str | None = None) -> Trajectory:
    """Simulate ``runs`` independent weight vectors of dimension ``dim`` per hyperparameter
    combination of ``spec``, recording the steps ``spec.record_steps``. The weights start at
    random directions of norm ``spec.init_norm`` with zero optimizer state, or at ``initial``
    (weights of shape ``(*shape, runs, dim)`` and their optimizer state); ``seed`` drives the
    random directions (and gradients). ``device``: ``None`` runs on this CPU (compiled where
    numba is installed, the run is noise-driven and the rule coordinate-wise, else NumPy); a torch device (``"cuda"``,
    ``"cpu"``) runs the torch implementation there. A run over ``memory_limit`` bytes
    (:func:`footprint`) is refused before allocating."""
    check_memory(footprint(spec.shape, runs=runs, dim=dim, keep_direction=keep_direction),
                 steps=spec.steps, record_every=spec.record_every, limit=memory_limit)
    rng = np.random.default_rng(seed)
    if initial is None:
        w = _axes(spec.init_norm) * random_unit_vectors(rng, (*spec.shape, runs, dim))
        state = init_state(w)
    else:
        w, state = initial
    if device is not None:
        if loss_gradient is not None:
            checks.fail("device", device, "None with loss_gradient (loss-driven runs run on "
                        "the CPU, in NumPy)")
        from scalewise.sim import sphere_torch

        run = sphere_torch.run_sphere_torch
    elif loss_gradient is None and compiled.available() and spec.optimizer in RULES:
        run = _run_compiled
    else:
        run = functools.partial(_run_numpy, loss_gradient=loss_gradient)
    recorded, direction, w = run(spec, w, state, rng, keep_direction=keep_direction,
                                 device=device)
    lr = spec.lr_at_steps(spec.record_steps)[..., None]  # broadcasts against (*shape, runs)
    recorded["effective_lr"] = effective_lr(spec.optimizer, recorded["norm_sq"], lr)
    return Trajectory(spec=spec, engine="sphere", dim=dim, runs=runs, seed=seed,
                      step=spec.record_steps, final_norm_sq=_norm(w)[..., 0] ** 2,
                      direction=direction, **recorded)


def _run_numpy(spec: SimulationSpec, w: np.ndarray, state: OptimizerState,
               rng: np.random.Generator, *, loss_gradient: GradientFn | None,
               keep_direction: bool, device: None):
    """Whole arrays per step: ``(records, direction, final w)``."""
    out_shape = (len(spec.record_steps), *w.shape[:-1])
    recorded = {name: np.empty(out_shape) for name in ("norm_sq", "angular_update")}
    direction = np.empty((*out_shape, w.shape[-1])) if keep_direction else None
    for k in range(spec.steps):
        norm = _norm(w)  # (*shape, runs, 1)
        w_hat = w / norm
        unit_grad = (noise_gradient(rng, w_hat) if loss_gradient is None
                     else _checked_loss_gradient(loss_gradient, w_hat))
        grad = _axes(spec.grad_norm_at(k)) * unit_grad / norm
        w_next, state = update(spec.optimizer, state, w, grad, _hyper(spec, k))
        if k % spec.record_every == 0:
            row = k // spec.record_every
            recorded["norm_sq"][row] = norm[..., 0] ** 2
            recorded["angular_update"][row] = _angle(w, w_next)
            if direction is not None:
                direction[row] = w_hat
        w = w_next / _norm(w_next) if spec.renormalize else w_next
    return recorded, direction, w


def _run_compiled(spec: SimulationSpec, w: np.ndarray, state: OptimizerState,
                  rng: np.random.Generator, *, keep_direction: bool, device: None):
    """The compiled loop (:mod:`sim.sphere_kernel`) on flat copies of the state; its noise key
    is drawn from ``rng`` after the initial directions."""
    from scalewise.sim import sphere_kernel

    *_, runs, dim = w.shape
    groups = int(np.prod(spec.shape))

    def copy(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        # fresh writable C arrays: one compiled signature whatever the caller's arrays are
        return np.array(np.broadcast_to(a, shape), dtype=np.float64).reshape(shape[0], -1)

    if spec.grad_norm_per_step:
        g = copy(spec.grad_norm_at_steps(np.arange(spec.steps)), (spec.steps, *spec.shape))
    else:
        g = copy(spec.grad_norm, (1, *spec.shape))
    lr, weight_decay, momentum = (copy(a, (1, *spec.shape))[0]
                                  for a in (spec.lr, spec.weight_decay, spec.momentum))
    flat = [copy(a, w.shape).reshape(-1, dim) for a in (w, state.first, state.second)]
    records = len(spec.record_steps)
    norm_sq, angle = np.empty((records, groups * runs)), np.empty((records, groups * runs))
    direction = np.empty((records if keep_direction else 0, groups * runs, dim))
    kernel = sphere_kernel.kernel(sphere_kernel.rule_code(spec.optimizer),
                                  spec.optimizer.properties.decay is Decay.DECOUPLED)
    compiled.launch(kernel, *flat, state.step, lr, copy(spec.lr_factors, (spec.steps,))[:, 0],
                    weight_decay, momentum, g, runs, (*spec.betas, spec.eps, spec.rmsprop_alpha),
                    spec.renormalize, rng.integers(2**64, dtype=np.uint64), spec.record_every,
                    norm_sq, angle, direction)
    out_shape = (records, *spec.shape, runs)
    recorded = {"norm_sq": norm_sq.reshape(out_shape), "angular_update": angle.reshape(out_shape)}
    return (recorded, direction.reshape(*out_shape, dim) if keep_direction else None,
            flat[0].reshape(w.shape))


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
