"""The public entry points: :func:`simulate` (constant or scheduled hyperparameters, swept on
grids) and :func:`drive` (measured gradient norms in, predicted weight norms out)."""

from __future__ import annotations

import functools
from typing import Any

from scalewise import checks
from scalewise.sim import recurrence, sphere
from scalewise.sim.schedules import ScheduleLike
from scalewise.sim.spec import MEMORY_LIMIT_BYTES, make_spec
from scalewise.sim.sphere import GradientFn
from scalewise.sim.trajectory import Trajectory
from scalewise.vocabulary import Optimizer

ENGINES = ("auto", "recurrence", "sphere")


def simulate(
    optimizer: str,
    *,
    lr: Any,
    weight_decay: Any = 0.0,
    steps: int,
    grad_norm: Any = 1.0,
    init_norm: Any = 1.0,
    momentum: Any = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    rmsprop_alpha: float = 0.99,
    schedule: ScheduleLike = None,
    engine: str = "auto",
    dim: int | None = None,
    runs: int = 1,
    seed: int = 0,
    loss_gradient: GradientFn | None = None,
    renormalize: bool = False,
    record_every: int = 1,
    keep_direction: bool = False,
    memory_limit: float = MEMORY_LIMIT_BYTES,
    device: str | None = None,
) -> Trajectory:
    """Simulate the weight norm, effective learning rate and angular update of a scale-invariant
    weight vector trained by ``optimizer`` (001 Sec. 4.3 and 5.1).

    ``optimizer``: ``"sgd"``, ``"sgdm"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adagrad"``
    with ``torch.optim``'s conventions (see :mod:`sim.update_rules`); ``momentum`` for ``"sgdm"``,
    ``betas`` and ``eps`` for Adam/AdamW, ``rmsprop_alpha`` (torch's ``alpha``) and ``eps`` for
    RMSprop, ``eps`` for Adagrad.
    ``lr``, ``weight_decay``, ``grad_norm`` (gradient norm at unit weight norm),
    ``init_norm`` and ``momentum`` broadcast: arrays sweep a grid in one call.
    ``schedule``: per-step factors of ``lr`` (:mod:`sim.schedules`, or an array of shape
    ``(steps,)``).
    ``engine``: ``"recurrence"`` (SGD only; exact and deterministic; ``dim``, ``runs`` and ``seed``
    unused), ``"sphere"`` (``runs`` vectors of dimension ``dim``, noise-driven or, with
    ``loss_gradient``, loss-driven; see :mod:`sim.sphere`), or ``"auto"``: the recurrence where it
    is exact (SGD without ``loss_gradient`` or ``keep_direction``), the sphere otherwise.
    ``renormalize``: rescale ``w`` to unit norm after every step (the effective LR is then lr).
    ``record_every``: record steps ``0, r, 2r, ...`` only. ``keep_direction``: also record
    ``w / ||w||`` (sphere engine). ``memory_limit``: bytes the call may allocate; a larger run
    is refused before anything is allocated (MemoryError naming what to change).
    ``device``: where the sphere engine runs: ``None`` on this CPU (compiled where numba is
    installed, else NumPy; see :mod:`sim.sphere`), a torch device (``"cuda"``, ``"cuda:1"``,
    ``"cpu"``) with torch there. The recurrence engine runs on the CPU whatever ``device``.

    Returns a :class:`~sim.trajectory.Trajectory` (array layout documented there).

    >>> t = simulate("sgd", lr=0.1, weight_decay=0.01, steps=3000)
    >>> round(float(t.effective_lr[-1]), 4)
    0.0447
    """
    return _run(
        dict(optimizer=optimizer, lr=lr, weight_decay=weight_decay, steps=steps,
             grad_norm=grad_norm, grad_norm_per_step=False, init_norm=init_norm,
             momentum=momentum, betas=betas, eps=eps, rmsprop_alpha=rmsprop_alpha,
             schedule=schedule, record_every=record_every, renormalize=renormalize),
        engine=engine, dim=dim, runs=runs, seed=seed, loss_gradient=loss_gradient,
        keep_direction=keep_direction, memory_limit=memory_limit, device=device)


