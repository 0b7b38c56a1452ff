"""Learning-rate schedules as per-step factors of the base learning rate.

A schedule turns a number of steps into an array ``f`` of shape ``(steps,)``; step ``k`` uses the
learning rate ``lr * f[k]``, the convention of ``torch.optim.lr_scheduler`` stepped once per
optimizer step. An explicit array of factors is accepted wherever a schedule is; with ``lr=1`` it
is the per-step learning rate itself.

>>> StepDecay(milestones=(2, 4), gamma=0.1).factors(5)
array([1.  , 1.  , 0.1 , 0.1 , 0.01])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union

import numpy as np

from scalewise import checks


class Schedule(Protocol):
    def factors(self, steps: int) -> np.ndarray:
        """Per-step factors of the base learning rate, shape ``(steps,)``."""


ScheduleLike = Union[Schedule, np.ndarray, None]


@dataclass(frozen=True)
class Constant:
    """``f_k = 1``: the learning rate never changes."""

    def factors(self, steps: int) -> np.ndarray:
        return np.ones(steps)


@dataclass(frozen=True)
class StepDecay:
    """``f_k = gamma^(number of milestones <= k)``: the step decays of 004 Sec. 4.1 (Fig. 3: three
    factor-of-10 drops 60 epochs apart), as ``torch.optim.lr_scheduler.MultiStepLR``."""

    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        for m in self.milestones:
            checks.integer("milestones", m, 1)
        if list(self.milestones) != sorted(set(self.milestones)):
            checks.fail("milestones", self.milestones, "strictly increasing integers >= 1")
        checks.number("gamma", self.gamma, 0.0, low_open=True)

    def factors(self, steps: int) -> np.ndarray:
        drops = np.searchsorted(np.asarray(self.milestones), np.arange(steps), side="right")
        return self.gamma ** drops.astype(np.float64)


@dataclass(frozen=True)
class Exponential:
    """``f_k = gamma^k`` (``torch.optim.lr_scheduler.ExponentialLR``). With ``gamma > 1`` it is the
    exponentially growing schedule of Li and Arora (2020) cited in 001 Sec. 4.3."""

    gamma: float

    def __post_init__(self) -> None:
        checks.number("gamma", self.gamma, 0.0, low_open=True)

    def factors(self, steps: int) -> np.ndarray:
        return self.gamma ** np.arange(steps, dtype=np.float64)


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup ``f_k = (k + 1) / warmup_steps`` for ``k < warmup_steps``, then a cosine
    from 1 down towards ``min_factor`` at the last step (``m = min_factor``, ``w = warmup_steps``,
    ``n = steps``)::

        f_k = m + (1 - m) (1 + cos(pi (k - w) / (n - w))) / 2
    """

    warmup_steps: int
    min_factor: float = 0.0

    def __post_init__(self) -> None:
        checks.integer("warmup_steps", self.warmup_steps, 0)
        checks.number("min_factor", self.min_factor, 0.0, 1.0)

    def factors(self, steps: int) -> np.ndarray:
        if self.warmup_steps >= steps:
            checks.fail("warmup_steps", self.warmup_steps, f"an integer < steps ({steps})")
        k = np.arange(steps, dtype=np.float64)
        warm = (k + 1) / max(self.warmup_steps, 1)
        phase = (k - self.warmup_steps) / (steps - self.warmup_steps)
        cosine = self.min_factor + (1 - self.min_factor) * 0.5 * (1 + np.cos(np.pi * phase))
        return np.where(k < self.warmup_steps, warm, cosine)


def lr_factors(schedule: ScheduleLike, steps: int) -> np.ndarray:
    """The validated per-step factors, shape ``(steps,)``, of ``schedule`` (``None`` = constant)."""
    if schedule is None:
        return Constant().factors(steps)
    if isinstance(schedule, (np.ndarray, list, tuple)):
        factors = checks.positive("schedule", schedule)
        if factors.shape != (steps,):
            checks.fail("schedule", schedule, f"an array of shape (steps,) = ({steps},)")
        return factors
    if not hasattr(schedule, "factors"):
        checks.fail("schedule", schedule, "None, an array of per-step factors, or a schedule "
                    "such as Constant, StepDecay, Exponential, WarmupCosine")
    return checks.positive("schedule", schedule.factors(steps))
