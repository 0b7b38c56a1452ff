"""NumPy and PyTorch checks of theory.second_order beyond its symbolic proofs: models.kfac's
running factors against the closed form of the moving average, and conjugate gradient at sizes
the symbolic check does not reach. float64, exact ground truth, seeded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_theory_kfac import assert_close
from torch import nn

from scalewise.models.kfac import KFAC
from scalewise.theory.second_order import conjugate_gradient, factor_ema_weights_at


@dataclass(frozen=True)
class FactorCase:
    """``updates`` factor updates of a single ``Linear`` layer with decay ``decay``."""

    seed: int
    updates: int
    decay: float
    bias: bool = True
    batch: int = 4
    fan_in: int = 3
    fan_out: int = 2

    @property
    def id(self) -> str:
        return f"k{self.updates}-decay{self.decay}-{'bias' if self.bias else 'nobias'}"


FACTOR_CASES = [
    FactorCase(seed=0, updates=1, decay=0.95),
    FactorCase(seed=1, updates=4, decay=0.95),
    FactorCase(seed=2, updates=5, decay=0.5, bias=False),
]


def _batch_second_moment(rows: torch.Tensor) -> np.ndarray:
    """``Y^T Y / B`` for a batch ``Y`` of ``B`` rows (003 'Estimating the Covariance Matrices')."""
    y = rows.numpy()
    return y.T @ y / y.shape[0]


@pytest.mark.parametrize("case", FACTOR_CASES, ids=[c.id for c in FACTOR_CASES])
def test_kfac_running_factors_are_the_closed_form_average(case: FactorCase) -> None:
    """A single ``Linear`` layer is the network's output, so its pseudo-gradient is the sampled
    ``Dz`` itself, replayed here from a generator with the same seed."""
    model = nn.Linear(case.fan_in, case.fan_out, bias=case.bias, dtype=torch.float64)
    optimizer = KFAC(model, lr=0.1, factor_decay=case.decay)
    data = torch.Generator().manual_seed(case.seed)
    sampler, replay = (torch.Generator().manual_seed(case.seed + 1) for _ in range(2))
    a_batches, s_batches = [], []
    for _ in range(case.updates):
        inputs = torch.randn(case.batch, case.fan_in, generator=data, dtype=torch.float64)
        outputs = model(inputs)
        optimizer.update_curvature(outputs, sampler)
        rows = torch.cat([inputs, torch.ones(case.batch, 1, dtype=torch.float64)], dim=1)
        a_batches.append(_batch_second_moment(rows if case.bias else inputs))
        s_batches.append(_batch_second_moment(
            torch.randn(outputs.shape, generator=replay, dtype=outputs.dtype)))
    weights = factor_ema_weights_at(case.updates, case.decay)
    assert weights.sum() == pytest.approx(1.0, abs=1e-15)
    state = optimizer.state[model.weight]
    assert_close(state["A"].numpy(), np.tensordot(weights, np.stack(a_batches), axes=1))
    assert_close(state["S"].numpy(), np.tensordot(weights, np.stack(s_batches), axes=1))


@dataclass(frozen=True)
class QuadraticCase:
    seed: int
    size: int

    @property
    def id(self) -> str:
        return f"n{self.size}"


QUADRATIC_CASES = [QuadraticCase(seed=3, size=5), QuadraticCase(seed=4, size=8)]


@pytest.mark.parametrize("case", QUADRATIC_CASES, ids=[c.id for c in QUADRATIC_CASES])
def test_conjugate_gradient_on_floats(case: QuadraticCase) -> None:
    """``n`` iterations reach ``-C^{-1} g``; one is the exactly line-searched gradient step."""
    rng = np.random.default_rng(case.seed)
    factor = rng.standard_normal((case.size, case.size))
    curvature = factor @ factor.T + case.size * np.eye(case.size)  # well conditioned SPD
    grad = rng.standard_normal(case.size)

    def mvp(p: list) -> list:
        return list(curvature @ np.array(p))

    solved = conjugate_gradient(mvp, list(grad), case.size)
    assert_close(np.array(solved), -np.linalg.solve(curvature, grad), rtol=1e-9, atol=1e-12)
    line_search = grad @ grad / (grad @ curvature @ grad)
    assert_close(np.array(conjugate_gradient(mvp, list(grad), 1)), -line_search * grad)
