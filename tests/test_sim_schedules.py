"""Learning-rate schedules: factors against torch.optim.lr_scheduler and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalewise import sim
from scalewise.sim.schedules import lr_factors


def _torch_factors(make_scheduler, steps: int) -> np.ndarray:
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=1.0)
    scheduler = make_scheduler(opt)
    factors = []
    for _ in range(steps):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return np.array(factors)


TORCH_CASES = [
    ("step-decay", sim.StepDecay((3, 7, 8), 0.5),
     lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 7, 8], gamma=0.5)),
    ("exponential", sim.Exponential(1.1),
     lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=1.1)),
    ("constant", sim.Constant(), lambda opt: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)),
]


@pytest.mark.parametrize("schedule,make", [c[1:] for c in TORCH_CASES],
                         ids=[c[0] for c in TORCH_CASES])
def test_factors_equal_torch_schedulers(schedule, make) -> None:
    np.testing.assert_allclose(schedule.factors(12), _torch_factors(make, 12), rtol=1e-14)


def test_warmup_cosine_shape() -> None:
    f = sim.WarmupCosine(warmup_steps=4, min_factor=0.1).factors(14)
    np.testing.assert_allclose(f[:4], [0.25, 0.5, 0.75, 1.0], rtol=1e-15)
    np.testing.assert_allclose(f[4], 1.0, rtol=1e-15)  # cosine phase 0
    np.testing.assert_allclose(f[9], 0.55, rtol=1e-14)  # half-way: (1 + 0.1) / 2
    assert np.all(np.diff(f[4:]) < 0) and f[-1] > 0.1


def test_explicit_array_and_none() -> None:
    np.testing.assert_array_equal(lr_factors(None, 3), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(lr_factors([0.5, 0.25], 2), [0.5, 0.25])
    t = sim.simulate("sgd", lr=1.0, steps=3, schedule=np.array([0.3, 0.2, 0.1]), renormalize=True)
    np.testing.assert_allclose(t.effective_lr, [0.3, 0.2, 0.1], rtol=1e-15)
