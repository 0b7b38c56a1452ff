"""What a simulation is asked to do: the optimizer, its hyperparameters (validated and broadcast),
the schedule, and which steps are recorded.

Hyperparameters ``lr``, ``weight_decay``, ``grad_norm``, ``init_norm`` and ``momentum`` broadcast
against each other; their common shape is the *hyperparameter shape* of every recorded array, so
``lr=a[:, None], weight_decay=b[None, :]`` sweeps the grid ``a x b`` in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from scalewise import checks
from scalewise.sim.schedules import ScheduleLike, lr_factors
from scalewise.vocabulary import Optimizer

MEMORY_LIMIT_BYTES = 4 * 2**30
"""Largest allocation a simulation may ask for by default; above it the call fails before
allocating (raise it with ``memory_limit=``, or record less often with ``record_every=``)."""


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
) -> SimulationSpec:
    """Validate every input (ValueError naming the parameter and the allowed range)."""
    optimizer = Optimizer.parse(optimizer, simulated=True)
    properties = optimizer.properties
    steps = checks.integer("steps", steps, 1)
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
    if not properties.uses_momentum and np.any(hyper["momentum"] != 0):
        checks.fail("momentum", momentum, f"0 for {optimizer.value!r} (momentum is used by "
                    "'sgdm' only)")
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
        record_every=checks.integer("record_every", record_every, 1),
        renormalize=bool(renormalize),
        shape=shape,
    )


def check_memory(nbytes: float, limit: float) -> None:
    """Refuse, before allocating, a simulation that needs more than ``limit`` bytes."""
    if nbytes > limit:
        raise MemoryError(
            f"this simulation needs about {nbytes / 2**30:.1f} GiB (memory_limit is "
            f"{limit / 2**30:.1f} GiB): record less often (record_every=), use a smaller grid, "
            "fewer runs or a smaller dim, or raise memory_limit"
        )
