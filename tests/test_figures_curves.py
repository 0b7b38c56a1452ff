"""figures.curves: the tables behind the explorer's Fig. 6 / Fig. 7 pages agree with theory."""

from __future__ import annotations

import numpy as np
import pytest

from scalewise import sim
from scalewise.figures import curves
from scalewise.theory.equilibria import NO_EQUILIBRIUM


def test_norm_growth_follows_the_square_root_law_late() -> None:
    data = curves.norm_growth_table((0.1, 1.0), steps=20_000)
    last = data[data["step"] == data["step"].max()]
    np.testing.assert_allclose(last["norm_sq"], last["law_norm_sq"], rtol=1e-3)
    np.testing.assert_allclose(last["effective_lr"], last["law_effective_lr"], rtol=1e-3)


def test_sgd_trajectory_reaches_the_equilibrium() -> None:
    data = curves.wd_trajectory_table("sgd", lr=0.1, weight_decay=0.01, steps=10_000)
    target = curves.equilibrium_or_reason("sgd", lr=0.1, weight_decay=0.01)
    for name in ("norm_sq", "effective_lr", "angular_update"):
        np.testing.assert_allclose(data[name].iloc[-1], target[name], rtol=1e-6)


def test_adagrad_has_theorys_reason_instead_of_an_equilibrium() -> None:
    assert curves.equilibrium_or_reason("adagrad", lr=0.1, weight_decay=0.01) == \
        NO_EQUILIBRIUM["adagrad"]


def test_effective_damping_settles_only_with_weight_decay() -> None:
    data = curves.effective_damping_table(lr=0.1, weight_decay=0.01, damping=1e-3, steps=10_000)
    last = data[data["step"] == data["step"].max()].set_index("weight_decay")
    target = sim.equilibrium("sgd", lr=0.1, weight_decay=0.01)["norm_sq"]
    np.testing.assert_allclose(last.loc[0.01, "effective_damping"], 1e-3 * target, rtol=1e-6)
    assert last.loc[0.0, "effective_damping"] > 1e-3 * np.sqrt(10_000 / 200)


@pytest.mark.parametrize("call", [
    lambda: curves.norm_growth_table((), steps=10),
    lambda: curves.wd_trajectory_table("sgd", lr=1.0, weight_decay=1.0, steps=10),
], ids=["no-lrs", "lr-times-wd-1"])
def test_bad_input_is_refused(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_curves_resolve_early_steps_on_a_log_axis() -> None:
    steps = np.unique(curves.norm_growth_table((0.1,), steps=10_000)["step"])
    assert list(steps[:4]) == [0, 1, 2, 3] and steps[-1] == 10_000  # the state after each step
    assert len(steps) <= curves.POINTS + 1
