"""Optimization paths of gradient descent preconditioned four ways on a least-squares fit: the
experiment of 001 Fig. 2 (Kunstner et al. 2019, their Fig. 1).

A line ``y = a x + b`` is fitted to ``N`` points by the cost ``J(w) = (1/2N) sum_i (x_i^T w -
y_i)^2`` with ``w = (a, b)`` and features ``x_i = (x_i, 1)``. From a common start, each method
steps ``w <- w - lr P(w) grad J(w)`` with

- ``"gd"``: ``P = I``;
- ``"natural"``: ``P = F^{-1}``, the true Fisher of the Gaussian model, ``F = X^T X / N``, which
  is the Hessian (:mod:`theory.empirical_fisher`, ``least_squares_fisher_is_hessian``), so the
  step with ``lr = 1`` lands on the minimizer (``natural_gradient_least_squares_one_step``);
- ``"empirical"``: ``P = F_emp^{-1}``, ``F_emp = (1/N) sum_i r_i^2 x_i x_i^T`` with residuals
  ``r_i = x_i^T w - y_i`` (001 Eq. 3): of degree ``-1`` in the gradients
  (``empirical_fisher_step_degree_minus_one``);
- ``"empirical_sqrt"``: ``P = F_emp^{-1/2}``, the full matrix square root: of degree ``0``
  (``empirical_fisher_sqrt_step_degree_zero``), as RMSprop and Adam use it.

``damping`` adds ``damping * I`` to ``F_emp`` in both empirical methods. It is needed only where
``F_emp`` is singular, which happens only where the nonzero residuals sit at fewer than two
distinct ``x`` (noiseless data at their fit); it defaults to 0, and a singular ``F_emp`` without
it is refused.

Scaling the targets and the start by ``c`` scales the GD and natural paths by ``c``; the
``F_emp^{-1}`` path is ``c`` times the original one run at ``lr / c^2``, the ``F_emp^{-1/2}`` path
``c`` times the one at ``lr / c``: the larger the gradients, the slower these two move.

>>> x, y = regression_data()
>>> paths = preconditioned_paths(x, y, steps=1)
>>> bool(np.allclose(paths.iterates["natural"][1], paths.minimizer, rtol=1e-12))
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from scalewise import checks

METHODS = ("gd", "natural", "empirical", "empirical_sqrt")
"""The preconditioners, in the order of 001 Fig. 2 (plus the square root adaptive methods use)."""

START = (4.0, 2.0)
"""The default start ``(a, b)``: off both principal axes of the cost's elliptic contours, where
the ``F_emp^{-1}`` path first moves away from the minimizer."""


def regression_data(points: int = 20, *, seed: int = 0, slope: float = 2.0,
                    intercept: float = -1.0, noise: float = 0.5, x_mean: float = 1.0,
                    x_std: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``, each ``(points,)``: ``x ~ N(x_mean, x_std^2)`` and ``y = slope x + intercept
    + noise z`` with standard normal ``z``, drawn from ``default_rng(seed)`` (``x`` first). The
    inputs' offset from 0 couples slope and intercept: the cost's valley is narrow (condition
    number about 20 by default), as in the figure."""
    rng = np.random.default_rng(checks.integer("seed", seed, 0))
    n = checks.integer("points", points, 2)
    x = rng.normal(checks.number("x_mean", x_mean), checks.positive("x_std", x_std), n)
    line = checks.number("slope", slope) * x + checks.number("intercept", intercept)
    return x, line + checks.nonnegative("noise", noise) * rng.standard_normal(n)


@dataclass(frozen=True, eq=False)
class PreconditionedPaths:
    """The iterates ``(steps + 1, 2)`` (rows ``(a, b)``, the start first) and the cost
    ``(steps + 1,)`` along them, per method of :data:`METHODS`; the least-squares minimizer
    ``(2,)`` and its cost."""

    iterates: Mapping[str, np.ndarray]
    loss: Mapping[str, np.ndarray]
    minimizer: np.ndarray
    min_loss: float


def _features(x: np.ndarray) -> np.ndarray:
    return np.stack([x, np.ones_like(x)], axis=-1)  # (N, 2): slope and intercept


def _matrix_power(matrix: np.ndarray, power: float, damping: float) -> np.ndarray:
    """``(matrix + damping I)^power`` of a symmetric positive semidefinite ``(2, 2)`` matrix."""
    values, vectors = np.linalg.eigh(matrix)
    values = values + damping
    if values[0] <= 0:
        checks.fail("damping", damping, "a number > 0 where the empirical Fisher is singular "
                    f"(its smallest eigenvalue plus the damping is {values[0]:g} here)")
    return (vectors * values**power) @ vectors.T


