"""Estimators of what theory's closed forms are about, whether a run has settled, and intervals
over seeds.

Theory states each equilibrium as an expectation (:mod:`scalewise.theory.equilibrium`): the
angular update ``arccos(E<w_k, w_{k+1}> / E||w_k||^2)`` is a ratio of sums, not the mean of
per-step angles; the weight norm balances ``E[g^2]``, not ``E[g]^2``. The functions here compute
exactly those estimators from the run store's layer sums and per-unit records, the mean of
per-step values only for contrast. A comparison at equilibrium is made only on a run that has
settled (:func:`settling`), judged from the data and theory's time constant; claims over seeds
carry a Student-t 95% interval (:func:`interval`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scalewise import checks

SETTLING_TIME_CONSTANTS = 5.0
"""A run is settled no earlier than this many of theory's time constants."""
SETTLING_DRIFT = 0.01
"""... and when its windowed estimator moved by less than this, relatively, between the last
two windows."""
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` seeds with its two-sided Student-t interval ``[low, high]`` (NaN ends
    for one seed)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def interval(values: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` (one per seed, NaNs dropped) with its Student-t interval.

    >>> i = interval(np.array([1.0, 2.0, 3.0]))
    >>> round(i.mean, 3), round(i.low, 3), round(i.high, 3)
    (2.0, -0.484, 4.484)
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    n = len(finite)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(finite.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    from scipy import stats  # here, not at the top: importing it takes most of a second

    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * finite.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def ratio_of_sums(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """``sum(numerator) / sum(denominator)``: the estimator of ``E[a] / E[b]``."""
    return float(np.sum(numerator) / np.sum(denominator))


def angular_update(w_dot_next: np.ndarray, norm_sq: np.ndarray,
                   next_norm_sq: np.ndarray) -> float:
    """``arccos(E<w_k, w_{k+1}> / sqrt(E||w_k||^2 E||w_{k+1}||^2))`` from per-step (layer or
    unit) values: at a stationary norm the angular update that theory's equilibria state,
    ``arccos(E<w_k, w_{k+1}> / E||w_k||^2)`` (:mod:`scalewise.theory.equilibrium`), and at most
    1 in cosine over any window (Cauchy-Schwarz), where a drifting norm can push the other
    form past 1.

    >>> round(angular_update(np.array([0.99, 0.99]), np.ones(2), np.ones(2)), 6)
    0.141539
    """
    cosine = np.sum(w_dot_next) / np.sqrt(np.sum(norm_sq) * np.sum(next_norm_sq))
    return float(np.arccos(np.clip(cosine, -1.0, 1.0)))


@dataclass(frozen=True)
class Settling:
    """Whether a run has settled: ``steps`` recorded, ``needed`` the steps theory's time
    constant asks for (``SETTLING_TIME_CONSTANTS`` of them), ``drift`` the relative change of
    the windowed estimator between the last two windows of ``window`` steps, ``settled`` when
    both hold. ``reason`` says why not, in words computed from the numbers."""

    steps: int
    needed: float
    window: int
    drift: float
    settled: bool
    reason: str


def settling(numerator: np.ndarray, time_constant: float, *,
             denominator: np.ndarray | None = None, window: int | None = None,
             drift_limit: float = SETTLING_DRIFT) -> Settling:
    """Judge a run by its windowed estimator: over a window of steps, ``sum(numerator) /
    sum(denominator)`` (per-step sums such as a layer's ``<w_k, w_{k+1}>`` and ``||w_k||^2``),
    or the window mean of ``numerator`` without a denominator. Settled when the run lasted at
    least ``SETTLING_TIME_CONSTANTS`` of theory's ``time_constant`` (steps per e-fold of a
    deviation, :func:`scalewise.theory.equilibrium.time_constant`) and the estimator of its
    last window differs from the one before by less than ``drift_limit`` (windows of
    ``window`` steps, default one time constant, at least 10).

    >>> s = settling(np.r_[np.linspace(2, 1, 50), np.ones(450)], time_constant=20.0)
    >>> s.settled, s.window
    (True, 20)
    """
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.ones_like(numerator) if denominator is None else np.asarray(denominator)
    steps = len(numerator)
    checks.positive("time_constant", time_constant)
    window = window or max(int(math.ceil(time_constant)), 10)
    needed = SETTLING_TIME_CONSTANTS * time_constant
    if steps < 2 * window:
        return Settling(steps, needed, window, math.nan, False,
                        f"{steps} steps are fewer than two windows of {window}")
    last = ratio_of_sums(numerator[-window:], denominator[-window:])
    before = ratio_of_sums(numerator[-2 * window:-window], denominator[-2 * window:-window])
    drift = float(abs(last / before - 1))
    reasons = []
    if steps < needed:
        reasons.append(f"{steps} steps are {steps / time_constant:.2g} time constants, "
                       f"fewer than {SETTLING_TIME_CONSTANTS:g} ({needed:.0f} steps)")
    if not drift < drift_limit:
        reasons.append(f"the estimator still moved by {drift:.2%} between the last two windows "
                       f"of {window} steps (limit {drift_limit:.0%})")
    return Settling(steps, needed, window, drift, not reasons, "; ".join(reasons))
