"""The exponential-LR equivalence of theory.schedules run in float64 on a scale-invariant cost:
the directions of the run with weight decay and of the decay-free run under the schedule agree;
bad input is named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from scalewise.theory import schedules


def _assert_close(name: str, got, want, rtol: float, atol: float = 0.0) -> None:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol)
    assert not bad.any(), f"{name}: got {got[bad]} want {want[bad]} (rtol={rtol}, atol={atol})"


def _cost_gradient(w: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Gradient of the scale-invariant ``J(w) = w^T A w / w^T w`` (degree -1 homogeneous)."""
    sq = w @ w
    return 2 * (matrix @ w) / sq - 2 * (w @ matrix @ w) * w / sq**2


@dataclass(frozen=True)
class Equivalence:
    lr: float
    weight_decay: float
    momentum: float
    steps: int = 60
    seed: int = 0

    @property
    def id(self) -> str:
        return f"lr{self.lr}-wd{self.weight_decay}-mu{self.momentum}"


def _equivalent_runs(case: Equivalence, *, matched_buffer: bool) -> float:
    """Largest distance between the unit directions of the decay run (torch SGD from an empty
    buffer) and the decay-free run under the exponential schedule."""
    rng = np.random.default_rng(case.seed)
    a = rng.standard_normal((5, 5))
    matrix = a + a.T
    w = rng.standard_normal(5)
    m = np.zeros(5)
    hyper = dict(lr=case.lr, weight_decay=case.weight_decay, momentum=case.momentum)
    w_tilde, m_tilde = schedules.sgdm_equivalent_state(w, m, 0, **hyper)
    if not matched_buffer:
        m_tilde = np.zeros(5)
    worst = 0.0
    for k in range(case.steps):
        m = case.momentum * m + _cost_gradient(w, matrix) + case.weight_decay * w
        w = w - case.lr * m
        m_tilde = case.momentum * m_tilde + _cost_gradient(w_tilde, matrix)
        w_tilde = w_tilde - schedules.sgdm_equivalent_lr(k, **hyper) * m_tilde
        gap = w / np.linalg.norm(w) - w_tilde / np.linalg.norm(w_tilde)
        worst = max(worst, float(np.linalg.norm(gap)))
    return worst


EQUIVALENCES = [
    Equivalence(lr=0.1, weight_decay=0.1, momentum=0.0),
    Equivalence(lr=0.1, weight_decay=0.05, momentum=0.5),
    Equivalence(lr=0.01, weight_decay=0.05, momentum=0.9),
]


@pytest.mark.parametrize("case", EQUIVALENCES, ids=lambda c: c.id)
def test_exponential_lr_equivalence_in_float64(case: Equivalence) -> None:
    assert _equivalent_runs(case, matched_buffer=True) < 1e-10


@pytest.mark.parametrize("case", [c for c in EQUIVALENCES if c.momentum > 0], ids=lambda c: c.id)
def test_exponential_lr_needs_the_matched_initial_buffer(case: Equivalence) -> None:
    assert _equivalent_runs(case, matched_buffer=False) > 1e-4


def test_plain_sgd_schedule_is_momentum_schedule_at_zero_momentum() -> None:
    steps = np.arange(50)
    plain = schedules.sgd_equivalent_lr(steps, lr=0.1, weight_decay=0.3)
    momentum = schedules.sgdm_equivalent_lr(steps, lr=0.1, weight_decay=0.3, momentum=0.0)
    _assert_close("lr_k", momentum, plain, rtol=1e-12)
    w = np.arange(1.0, 4.0)
    w_tilde = schedules.sgd_equivalent_weights(w, 7, lr=0.1, weight_decay=0.3)
    _assert_close("w~", w_tilde, w / 0.97**7, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        (dict(lr=0.1, weight_decay=0.1, momentum=0.9), "sqrt\\(momentum\\)"),
        (dict(lr=0.0, weight_decay=0.1, momentum=0.5), "lr"),
        (dict(lr=0.1, weight_decay=-1.0, momentum=0.5), "weight_decay"),
        (dict(lr=0.1, weight_decay=0.1, momentum=1.0), "momentum"),
    ],
    ids=["complex-growth", "lr", "weight_decay", "momentum"],
)
def test_schedule_bad_input_names_the_parameter(kwargs: dict, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        schedules.sgdm_equivalent_lr(3, **kwargs)


def test_schedule_step_must_be_a_non_negative_integer() -> None:
    with pytest.raises(ValueError, match="step"):
        schedules.sgd_equivalent_lr(1.5, lr=0.1, weight_decay=0.1)
