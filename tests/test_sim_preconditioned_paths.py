"""The experiment of 001 Fig. 2: gradient descent preconditioned by the identity, the Fisher, and
the empirical Fisher (001 Eq. 3) or its inverse square root, on a least-squares line fit.

Every bound is what theory says (theory/empirical_fisher.py): the natural step with step size 1
lands on the minimizer; GD's error contracts by ``max |1 - lr lambda(H)|`` per step; the
``F_emp^{-1}`` step is of degree -1 in the gradients and the ``F_emp^{-1/2}`` step of degree 0, so
scaling the problem by ``c`` scales the step sizes of these paths by ``1/c^2`` and ``1/c``; and
since ``F_emp = Cov + grad J grad J^T`` (001 Eq. 2), ``grad J^T F_emp^{-1} grad J <= 1``: an
``F_emp^{-1/2}`` step is never longer than its step size.
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from scalewise import sim
from scalewise.figures import notes
from scalewise.sim.preconditioned_paths import METHODS, START, PreconditionedPaths

X, Y = sim.regression_data()
LR = {"lr_gd": 0.5, "lr_natural": 1.0, "lr_empirical": 0.1, "lr_empirical_sqrt": 0.1}
SCALE = 4.0
"""A power of 2: scaling by it is exact in floating point, so scaled paths agree to rounding."""

LR_POWER = {"gd": 0, "natural": 0, "empirical": 2, "empirical_sqrt": 1}
"""``p`` with path(c y, c start, lr) = c path(y, start, lr / c^p): 1 - the step's degree in the
gradients (GD and the natural step are linear in them; Eq. 3's step is of degree -1)."""


@pytest.fixture(scope="module")
def paths() -> PreconditionedPaths:
    return sim.preconditioned_paths(X, Y, **LR)


def _distance(path: np.ndarray, minimizer: np.ndarray) -> np.ndarray:
    return np.linalg.norm(path - minimizer, axis=-1)


def test_data_are_deterministic_in_the_seed() -> None:
    again = sim.regression_data(seed=0)
    other = sim.regression_data(seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((X, Y), again))
    assert not np.array_equal(X, other[0])


def test_natural_gradient_reaches_the_minimizer_in_one_step(paths) -> None:
    w1 = paths.iterates["natural"][1]
    np.testing.assert_allclose(w1, paths.minimizer, rtol=1e-12, atol=0)
    assert paths.loss["natural"][1] == pytest.approx(paths.min_loss, rel=1e-12)
    summary = sim.path_summary(paths)["natural"]
    assert summary.steps_to_tolerance == 1 and summary.detour == pytest.approx(1.0, rel=1e-12)


def test_gd_error_contracts_at_least_at_the_spectral_rate(paths) -> None:
    features = np.stack([X, np.ones_like(X)], axis=-1)
    rate = np.max(np.abs(1 - LR["lr_gd"] * np.linalg.eigvalsh(features.T @ features / len(X))))
    distance = _distance(paths.iterates["gd"], paths.minimizer)
    bound = distance[0] * rate ** np.arange(len(distance))
    assert rate < 1 and np.all(distance <= bound * (1 + 1e-9))
    assert np.all(np.diff(paths.loss["gd"]) <= 0)


@pytest.mark.parametrize("method", METHODS)
def test_scaling_the_problem_rescales_the_step_size(method: str) -> None:
    """Targets and start times ``c``: the path is ``c`` times the original one at
    ``lr / c^p`` (exactly, in exact arithmetic)."""
    name = f"lr_{method}"
    scaled = sim.preconditioned_paths(X, SCALE * Y, start=SCALE * np.array(START), steps=60,
                                      **LR)
    slowed = sim.preconditioned_paths(X, Y, steps=60,
                                      **{**LR, name: LR[name] / SCALE ** LR_POWER[method]})
    np.testing.assert_allclose(scaled.iterates[method], SCALE * slowed.iterates[method],
                               rtol=1e-12, atol=1e-12)


def test_empirical_steps_shrink_where_the_gradients_are_large() -> None:
    """The first step of the problem scaled by ``c``: GD's is ``c`` times longer, the
    ``F_emp^{-1/2}`` step as long, the ``F_emp^{-1}`` step ``c`` times shorter."""
    original = sim.preconditioned_paths(X, Y, steps=1, **LR)
    scaled = sim.preconditioned_paths(X, SCALE * Y, start=SCALE * np.array(START), steps=1, **LR)
    expected = {"gd": SCALE, "natural": SCALE, "empirical": 1 / SCALE, "empirical_sqrt": 1.0}
    for method, ratio in expected.items():
        lengths = [np.linalg.norm(np.diff(p.iterates[method], axis=0)) for p in (original, scaled)]
        assert lengths[1] / lengths[0] == pytest.approx(ratio, rel=1e-12), method


def test_empirical_path_slows_quadratically_with_the_problem_scale() -> None:
    """Steps to a relative tolerance: unchanged for GD and natural GD, at least ``c^2 / 2``
    times as many for ``F_emp^{-1}`` and ``c / 2`` for ``F_emp^{-1/2}`` (the flow's count grows
    by ``c^2`` and ``c``; half of it leaves room for the discretization)."""
    steps = 4000
    counts = [sim.path_summary(sim.preconditioned_paths(X, c * Y, start=c * np.array(START),
                                                        steps=steps, **LR))
              for c in (1.0, SCALE)]
    before, after = ({m: s.steps_to_tolerance for m, s in summary.items()} for summary in counts)
    assert None not in before.values() and None not in after.values(), (before, after)
    assert after["gd"] == before["gd"] and after["natural"] == before["natural"] == 1
    assert after["empirical"] >= SCALE**2 / 2 * before["empirical"], (before, after)
    assert after["empirical_sqrt"] >= SCALE / 2 * before["empirical_sqrt"], (before, after)


def test_empirical_sqrt_steps_are_never_longer_than_the_step_size(paths) -> None:
    lengths = np.linalg.norm(np.diff(paths.iterates["empirical_sqrt"], axis=0), axis=-1)
    assert np.all(lengths <= LR["lr_empirical_sqrt"] * (1 + 1e-12))


@pytest.mark.parametrize("method", ["gd", "empirical", "empirical_sqrt"])
def test_paths_converge_to_the_minimizer(paths, method: str) -> None:
    summary = sim.path_summary(paths, tolerance=1e-6)[method]
    assert summary.steps_to_tolerance is not None and summary.final_distance <= 1e-6
    assert summary.steps_to_tolerance > 1  # only the natural step gets there at once


def test_damping_regularizes_a_singular_empirical_fisher() -> None:
    """Noiseless data started at their fit: every residual is 0, so ``F_emp = 0``."""
    x, y = np.array([0.0, 1.0, 2.0]), np.ones(3)
    with pytest.raises(ValueError, match="damping = 0.0 is invalid"):
        sim.preconditioned_paths(x, y, start=(0.0, 1.0), steps=1)
    damped = sim.preconditioned_paths(x, y, start=(0.0, 1.0), steps=1, damping=1e-3)
    assert np.array_equal(damped.iterates["empirical"][1], [0.0, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(steps=0), "steps = 0 is invalid"),
        (dict(steps=2.5), "steps = 2.5 is invalid"),
        (dict(lr_gd=0.0), "lr_gd = 0.0 is invalid"),
        (dict(lr_empirical=-1.0), "lr_empirical = -1.0 is invalid"),
        (dict(damping=-1e-3), "damping = -0.001 is invalid"),
        (dict(start=(1.0, 2.0, 3.0)), "start = .* is invalid; allowed: two numbers"),
        (dict(y=np.ones(3)), "y = .* is invalid; allowed: an array of the shape of x"),
        (dict(x=np.ones(len(X))), "x = .* is invalid; allowed: a 1-d array with at least two"),
        (dict(x=np.ones((2, 2)), y=np.ones((2, 2))), "(?s)x = array.* allowed: a 1-d array"),
        (dict(y=np.full(len(X), np.nan)), "y = .* is invalid; allowed: finite numbers"),
    ],
    ids=["steps-0", "steps-float", "lr-zero", "lr-negative", "damping-negative", "start-shape",
         "y-shape", "x-constant", "x-2d", "y-nan"],
)
def test_bad_input_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sim.preconditioned_paths(**{"x": X, "y": Y, **kwargs})


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(points=1), "points = 1 is invalid"), (dict(x_std=0.0), "x_std = 0.0 is invalid"),
    (dict(noise=-1.0), "noise = -1.0 is invalid"), (dict(seed=-1), "seed = -1 is invalid")])
def test_bad_data_parameters_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sim.regression_data(**kwargs)


def test_summary_needs_a_start_away_from_the_minimizer(paths) -> None:
    with pytest.raises(ValueError, match="tolerance = 0.0 is invalid"):
        sim.path_summary(paths, tolerance=0.0)
    at_fit = sim.preconditioned_paths(X, Y, start=paths.minimizer, steps=1, damping=1e-6)
    with pytest.raises(ValueError, match="paths = .* is invalid"):
        sim.path_summary(at_fit)


def test_figure_draws_data_and_paths() -> None:
    fig = notes.empirical_fisher_paths(steps=50)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() and ax.get_legend()
    labels = [line.get_label() for line in fig.axes[1].lines]
    assert len(labels) == len(METHODS) + 1 and all(len(line.get_xdata()) == 51
                                                   for line in fig.axes[1].lines[:len(METHODS)])