def drive(
    grad_norms: Any,
    *,
    lr: Any,
    weight_decay: Any = 0.0,
    schedule: ScheduleLike = None,
    init_norm: Any = 1.0,
    optimizer: str = "sgd",
    momentum: Any = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    rmsprop_alpha: float = 0.99,
    dim: int | None = None,
    runs: int = 1,
    seed: int = 0,
    record_every: int = 1,
    memory_limit: float = MEMORY_LIMIT_BYTES,
    device: str | None = None,
) -> Trajectory:
    """Predict ``||w_k||^2`` and the effective learning rate from measured gradient norms.

    ``grad_norms``: ``||grad J(w_hat_k)||``, the gradient norm at unit weight norm of each step
    (0 for a unit no example reaches), shape ``(steps, *shape)``: one column per layer, or per
    unit; ``lr``, ``weight_decay`` and ``init_norm`` (``||w_0||``) broadcast against ``shape``.

    For ``"sgd"`` the prediction is exact: 001 Eq. (23) holds step by step for any gradient
    direction, so the measured norms determine ``||w_k||`` completely (recurrence engine).
    For the other optimizers the norm does not follow from gradient norms alone (the momentum
    buffer and the adaptive moments depend on the gradient *directions*); the prediction is the
    sphere engine's, with ``runs`` vectors of dimension ``dim`` driven by random tangent
    directions of the measured norms: the same mean-field model, with gradients independent
    across steps, as theory's equilibria. Average over runs with ``trajectory.run_mean``.
    ``memory_limit`` and ``device`` as in :func:`simulate`.
    """
    norms = checks.nonnegative("grad_norms", grad_norms)  # 0: a unit with no gradient
    if norms.ndim == 0 or norms.shape[0] == 0:
        checks.fail("grad_norms", grad_norms, "an array of shape (steps, *shape) with steps >= 1, "
                    "one gradient norm per step")
    return _run(
        dict(optimizer=optimizer, lr=lr, weight_decay=weight_decay, steps=norms.shape[0],
             grad_norm=norms, grad_norm_per_step=True, init_norm=init_norm, momentum=momentum,
             betas=betas, eps=eps, rmsprop_alpha=rmsprop_alpha, schedule=schedule,
             record_every=record_every, renormalize=False),
        engine="auto", dim=dim, runs=runs, seed=seed, loss_gradient=None, keep_direction=False,
        memory_limit=memory_limit, device=device)


def _run(inputs: dict[str, Any], *, engine: str, dim: int | None, runs: int, seed: int,
         loss_gradient: GradientFn | None, keep_direction: bool, memory_limit: float,
         device: str | None) -> Trajectory:
    """Choose the engine, check its arguments, make the spec (which refuses a run too large for
    ``memory_limit`` before allocating) and run it."""
    if engine not in ENGINES:
        checks.one_of("engine", engine, ENGINES)
    optimizer = Optimizer.parse(inputs["optimizer"], simulated=True)
    exact = optimizer is Optimizer.SGD and loss_gradient is None and not keep_direction
    if engine == "recurrence" and not exact:
        checks.fail("engine", engine, "'sphere' or 'auto' here: the recurrence is exact for "
                    "optimizer 'sgd' only, without loss_gradient or keep_direction, and this is "
                    f"optimizer {optimizer.value!r}")
    if engine == "recurrence" or (engine == "auto" and exact):
        spec = make_spec(**inputs, footprint=recurrence.footprint, memory_limit=memory_limit)
        return recurrence.run_recurrence(spec, memory_limit)
    if dim is None:
        checks.fail("dim", dim, "an integer >= 2: the sphere engine, which simulates optimizer "
                    f"{optimizer.value!r}, needs the dimension of its vectors")
    if loss_gradient is not None and not callable(loss_gradient):
        checks.fail("loss_gradient", loss_gradient, "a callable (unit vectors -> gradients) "
                    "or None")
    dim, runs = checks.integer("dim", dim, 2), checks.integer("runs", runs, 1)
    footprint = functools.partial(sphere.footprint, runs=runs, dim=dim,
                                  keep_direction=keep_direction)
    spec = make_spec(**inputs, footprint=footprint, memory_limit=memory_limit)
    return sphere.run_sphere(spec, dim=dim, runs=runs, seed=checks.integer("seed", seed, 0),
                             loss_gradient=loss_gradient, keep_direction=keep_direction,
                             memory_limit=memory_limit, device=device)
