"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Program 1), which
torch does not ship.

Per parameter, with buffer ``m`` (zero at the start)::

    c = beta1 m + (1 - beta1) g          # the step's direction, before its sign
    w <- (1 - lr weight_decay) w - lr sign(c)
    m <- beta2 m + (1 - beta2) g

The decay is decoupled, as AdamW's. Every coordinate moves by exactly ``lr`` (or not at all
where ``c`` is 0), so the step's size does not depend on the gradient's scale: on a
scale-invariant weight the effective learning rate is ``lr / ||w||``
(:attr:`scalewise.vocabulary.Properties.effective_lr_power`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from scalewise import checks


class Lion(torch.optim.Optimizer):
    """Lion with decoupled weight decay; ``betas = (beta1, beta2)`` as in the paper (defaults
    0.9, 0.99)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0) -> None:
        checks.number("lr", lr, 0.0, low_open=True)
        for name, beta in zip(("betas[0]", "betas[1]"), betas):
            checks.number(name, beta, 0.0, 1.0)
        checks.number("weight_decay", weight_decay, 0.0)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                buffer = state["exp_avg"]
                direction = (beta1 * buffer + (1 - beta1) * p.grad).sign_()
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(direction, alpha=-group["lr"])
                buffer.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss
