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


@dataclass(frozen=True)
class Linear:
    """``f_k = 1 - (1 - final_factor) k / n``: a straight line from 1 at the first step
    towards ``final_factor`` after the last (``n = steps``; every factor stays positive, as
    the cosine's does)."""

    final_factor: float = 0.0

    def __post_init__(self) -> None:
        checks.number("final_factor", self.final_factor, 0.0, 1.0)

    def factors(self, steps: int) -> np.ndarray:
        return 1 - (1 - self.final_factor) * np.arange(steps) / steps


@dataclass(frozen=True)
class WarmupStableDecay:
    """Warmup-stable-decay: a linear warmup over ``warmup_steps`` (``f_k = (k + 1) / w``), the
    constant 1, then a linear decay towards ``final_factor`` over the last ``decay_fraction``
    of the steps (Hu et al. 2024, "MiniCPM"), as :class:`Linear` does over all of them."""

    warmup_steps: int = 0
    decay_fraction: float = 0.2
    final_factor: float = 0.0

    def __post_init__(self) -> None:
        checks.integer("warmup_steps", self.warmup_steps, 0)
        checks.number("decay_fraction", self.decay_fraction, 0.0, 1.0, low_open=True,
                      high_open=False)
        checks.number("final_factor", self.final_factor, 0.0, 1.0)

    def factors(self, steps: int) -> np.ndarray:
        decay_steps = max(int(round(self.decay_fraction * steps)), 1)
        start = steps - decay_steps
        if self.warmup_steps > start:
            checks.fail("warmup_steps", self.warmup_steps, f"at most steps - decay steps = "
                        f"{start}")
        k = np.arange(steps, dtype=np.float64)
        warm = (k + 1) / max(self.warmup_steps, 1)
        decay = 1 - (1 - self.final_factor) * (k - start) / decay_steps
        return np.where(k < self.warmup_steps, warm, np.where(k < start, 1.0, decay))


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
                    "such as Constant, StepDecay, Exponential, WarmupCosine, Linear, "
                    "WarmupStableDecay")
    return checks.positive("schedule", schedule.factors(steps))
