"""What a simulation is asked to do: the optimizer, its hyperparameters (validated and broadcast),
the schedule, and which steps are recorded.

Hyperparameters ``lr``, ``weight_decay``, ``grad_norm``, ``init_norm`` and ``momentum`` broadcast
against each other; their common shape is the *hyperparameter shape* of every recorded array, so
``lr=a[:, None], weight_decay=b[None, :]`` sweeps the grid ``a x b`` in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from scalewise.sim.schedules import ScheduleLike, lr_factors
from scalewise.sim.validation import (
    broadcast_shape,
    integer_at_least,
    nonnegative_array,
    positive_array,
    scalar,
    unit_interval_array,
)

MEMORY_LIMIT_BYTES = 4 * 2**30
"""Largest allocation a simulation may ask for by default; above it the call fails before
allocating (raise it with ``memory_limit=``, or record less often with ``record_every=``)."""


class Optimizer(str, Enum):
    """The update rules simulated, with ``torch.optim``'s conventions. Weight decay is coupled (an
    L2 term ``weight_decay * w`` added to the gradient) except for AdamW, where it is decoupled
    (``w <- (1 - lr weight_decay) w`` before the Adam step)."""

    SGD = "sgd"
    SGDM = "sgdm"
    ADAM = "adam"
    ADAMW = "adamw"
    RMSPROP = "rmsprop"
    ADAGRAD = "adagrad"

    @classmethod
    def parse(cls, name: Any) -> Optimizer:
        try:
            return cls(name)
        except ValueError as error:
            known = ", ".join(repr(o.value) for o in cls)
            raise ValueError(f"optimizer must be one of {known}, got {name!r}") from error

    @property
    def shrinks_by_lr_times_wd(self) -> bool:
        """True when each step multiplies ``w`` by ``1 - lr * weight_decay`` (SGD's coupled L2
        and AdamW's decoupled decay), which must stay positive."""
        return self in (Optimizer.SGD, Optimizer.SGDM, Optimizer.ADAMW)


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
    optimizer = Optimizer.parse(optimizer)
    steps = integer_at_least("steps", steps, 1)
    hyper = {
        "lr": positive_array("lr", lr),
        "weight_decay": nonnegative_array("weight_decay", weight_decay),
        "init_norm": positive_array("init_norm", init_norm),
        "momentum": unit_interval_array("momentum", momentum),
    }
    norms = positive_array("grad_norm", grad_norm)
    if grad_norm_per_step and (norms.ndim == 0 or norms.shape[0] != steps):
        raise ValueError(f"grad_norm per step must have shape (steps, ...) with steps = {steps}, "
                         f"got {norms.shape}")
    hyper["grad_norm"] = norms[0] if grad_norm_per_step else norms
    shape = broadcast_shape(hyper)
    if optimizer is not Optimizer.SGDM and np.any(hyper["momentum"] != 0):
        raise ValueError(f"momentum is used by 'sgdm' only; it must be 0 for {optimizer.value!r}, "
                         f"got {momentum!r}")
    factors = lr_factors(schedule, steps)
    if optimizer.shrinks_by_lr_times_wd:
        largest = hyper["lr"] * factors.max() * hyper["weight_decay"]
        if np.any(largest >= 1):
            raise ValueError(
                f"lr * weight_decay must be < 1 at every step for {optimizer.value!r} (the decay "
                "factor 1 - lr * weight_decay must stay positive); the largest is "
                f"{largest.max():g}"
            )
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return SimulationSpec(
        optimizer=optimizer,
        lr=hyper["lr"],
        weight_decay=hyper["weight_decay"],
        grad_norm=norms,
        grad_norm_per_step=grad_norm_per_step,
        init_norm=hyper["init_norm"],
        momentum=hyper["momentum"],
        betas=(scalar("betas[0]", betas[0], unit_interval_array),
               scalar("betas[1]", betas[1], unit_interval_array)),
        eps=scalar("eps", eps, positive_array),
        rmsprop_alpha=scalar("rmsprop_alpha", rmsprop_alpha, unit_interval_array),
        lr_factors=factors,
        steps=steps,
        record_every=integer_at_least("record_every", record_every, 1),
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
