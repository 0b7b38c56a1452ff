"""Simulated Nesterov SGD, Muon and Lion against theory's equilibria; weight norms under
schedules (recurrence, continuous solution, quasi-static prediction, corrected decay); AdamW
as a moving average."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import sympy as sp

from scalewise import sim
from scalewise.sim import moving_average, norm_schedules
from scalewise.sim.schedules import Linear, WarmupCosine, WarmupStableDecay
from scalewise.theory import norm_under_schedules as theory_schedules


@dataclass(frozen=True)
class Case:
    optimizer: str
    lr: float
    weight_decay: float
    dim: int
    extra: dict = field(default_factory=dict)
    seed: int = 0


CASES = [Case("nesterov", 0.01, 0.1, 64, {"momentum": 0.9}),
         Case("muon", 0.01, 0.1, 64, {"momentum": 0.95}),
         Case("lion", 1e-3, 1.0, 256, {"betas": (0.9, 0.99)})]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.optimizer)
def test_sphere_equilibrium_matches_theory(case: Case) -> None:
    """Mean over the second half of 6000 steps and 16 vectors, within 2% (the mean-field
    approximations are O(1/d); the runs sit at 0.3-0.5% in practice)."""
    steps = 6000
    trajectory = sim.simulate(case.optimizer, lr=case.lr, weight_decay=case.weight_decay,
                              steps=steps, engine="sphere", dim=case.dim, runs=16,
                              seed=case.seed, **case.extra)
    predicted = sim.equilibrium(case.optimizer, lr=case.lr, weight_decay=case.weight_decay,
                                dim=case.dim, **case.extra)
    for name in ("norm_sq", "angular_update"):
        measured = getattr(trajectory, name)[steps // 2:].mean()
        assert measured == pytest.approx(float(predicted[name]), rel=0.02), name


def test_muon_runs_in_numpy_and_torch_alike() -> None:
    """Muon's rule reads the whole vector: the NumPy engine and the torch engine run it (the
    compiled kernel does not), and agree in distribution."""
    kwargs = dict(lr=0.02, weight_decay=0.1, momentum=0.9, steps=3000, engine="sphere",
                  dim=32, runs=8, seed=3)
    numpy_run = sim.simulate("muon", **kwargs)
    torch_run = sim.simulate("muon", device="cpu", **kwargs)
    assert numpy_run.norm_sq[1500:].mean() == pytest.approx(torch_run.norm_sq[1500:].mean(),
                                                            rel=0.03)


def test_lion_needs_the_dimension_for_its_equilibrium() -> None:
    with pytest.raises(ValueError, match="dim = None is invalid"):
        sim.equilibrium("lion", lr=1e-3, weight_decay=1.0)


STEPS = 20_000


@pytest.mark.parametrize("kind", norm_schedules.KINDS)
@pytest.mark.parametrize("schedule", [WarmupCosine(0), WarmupStableDecay(), Linear()],
                         ids=["cosine", "wsd", "linear"])
def test_recurrence_and_continuous_solution_part_by_the_dropped_term(kind, schedule) -> None:
    """At lr * wd = 5e-4 the two differ by less than 0.1% at every step (the dropped term is
    relatively eta lam / 2 = 2.5e-4 at equilibrium)."""
    lr = 0.05 * schedule.factors(STEPS)
    wd = norm_schedules.decay_schedule(lr, 0.01)
    args = dict(scale=1.0, init_norm_sq=1.0)
    exact = norm_schedules.norm_recurrence(kind, lr, wd, **args)
    continuous = norm_schedules.norm_continuous(kind, lr, wd, **args)
    np.testing.assert_allclose(exact, continuous, rtol=1e-3)
    coarse = norm_schedules.norm_continuous(kind, 20 * lr, wd, **args)
    assert np.abs(norm_schedules.norm_recurrence(kind, 20 * lr, wd, **args) / coarse - 1).max() > 2e-3


@pytest.mark.parametrize("kind", norm_schedules.KINDS)
def test_quasi_static_where_slow_and_the_ratio_rises_as_the_schedule_decays(kind) -> None:
    """Under a cosine schedule: within 10% of the quasi-static norm wherever the target moves
    less than 10% per time constant (after the initial approach), more than 50% off over the
    last 1% of the steps, where the learning rate falls to zero within a time constant; the
    ratio at the end is far above its early value without the correction, level with it."""
    lr = 0.05 * WarmupCosine(0).factors(STEPS)
    for corrected in (False, True):
        wd = norm_schedules.decay_schedule(lr, 0.01, corrected=corrected)
        x = norm_schedules.norm_recurrence(kind, lr, wd, scale=1.0, init_norm_sq=1.0)[:-1]
        target = norm_schedules.quasi_static_norm_sq(kind, lr, wd, scale=1.0)
        speed = norm_schedules.schedule_speed(kind, lr, wd, scale=1.0)
        slow = np.flatnonzero(speed < 0.1)
        slow = slow[slow > 3000]
        assert len(slow) > 0.1 * STEPS
        np.testing.assert_allclose(x[slow], target[slow], rtol=0.1)
        if not corrected:
            assert np.all(np.abs(x[-STEPS // 100:] / target[-STEPS // 100:] - 1) > 0.5)
        ratio = norm_schedules.grad_weight_ratio(x, 1.0)
        rise = ratio[-100:].mean() / ratio[5000:6000].mean()
        if corrected:
            assert rise == pytest.approx(1.0, rel=0.01)
        else:
            assert rise > 1.5


def test_quasi_static_ratio_is_theorys_sqrt_two_lambda_over_eta() -> None:
    lr = np.array([0.1, 0.05, 0.01])
    x = norm_schedules.quasi_static_norm_sq("sgd", lr, np.full(3, 0.01), scale=0.7)
    np.testing.assert_allclose(norm_schedules.grad_weight_ratio(x, 0.7), np.sqrt(0.02 / lr),
                               rtol=1e-12)


def test_continuous_solution_equals_theorys_linear_schedule_closed_form() -> None:
    """The erf closed form (identity linear_schedule_solution), lambdified, against the
    piecewise-constant solution with fine steps (time step 1/10 of a step)."""
    T, eta0, lam, c0 = 2000.0, 0.01, 0.05, 1.0
    z = sp.lambdify(theory_schedules.t, theory_schedules.linear_schedule_solution(
        "scale_free").subs({theory_schedules.T: T, theory_schedules.eta0: eta0,
                            theory_schedules.lam: lam, theory_schedules.C: c0,
                            theory_schedules.z0: 1.0}), "mpmath")
    fine = 10
    times = (np.arange(T * fine) + 0.5) / fine
    lr = eta0 * (1 - times / T)
    # rates per sub-step a dt = 2 eta (lam dt), b dt = eta^2 (C dt)
    x = norm_schedules.norm_continuous("scale_free", lr, np.full_like(lr, lam / fine),
                                       scale=c0 / fine, init_norm_sq=1.0)
    for t in (500.0, 1000.0, 1900.0):
        assert x[int(t * fine)] == pytest.approx(float(z(t)), rel=1e-3), t


def test_recurrence_driven_by_a_gradient_norm_per_step_is_the_driven_engine() -> None:
    """A per-step ``g_k`` drives the schedule's recurrence as ``sim.drive`` drives 001 Eq. (23):
    two implementations, one map."""
    g = np.random.default_rng(1).uniform(0.3, 3.0, size=(400, 3))
    factors = WarmupStableDecay(warmup_steps=20).factors(400)
    lr, init = 0.1 * factors[:, None], np.array([0.5, 1.0, 2.0])
    x = norm_schedules.norm_recurrence("sgd", np.broadcast_to(lr, g.shape), np.full(g.shape, 0.05),
                                       scale=g, init_norm_sq=init**2)
    driven = sim.drive(g, lr=0.1, weight_decay=0.05,
                       schedule=WarmupStableDecay(warmup_steps=20), init_norm=init)
    np.testing.assert_allclose(x[:-1], driven.norm_sq, rtol=1e-12)  # drive records x_0..x_399


@pytest.mark.parametrize("kind", norm_schedules.KINDS)
def test_elapsed_time_constants_measure_how_far_the_initial_norm_is_forgotten(kind: str) -> None:
    """At constant rates the continuous solution's deviation from its fixed point shrinks by
    ``exp(-elapsed)`` in the linear variable: x^2 - x*^2 for SGD, x - x* for a fixed step."""
    lr, wd = np.full(300, 0.05), np.full(300, 0.1)
    x = norm_schedules.norm_continuous(kind, lr, wd, scale=1.0, init_norm_sq=9.0)[:-1]
    star = norm_schedules.quasi_static_norm_sq(kind, lr, wd, scale=1.0)
    power = 2 if kind == "sgd" else 1
    shrink = (x**power - star**power) / (x[0] ** power - star[0] ** power)
    elapsed = norm_schedules.elapsed_time_constants(kind, lr, wd)
    assert elapsed[0] == 0.0
    np.testing.assert_allclose(shrink, np.exp(-elapsed), rtol=1e-9)


def test_norm_schedules_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="(?s)scale = .* lr.s shape"):
        norm_schedules.norm_recurrence("sgd", np.full((4, 2), 0.1), np.zeros((4, 2)),
                                       scale=np.ones((3, 2)), init_norm_sq=1.0)
    with pytest.raises(ValueError, match="kind = 'adam' is invalid"):
        norm_schedules.norm_recurrence("adam", [0.1], [0.0], scale=1.0, init_norm_sq=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        norm_schedules.norm_recurrence("sgd", [0.1], [20.0], scale=1.0, init_norm_sq=1.0)


def test_adamw_weights_are_the_moving_average_of_minus_u_over_lambda() -> None:
    updates = np.random.default_rng(0).standard_normal((200, 5))
    args = dict(lr=0.05, weight_decay=0.3, init=np.linspace(-1, 1, 5))
    np.testing.assert_allclose(moving_average.decoupled_steps(updates, **args),
                               moving_average.moving_average(updates, **args), rtol=1e-12,
                               atol=1e-14)


def test_weight_decay_rule_for_dataset_and_batch_size() -> None:
    lam = moving_average.weight_decay_for(lr=1e-3, dataset_size=[5e4, 1e5, 5e4],
                                          batch_size=[128, 128, 256], tau_epochs=10)
    np.testing.assert_allclose(lam, [0.256, 0.128, 0.512], rtol=1e-12)


def test_new_schedules() -> None:
    assert Linear(0.5).factors(4).tolist() == [1.0, 0.875, 0.75, 0.625]
    assert WarmupStableDecay(0, 0.5).factors(4).tolist() == [1.0, 1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="warmup_steps = 4 is invalid"):
        WarmupStableDecay(4, 0.5).factors(4)
