"""Weight decay as an exponentially growing learning rate (Li and Arora 2020, cited in 001
Sec. 4.3), shown on the sphere engine.

Theory (:mod:`theory.schedules`) proves, for a scale-invariant loss: SGD with weight decay
``lam`` at learning rate ``alpha`` and SGD without weight decay at ``alpha (1 - alpha lam)^(-2k-1)``
point the same way at every step; for momentum SGD the decay-free run uses ``alpha r^(-2k-1)``
(``r`` the growth factor) and must start from the buffer ``-(1 - r) w_0 / (alpha r)`` instead of
torch's empty one. :func:`exponential_lr_pair` runs both sides on the sphere engine, from the
same weights and with the same random directions, so their directions can be compared.

In a chaotic regime (a loss-driven run whose step is large for the loss's curvature) rounding
differences between the two runs grow like any perturbation; the equivalence is exact in exact
arithmetic and holds to rounding wherever the dynamics are stable.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from scalewise import checks
from scalewise.sim.spec import make_spec
from scalewise.sim.sphere import GradientFn, footprint, random_unit_vectors, run_sphere
from scalewise.sim.trajectory import Trajectory
from scalewise.sim.update_rules import OptimizerState
from scalewise.theory import schedules as li_arora
from scalewise.vocabulary import Optimizer


def exponential_lr_pair(
    optimizer: str = "sgd",
    *,
    lr: float,
    weight_decay: float,
    steps: int,
    dim: int,
    momentum: float = 0.0,
    runs: int = 1,
    seed: int = 0,
    init_norm: float = 1.0,
    grad_norm: Any = 1.0,
    loss_gradient: GradientFn | None = None,
) -> tuple[Trajectory, Trajectory]:
    """``(with_weight_decay, growing_lr)``: the two equivalent runs of ``"sgd"`` or ``"sgdm"``,
    both keeping their directions (``trajectory.direction``). ``lr``, ``weight_decay`` and
    ``momentum`` are numbers; momentum needs ``lr wd <= (1 - sqrt(momentum))^2``."""
    parsed = checks.one_of("optimizer", Optimizer.parse(optimizer),
                           (Optimizer.SGD, Optimizer.SGDM))
    dim, runs = checks.integer("dim", dim, 2), checks.integer("runs", runs, 1)
    k = np.arange(checks.integer("steps", steps, 1))
    common = dict(steps=steps, grad_norm=grad_norm, grad_norm_per_step=False,
                  init_norm=init_norm, momentum=momentum, betas=(0.9, 0.999), eps=1e-8,
                  rmsprop_alpha=0.99, record_every=1, renormalize=False,
                  footprint=functools.partial(footprint, runs=runs, dim=dim,
                                              keep_direction=True))
    decayed = make_spec(parsed, lr=lr, weight_decay=weight_decay, schedule=None, **common)
    if parsed is Optimizer.SGD:
        growing_lrs = li_arora.sgd_equivalent_lr(k, lr=lr, weight_decay=weight_decay)
    else:
        growing_lrs = li_arora.sgdm_equivalent_lr(k, lr=lr, weight_decay=weight_decay,
                                                  momentum=momentum)
    growing = make_spec(parsed, lr=1.0, weight_decay=0.0, schedule=growing_lrs, **common)
    init_seed, noise_seed = np.random.SeedSequence(checks.integer("seed", seed, 0)).spawn(2)
    w0 = init_norm * random_unit_vectors(np.random.default_rng(init_seed), (runs, dim))
    buffer0 = (np.zeros_like(w0) if parsed is Optimizer.SGD else li_arora.sgdm_equivalent_state(
        w0, np.zeros_like(w0), 0, lr=lr, weight_decay=weight_decay, momentum=momentum)[1])
    run = dict(dim=dim, runs=runs, seed=noise_seed.generate_state(1)[0].item(),
               loss_gradient=loss_gradient, keep_direction=True)
    zeros = np.zeros_like(w0)
    return (
        run_sphere(decayed, initial=(w0, OptimizerState(0, zeros, zeros)), **run),
        run_sphere(growing, initial=(w0, OptimizerState(0, buffer0, zeros)), **run),
    )


def direction_mismatch(a: Trajectory, b: Trajectory) -> np.ndarray:
    """Largest distance between the unit directions of two runs, per recorded step."""
    distance = np.linalg.norm(a.direction - b.direction, axis=-1)  # (records, *shape, runs)
    return distance.reshape(len(a.step), -1).max(axis=1)
