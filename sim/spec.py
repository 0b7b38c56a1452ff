"""What a simulation is asked to do: the optimizer, its hyperparameters (validated and broadcast),
the schedule, and which steps are recorded.

Hyperparameters ``lr``, ``weight_decay``, ``grad_norm``, ``init_norm`` and ``momentum`` broadcast
against each other; their common shape is the *hyperparameter shape* of every recorded array, so
``lr=a[:, None], weight_decay=b[None, :]`` sweeps the grid ``a x b`` in one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalewise import checks
from scalewise.sim.schedules import ScheduleLike, lr_factors
from scalewise.vocabulary import Optimizer

MEMORY_LIMIT_BYTES = 4 * 2**30
"""Largest allocation a simulation may ask for by default; above it the call fails before
allocating (raise it with ``memory_limit=``, or record less often with ``record_every=``)."""

_SCHEDULE_BYTES_PER_STEP = 6 * 8.0
"""The per-step factors of the learning rate and the temporaries of the widest schedule
(:class:`~sim.schedules.WarmupCosine` holds about five float arrays of length ``steps`` at once)."""


@dataclass(frozen=True)
class Footprint:
    """Bytes an engine allocates for a hyperparameter shape: ``fixed`` (its state), plus
    ``per_step`` for each step and ``per_record`` for each recorded step (its outputs and their
    temporaries). Estimated from shapes alone, so a run can be refused before it allocates."""

    fixed: float
    per_step: float
    per_record: float

    def total(self, steps: int, records: int) -> float:
        return self.fixed + (self.per_step + _SCHEDULE_BYTES_PER_STEP) * steps \
            + self.per_record * records


FootprintFn = Callable[[tuple[int, ...]], Footprint]


@dataclass(frozen=True, eq=False)
class SimulationSpec:
    """Validated inputs of one simulation. Arrays broadcast to :attr:`shape`, except
    ``grad_norm`` when ``grad_norm_per_step``: then it has shape ``(steps, *shape)``."""

    optimizer: Optimizer
    lr: np.ndarray
    weight_decay: np.ndarray
    grad_norm: np.ndarray
    grad_norm_per_step: bool
    init_norm: np.ndarray
    momentum: np.ndarray
    betas: tuple[float, float]
    eps: float
    rmsprop_alpha: float
    lr_factors: np.ndarray  # (steps,)
    steps: int
    record_every: int
    renormalize: bool
    shape: tuple[int, ...]

    @property
    def record_steps(self) -> np.ndarray:
        """Steps ``k`` whose state is recorded: ``0, record_every, 2 record_every, ... < steps``."""
        return np.arange(0, self.steps, self.record_every)

    def lr_at(self, k: int) -> np.ndarray:
        """Learning rate of step ``k``: ``lr * f_k``."""
        return self.lr * self.lr_factors[k]

    def lr_at_steps(self, ks: np.ndarray) -> np.ndarray:
        """Learning rates of the steps ``ks`` (``(n,)``); broadcasts to ``(n, *shape)``."""
        return self.lr * self.lr_factors[ks].reshape(-1, *(1,) * len(self.shape))

    def grad_norm_at(self, k: int) -> np.ndarray:
        """Gradient norm at unit weight norm, ``||grad J(w_hat_k)||``, of step ``k``."""
        return self.grad_norm[k] if self.grad_norm_per_step else self.grad_norm

    def grad_norm_at_steps(self, ks: np.ndarray) -> np.ndarray:
        """Gradient norms of the steps ``ks`` (``(n,)``); broadcasts to ``(n, *shape)`` (the
        same norm for every step unless ``grad_norm_per_step``)."""
        if not self.grad_norm_per_step:
            return self.grad_norm
        per_step = self.grad_norm[ks]  # (n, *layers), layers right-aligned with shape
        return per_step.reshape(len(ks), *(1,) * (len(self.shape) - per_step.ndim + 1),
                                *per_step.shape[1:])

    @property
    def has_static_coefficients(self) -> bool:
        """True when neither the learning rate nor the gradient norm changes between steps."""
        return not self.grad_norm_per_step and bool(np.all(self.lr_factors == self.lr_factors[0]))


def make_spec(
    optimizer: Any,
    *,
    lr: Any,
    weight_decay: Any,
    steps: Any,
    grad_norm: Any,
    grad_norm_per_step: bool,
    init_norm: Any,
    momentum: Any,
    betas: Any,
    eps: Any,
    rmsprop_alpha: Any,
    schedule: ScheduleLike,
    record_every: Any,
    renormalize: bool,
    footprint: FootprintFn | None = None,
    memory_limit: float = MEMORY_LIMIT_BYTES,
) -> SimulationSpec:
    """Validate every input (ValueError naming the parameter and the allowed range), then
    refuse a run that would need more than ``memory_limit`` bytes (MemoryError, same format)
    before building any per-step array. ``footprint`` gives the engine's bytes for the
    hyperparameter shape (without it only the per-step arrays of the schedule count)."""
    optimizer = Optimizer.parse(optimizer, simulated=True)
    properties = optimizer.properties
    steps = checks.integer("steps", steps, 1)
    record_every = checks.integer("record_every", record_every, 1)
    hyper = {
        "lr": checks.positive("lr", lr),
        "weight_decay": checks.nonnegative("weight_decay", weight_decay),
        "init_norm": checks.positive("init_norm", init_norm),
        "momentum": checks.unit_interval("momentum", momentum),
    }
    # a measured gradient norm may be 0 (a unit that no example reaches); a model's may not
    norms = (checks.nonnegative if grad_norm_per_step else checks.positive)("grad_norm", grad_norm)
    if grad_norm_per_step and (norms.ndim == 0 or norms.shape[0] != steps):
        checks.fail("grad_norm", norms, f"an array of shape (steps, ...) with steps = {steps}, "
                    "one gradient norm per step")
    hyper["grad_norm"] = norms[0] if grad_norm_per_step else norms
    shape = checks.broadcast(hyper)
    check_memory(footprint(shape) if footprint else Footprint(0.0, 0.0, 0.0), steps=steps,
                 record_every=record_every, limit=memory_limit)
    if not properties.uses_momentum and np.any(hyper["momentum"] != 0):
        checks.fail("momentum", momentum, f"0 for {optimizer.value!r} (momentum is used by "
                    + ", ".join(repr(o.value) for o in Optimizer
                                if o.properties.uses_momentum and o.properties.simulated)
                    + " only)")
    factors = lr_factors(schedule, steps)
    if properties.shrinks(properties.decay):
        checks.decay_factor(hyper["lr"] * factors.max(), hyper["weight_decay"],
                            context=f"at every step for {optimizer.value!r}")
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        checks.fail("betas", betas, "a pair (beta1, beta2)")
    return SimulationSpec(
        optimizer=optimizer,
        lr=hyper["lr"],
        weight_decay=hyper["weight_decay"],
        grad_norm=norms,
        grad_norm_per_step=grad_norm_per_step,
        init_norm=hyper["init_norm"],
        momentum=hyper["momentum"],
        betas=(checks.number("betas[0]", betas[0], 0.0, 1.0),
               checks.number("betas[1]", betas[1], 0.0, 1.0)),
        eps=checks.number("eps", eps, 0.0, low_open=True),
        rmsprop_alpha=checks.number("rmsprop_alpha", rmsprop_alpha, 0.0, 1.0),
        lr_factors=factors,
        steps=steps,
        record_every=record_every,
        renormalize=bool(renormalize),
        shape=shape,
    )


def check_memory(footprint: Footprint, *, steps: int, record_every: int, limit: float) -> None:
    """Refuse, before allocating, a run whose :class:`Footprint` exceeds ``limit`` bytes, naming
    what to change: ``record_every`` where recording less often would fit, ``steps`` where the
    per-step arrays alone do not fit, ``memory_limit`` where a single record does not fit."""
    records = -(-steps // record_every)
    needed = footprint.total(steps, records)
    if needed <= limit:
        return
    budget = f"within memory_limit = {_gib(limit)} (this run needs about {_gib(needed)})"
    if footprint.total(steps, 1) <= limit:
        fitting = (limit - footprint.total(steps, 0)) // footprint.per_record
        checks.too_large("record_every", record_every,
                         f"an integer >= {math.ceil(steps / fitting)} {budget}, or a larger "
                         "memory_limit")
    if footprint.total(1, 1) <= limit:
        per_step = footprint.per_step + _SCHEDULE_BYTES_PER_STEP
        most = int((limit - footprint.total(0, 1)) // (per_step + footprint.per_record
                                                        / record_every))
        checks.too_large("steps", steps, f"an integer <= {most} at record_every = "
                         f"{record_every} {budget}")
    checks.too_large("memory_limit", limit, f"at least {_gib(footprint.total(1, 1))} for one "
                     "step of this hyperparameter grid (or a smaller grid, fewer runs or a "
                     "smaller dim)")


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"
