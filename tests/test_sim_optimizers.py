"""The sphere engine's update rules equal torch.optim's, step for step, in float64."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from scalewise.sim.update_rules import Hyper, init_state, update
from scalewise.vocabulary import Optimizer


@dataclass(frozen=True)
class Case:
    optimizer: Optimizer
    torch_class: type
    torch_kwargs: dict
    hyper: Hyper
    seed: int


def _hyper(lr=0.05, weight_decay=0.1, momentum=0.0, beta1=0.9, beta2=0.999, eps=1e-8,
           rmsprop_alpha=0.99) -> Hyper:
    return Hyper(lr, weight_decay, momentum, beta1, beta2, eps, rmsprop_alpha)


_ADAM = dict(lr=0.05, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-3)

CASES = [
    Case(Optimizer.SGD, torch.optim.SGD, dict(lr=0.05, weight_decay=0.1), _hyper(), 0),
    Case(Optimizer.SGDM, torch.optim.SGD, dict(lr=0.05, weight_decay=0.1, momentum=0.9),
         _hyper(momentum=0.9), 1),
    Case(Optimizer.ADAM, torch.optim.Adam, _ADAM, _hyper(beta1=0.8, beta2=0.99, eps=1e-3), 2),
    Case(Optimizer.ADAMW, torch.optim.AdamW, _ADAM, _hyper(beta1=0.8, beta2=0.99, eps=1e-3), 3),
    Case(Optimizer.RMSPROP, torch.optim.RMSprop, dict(lr=0.05, weight_decay=0.1, alpha=0.9,
                                                      eps=1e-3),
         _hyper(rmsprop_alpha=0.9, eps=1e-3), 4),
    Case(Optimizer.ADAGRAD, torch.optim.Adagrad, dict(lr=0.05, weight_decay=0.1, eps=1e-3),
         _hyper(eps=1e-3), 5),
]


@pytest.mark.parametrize("case", CASES, ids=[c.optimizer.value for c in CASES])
def test_steps_equal_torch_optim(case: Case) -> None:
    rng = np.random.default_rng(case.seed)
    w0 = rng.standard_normal((3, 7))
    grads = rng.standard_normal((5, 3, 7))
    param = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = case.torch_class([param], **case.torch_kwargs)
    w, state = w0, init_state(w0)
    for grad in grads:
        param.grad = torch.tensor(grad, dtype=torch.float64)
        opt.step()
        w, state = update(case.optimizer, state, w, grad, case.hyper)
        np.testing.assert_allclose(w, param.detach().numpy(), rtol=1e-13, atol=1e-15)
