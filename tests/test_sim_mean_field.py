"""The mean-field moment map iterated as a generated loop (sim.mean_field): SGD's is 001 Eq. (23)
exactly, every map settles at theory's equilibrium, records follow the steps asked for, and a bad
input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from scalewise import sim
from scalewise.sim.mean_field import OPTIMIZERS, log_steps, mean_field


def test_sgd_is_the_exact_norm_recurrence() -> None:
    lr, wd, g, steps = 0.3, 0.05, 2.0, 500
    norm_sq = [1.0]
    for _ in range(steps):  # 001 Eq. (23): ||w'||^2 = (1 - lr wd)^2 ||w||^2 + lr^2 g^2 / ||w||^2
        norm_sq.append((1 - lr * wd) ** 2 * norm_sq[-1] + lr**2 * g**2 / norm_sq[-1])
    record = np.array([0, 1, 7, 100, 499, 500])
    found = mean_field("sgd", lr=lr, weight_decay=wd, steps=steps, grad_norm=g, record=record)
    assert found.step.tolist() == record.tolist()
    np.testing.assert_allclose(found.norm_sq, np.array(norm_sq)[record], rtol=1e-12)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_map_settles_at_theorys_equilibrium(optimizer: str) -> None:
    adaptive = optimizer in ("adam", "adamw", "rmsprop")
    options = {"momentum": 0.9} if optimizer == "sgdm" else {}
    lr, wd = (1e-3 if adaptive else 0.1), (0.1 if optimizer == "adamw" else 0.01)
    found = mean_field(optimizer, lr=lr, weight_decay=wd, steps=300_000, dim=64, **options)
    target = sim.equilibrium(optimizer, lr=lr, weight_decay=wd, dim=64 if adaptive else None,
                             **options)
    # Adam's and RMSprop's closed forms drop a term of order lr^2 that the map keeps
    tolerance = 1e-4 if optimizer in ("adam", "rmsprop") else 1e-9
    assert found.norm_sq[-1] == pytest.approx(float(target["norm_sq"]), rel=tolerance)


def test_log_steps_start_at_zero_and_end_at_the_last_step() -> None:
    steps = log_steps(100_000, 50)
    assert steps[0] == 0 and steps[-1] == 100_000 and np.all(np.diff(steps) > 0)


def test_a_settled_map_repeats_its_fixed_point() -> None:
    found = mean_field("sgd", lr=0.5, weight_decay=0.5, steps=100_000)
    assert found.norm_sq[-1] == found.norm_sq[-2] and np.isfinite(found.norm_sq).all()


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        mean_field("adagrad", lr=0.1, weight_decay=0.0, steps=10)
    with pytest.raises(ValueError, match="lr"):
        mean_field("sgd", lr=2.0, weight_decay=0.5, steps=10)
