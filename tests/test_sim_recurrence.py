"""The recurrence engine: theory's fixed points, the growth bounds without weight decay, a plain
scalar loop, renormalisation, recording and the memory guard."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from scalewise import sim
from scalewise.sim.recurrence import laurent_terms
from scalewise.theory import equilibrium as eq


def test_fixed_point_grid_equals_theory() -> None:
    # far above the fixed point x shrinks by (1 - lr wd)^2 per step, near it deviations by
    # wd_approach_rate ~ 1 - 4 lr wd: at lr wd >= 1e-3, 12000 steps bring x from 9 to within
    # 1e-12 of the fixed point
    lr = np.array([0.01, 0.1, 1.0])[:, None, None]
    wd = np.array([0.1, 0.5])[None, :, None]
    g = np.array([0.5, 2.0])
    t = sim.simulate("sgd", lr=lr, weight_decay=wd, grad_norm=g, steps=12001, init_norm=3.0,
                     record_every=1000)
    assert t.norm_sq.shape == (13, 3, 2, 2)
    np.testing.assert_allclose(t.final_norm_sq, eq.wd_norm_sq(lr, wd, g), rtol=1e-10, atol=0)
    np.testing.assert_allclose(t.effective_lr[-1], eq.wd_effective_lr(lr, wd, g), rtol=1e-10)
    np.testing.assert_allclose(t.angular_update[-1], np.broadcast_to(
        eq.wd_angular_update(lr, wd), t.final_norm_sq.shape), rtol=1e-10)


def test_deviation_contracts_at_theorys_rate() -> None:
    lr, wd = 0.1, 0.02
    t = sim.simulate("sgd", lr=lr, weight_decay=wd, steps=4000, init_norm=2.0)
    gap = t.norm_sq - eq.wd_norm_sq(lr, wd, 1.0)
    # the ratio differs from the slope at the fixed point by O(gap) (curvature of the map) and
    # by rounding O(1e-16 / gap): around step 2000 the gap is ~1e-7 and both are below 1e-8
    ratio = gap[1901:2100] / gap[1900:2099]
    np.testing.assert_allclose(ratio, eq.wd_approach_rate(lr, wd), rtol=1e-8)


@pytest.mark.parametrize("lr,g,x0", [(0.1, 1.0, 1.0), (1.0, 0.5, 2.0), (3.0, 1.0, 0.5)],
                         ids=["small-lr", "half-grad", "large-lr"])
def test_growth_without_wd_is_bracketed_by_the_sqrt_law(lr: float, g: float, x0: float) -> None:
    """x_k^2 - x_0^2 - 2 a^2 g^2 k = sum_j a^4 g^4 / x_j^2 (001 Eq. 19 squared); with
    x_j^2 >= x_0^2 + 2 a^2 g^2 j that sum is at most
    a^4 g^4 / x_0^2 + (a^2 g^2 / 2) log(1 + 2 a^2 g^2 (k - 1) / x_0^2)."""
    steps = 5000
    t = sim.simulate("sgd", lr=lr, grad_norm=g, init_norm=np.sqrt(x0), steps=steps)
    k = np.arange(1, steps + 1)
    x_sq = np.append(t.norm_sq[1:], t.final_norm_sq) ** 2
    law = eq.growth_norm_sq(k, x0, lr, g) ** 2  # x_0^2 (1 + k / k0) = x_0^2 + 2 a^2 g^2 k
    c = (lr * g) ** 2
    excess = c**2 / x0**2 + (c / 2) * np.log1p(2 * c * (k - 1) / x0**2)
    assert np.all(x_sq >= law * (1 - 1e-12))
    assert np.all(x_sq <= (law + excess) * (1 + 1e-12))


@dataclass(frozen=True)
class LoopCase:
    name: str
    schedule: object
    weight_decay: float
    renormalize: bool


LOOP_CASES = [
    LoopCase("constant", None, 0.01, False),
    LoopCase("step-decay", sim.StepDecay((10, 30), 0.1), 0.01, False),
    LoopCase("warmup-cosine", sim.WarmupCosine(5), 0.05, False),
    LoopCase("exponential-no-wd", sim.Exponential(1.01), 0.0, False),
    LoopCase("renormalised", sim.StepDecay((20,), 0.5), 0.01, True),
]


@pytest.mark.parametrize("case", LOOP_CASES, ids=[c.name for c in LOOP_CASES])
def test_engine_equals_a_plain_scalar_loop(case: LoopCase) -> None:
    steps, lr, g = 60, np.array([0.3, 1.5]), 0.7
    t = sim.simulate("sgd", lr=lr, weight_decay=case.weight_decay, grad_norm=g, steps=steps,
                     init_norm=1.3, schedule=case.schedule, renormalize=case.renormalize)
    factors = sim.schedules.lr_factors(case.schedule, steps)
    for j, base in enumerate(lr):
        x = 1.3**2
        for k in range(steps):
            a = base * factors[k]
            assert t.norm_sq[k, j] == pytest.approx(x, rel=1e-13)
            assert t.effective_lr[k, j] == pytest.approx(a / x, rel=1e-13)
            angle = np.arctan(a * g / ((1 - a * case.weight_decay) * x))
            assert t.angular_update[k, j] == pytest.approx(angle, rel=1e-13)
            x = 1.0 if case.renormalize else eq.norm_sq_step(x, a, case.weight_decay, g)
        assert t.final_norm_sq[j] == pytest.approx(x, rel=1e-13)


def test_renormalised_effective_lr_is_the_lr() -> None:
    schedule = sim.StepDecay((50,), 0.1)
    t = sim.simulate("sgd", lr=0.2, weight_decay=0.1, steps=100, schedule=schedule,
                     renormalize=True)
    np.testing.assert_array_equal(t.norm_sq, 1.0)
    np.testing.assert_allclose(t.effective_lr, 0.2 * schedule.factors(100), rtol=1e-15)


def test_record_every_subsamples_the_full_run() -> None:
    kwargs = dict(lr=np.array([0.1, 1.0]), weight_decay=0.01, steps=1001)
    full, sparse = sim.simulate("sgd", **kwargs), sim.simulate("sgd", **kwargs, record_every=100)
    np.testing.assert_array_equal(sparse.step, np.arange(0, 1001, 100))
    for name in ("norm_sq", "effective_lr", "angular_update"):
        np.testing.assert_array_equal(getattr(sparse, name), getattr(full, name)[::100])
    np.testing.assert_array_equal(sparse.final_norm_sq, full.final_norm_sq)


def test_absurd_allocations_fail_before_allocating() -> None:
    grid = np.linspace(0.01, 1, 1000)
    with pytest.raises(MemoryError, match="record_every"):
        sim.simulate("sgd", lr=grid[:, None], weight_decay=grid[None, :] * 1e-3, steps=10_000)


def test_norm_sq_step_splits_exactly_into_powers_of_x() -> None:
    terms = laurent_terms(eq.NORM_SQ_STEP, eq.x)
    assert set(terms) == {1, -1}
    with pytest.raises(ValueError, match="Laurent polynomial"):
        laurent_terms(eq.NORM_SQ_STEP + eq.x**eq.alpha, eq.x)


def test_effective_damping_follows_the_norm() -> None:
    t = sim.simulate("sgd", lr=0.1, steps=50)
    np.testing.assert_allclose(sim.effective_damping(t.norm_sq, 1e-3), 1e-3 * t.norm_sq, rtol=0)