def _preconditioners(features: np.ndarray, y: np.ndarray,
                     damping: float) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    n = len(y)
    inverse_fisher = np.linalg.inv(features.T @ features / n)  # F = H (Gaussian model)

    def empirical(w: np.ndarray) -> np.ndarray:  # (2, 2): (1/N) sum_i g_i g_i^T
        per_example = (features @ w - y)[:, None] * features  # (N, 2)
        return per_example.T @ per_example / n

    return {"gd": lambda w: np.eye(2), "natural": lambda w: inverse_fisher,
            "empirical": lambda w: _matrix_power(empirical(w), -1.0, damping),
            "empirical_sqrt": lambda w: _matrix_power(empirical(w), -0.5, damping)}


def _checked_data(x, y, start) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, start = checks.real("x", x), checks.real("y", y), checks.real("start", start)
    if x.ndim != 1 or len(np.unique(x)) < 2:
        checks.fail("x", x, "a 1-d array with at least two distinct values")
    if y.shape != x.shape:
        checks.fail("y", y, f"an array of the shape of x, {x.shape}")
    if start.shape != (2,):
        checks.fail("start", start, "two numbers (slope, intercept)")
    return x, y, start


def preconditioned_paths(x, y, *, start=START, steps: int = 300, lr_gd: float = 0.5,
                         lr_natural: float = 1.0, lr_empirical: float = 0.1,
                         lr_empirical_sqrt: float = 0.1,
                         damping: float = 0.0) -> PreconditionedPaths:
    """The paths of :data:`METHODS` from ``start`` for ``steps`` steps at their step sizes, on
    the data ``x``, ``y`` (``(N,)`` each, ``x`` with two distinct values at least)."""
    x, y, start = _checked_data(x, y, start)
    steps = checks.integer("steps", steps, 1)
    lrs = {m: checks.number(f"lr_{m}", lr, 0.0, low_open=True) for m, lr in zip(
        METHODS, (lr_gd, lr_natural, lr_empirical, lr_empirical_sqrt))}
    features = _features(x)
    preconditioners = _preconditioners(features, y, checks.number("damping", damping, 0.0))
    iterates, losses = {}, {}
    for method, precondition in preconditioners.items():
        path = np.empty((steps + 1, 2))
        path[0] = start
        for k in range(steps):
            grad = features.T @ (features @ path[k] - y) / len(y)  # (2,)
            path[k + 1] = path[k] - lrs[method] * precondition(path[k]) @ grad
        iterates[method], losses[method] = path, least_squares_cost(path, x, y)
    minimizer = np.linalg.lstsq(features, y, rcond=None)[0]
    return PreconditionedPaths(iterates, losses, minimizer,
                               float(least_squares_cost(minimizer, x, y)))


def least_squares_cost(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``J(w) = (1/2N) sum_i (a x_i + b - y_i)^2`` for ``w = (a, b)`` of shape ``(..., 2)``."""
    residuals = np.asarray(w)[..., None, 0] * x + np.asarray(w)[..., None, 1] - y  # (..., N)
    return 0.5 * np.mean(residuals**2, axis=-1)


@dataclass(frozen=True)
class PathSummary:
    """What a path of 001 Fig. 2 shows, relative to the start's distance ``d_0`` to the
    minimizer: ``final_distance`` (last iterate's distance over ``d_0``), ``steps_to_tolerance``
    (the first step whose distance is at most ``tolerance d_0``; ``None`` if none) and
    ``detour`` (the path's length over ``d_0``: 1 for a straight path, larger for a curved or
    zig-zag one)."""

    final_distance: float
    steps_to_tolerance: int | None
    detour: float


def path_summary(paths: PreconditionedPaths, tolerance: float = 1e-6) -> dict[str, PathSummary]:
    """A :class:`PathSummary` per method of ``paths``."""
    tolerance = checks.number("tolerance", tolerance, 0.0, low_open=True)
    out = {}
    for method, path in paths.iterates.items():
        initial = np.linalg.norm(path[0] - paths.minimizer)
        if initial == 0:
            checks.fail("paths", "a start at the minimizer", "paths from another start")
        distance = np.linalg.norm(path - paths.minimizer, axis=-1) / initial  # (steps + 1,)
        reached = np.flatnonzero(distance <= tolerance)
        length = np.linalg.norm(np.diff(path, axis=0), axis=-1).sum()
        out[method] = PathSummary(float(distance[-1]), int(reached[0]) if reached.size else None,
                                  float(length / initial))
    return out
