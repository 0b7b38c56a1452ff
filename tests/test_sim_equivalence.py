"""Weight decay == an exponentially growing learning rate (Li and Arora 2020): the two runs of
the sphere engine point the same way at every step, to rounding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from scalewise import sim
from scalewise.sim.equivalence import direction_mismatch, exponential_lr_pair
from scalewise.theory import schedules as li_arora


@dataclass(frozen=True)
class Case:
    name: str
    optimizer: str
    momentum: float
    loss: bool
    lr: float = 0.1
    weight_decay: float = 0.01
    steps: int = 1000


CASES = [
    Case("sgd-noise", "sgd", 0.0, False),
    Case("sgdm-noise", "sgdm", 0.9, False),
    # a loss-driven run is deterministic: keep the step small for the loss's curvature so the
    # dynamics are stable and rounding differences are not amplified
    Case("sgd-loss", "sgd", 0.0, True, lr=0.01, weight_decay=0.05, steps=500),
    Case("sgdm-loss", "sgdm", 0.5, True, lr=0.01, weight_decay=0.05, steps=500),
]


def _loss(dim: int) -> sim.RayleighQuotient:
    a = np.random.default_rng(7).standard_normal((dim, dim))
    return sim.RayleighQuotient((a + a.T) / dim)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_directions_agree_to_rounding(case: Case) -> None:
    dim = 8
    with_wd, growing = exponential_lr_pair(
        case.optimizer, lr=case.lr, weight_decay=case.weight_decay, momentum=case.momentum,
        steps=case.steps, dim=dim, runs=4, seed=1, loss_gradient=_loss(dim) if case.loss else None)
    assert direction_mismatch(with_wd, growing).max() < 1e-12
    # the decay-free run's norm grows by the equivalence's factor: ||w~_k|| = ||w_k|| / r^k
    growth = (1 - case.lr * case.weight_decay if case.optimizer == "sgd" else
              li_arora.sgdm_growth_factor(lr=case.lr, weight_decay=case.weight_decay,
                                          momentum=case.momentum))
    k = with_wd.step[:, None]
    np.testing.assert_allclose(growing.norm_sq, with_wd.norm_sq / growth ** (2 * k), rtol=1e-10)


def test_torchs_empty_buffer_breaks_the_momentum_equivalence() -> None:
    """The control: starting the decay-free momentum run from a zero buffer (torch's default)
    leaves it pointing elsewhere, so the initial buffer is part of the statement."""
    from scalewise.sim.spec import make_spec
    from scalewise.sim.sphere import run_sphere
    from scalewise.sim.update_rules import OptimizerState

    with_wd, growing = exponential_lr_pair("sgdm", lr=0.1, weight_decay=0.01, momentum=0.9,
                                           steps=300, dim=8, runs=2, seed=3)
    lrs = li_arora.sgdm_equivalent_lr(np.arange(300), lr=0.1, weight_decay=0.01, momentum=0.9)
    spec = make_spec("sgdm", lr=1.0, weight_decay=0.0, steps=300, grad_norm=1.0,
                     grad_norm_per_step=False, init_norm=1.0, momentum=0.9, betas=(0.9, 0.999),
                     eps=1e-8, rmsprop_alpha=0.99, schedule=lrs, record_every=1,
                     renormalize=False)
    w0 = with_wd.direction[0]
    zeros = np.zeros_like(w0)
    empty = run_sphere(spec, dim=8, runs=2, seed=growing.seed, loss_gradient=None,
                       keep_direction=True, memory_limit=2**30,
                       initial=(w0, OptimizerState(0, zeros, zeros)))
    assert direction_mismatch(with_wd, empty).max() > 1e-3


def test_only_sgd_and_momentum_have_the_equivalence() -> None:
    with pytest.raises(ValueError, match="optimizer = .* allowed: one of sgd, sgdm$"):
        exponential_lr_pair("adam", lr=0.1, weight_decay=0.01, steps=10, dim=4)
