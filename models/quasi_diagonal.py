"""Preconditioners built from the statistics of each Linear layer's inputs (001 Sec. 3.1).

Each layer ``z = W a + b`` keeps running estimates of its input mean ``m`` and per-coordinate
second moment ``E[a_i^2]`` (exponential moving averages over training batches, the first batch
taken as it is). Two preconditioners use them:

- :class:`QuasiDiagonal`: plain gradient descent in the reparameterized coordinates of 001
  Eq. (9), ``W_tilde = W Sigma^{1/2}``, ``b_tilde = b + W m`` with ``Sigma = diag(Var[a_i])``,
  mapped back to ``(W, b)``. The step is ``-lr [R R^T] grad`` with the quasi-diagonal
  ``[R R^T]^{-1}`` of 001 Eq. (10) (:func:`theory.preconditioning.quasi_diagonal_curvature`,
  proved there), in closed form::

      dW = -lr (g_W - g_b m^T) Sigma^{-1},     db = -lr g_b - dW m.

  It is invariant to shifting a layer's inputs by a constant: the outlier eigenvalue that an
  input mean puts into the curvature (001 Sec. 3, :mod:`theory.kronecker`) does not reach it.
- :class:`DiagonalSecondMoment`: the diagonal of that same curvature, i.e. of the K-FAC input
  factor ``E[(a,1)(a,1)^T]`` with ``S = I`` (001 Eq. 10 with its off-diagonal ``m`` terms
  dropped): ``dW_ij = -lr g_W,ij / E[a_j^2]``, ``db = -lr g_b``. The named choice of diagonal
  preconditioner against which the quasi-diagonal one is compared: it rescales each input
  coordinate but cannot see the mean's off-diagonal coupling (001 Sec. 3.1, after Eq. 10).

Both add ``damping`` to the variances / second moments they divide by.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from scalewise import checks

Direction = tuple[torch.Tensor, torch.Tensor]  # the preconditioned (P_W, P_b); step: -lr times


def quasi_diagonal_direction(grad_weight: torch.Tensor, grad_bias: torch.Tensor,
                             mean: torch.Tensor, second_moment: torch.Tensor,
                             damping: float) -> Direction:
    """001 Eq. (10): the gradient preconditioned by the inverse quasi-diagonal curvature, from
    the inputs' running ``mean`` and ``second_moment`` (in,); ``damping`` adds to the variance."""
    variance = (second_moment - mean * mean).clamp_min(0) + damping  # (in,)
    d_weight = (grad_weight - torch.outer(grad_bias, mean)) / variance  # (out, in)
    return d_weight, grad_bias - d_weight @ mean


def diagonal_direction(grad_weight: torch.Tensor, grad_bias: torch.Tensor, mean: torch.Tensor,
                       second_moment: torch.Tensor, damping: float) -> Direction:
    """The diagonal of the same curvature: each input column over ``E[a_j^2] + damping``, the
    bias as it is (``mean`` unused, so both directions share one signature)."""
    return grad_weight / (second_moment + damping), grad_bias


class _InputStatistics(torch.optim.Optimizer):
    """An optimizer over ``layers`` (each ``nn.Linear`` with a bias) that records the running
    mean and second moment of each layer's inputs with a forward pre-hook (training mode, grad
    enabled only), in the state of the layer's weight: ``mean`` and ``second_moment`` (in,).
    A subclass sets ``direction``, one of the direction functions above."""

    direction: ClassVar[Callable[..., Direction]]

    def __init__(self, layers: Sequence[nn.Linear], *, lr: float, stat_decay: float = 0.95,
                 damping: float = 1e-8):
        checks.positive("lr", lr)
        checks.unit_interval("stat_decay", stat_decay)
        checks.nonnegative("damping", damping)
        if not layers or not all(isinstance(x, nn.Linear) and x.bias is not None for x in layers):
            checks.fail("layers", layers, "a non-empty sequence of nn.Linear with a bias")
        groups = [{"params": [layer.weight, layer.bias]} for layer in layers]
        super().__init__(groups, {"lr": lr, "stat_decay": stat_decay, "damping": damping})
        self._hooks = [layer.register_forward_pre_hook(self._recorder(group))
                       for layer, group in zip(layers, self.param_groups)]

    def _recorder(self, group: dict[str, Any]):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if module.training and torch.is_grad_enabled():
                self._update_statistics(group, inputs[0].detach())
        return record

    def _update_statistics(self, group: dict[str, Any], inputs: torch.Tensor) -> None:
        a = inputs.reshape(-1, inputs.shape[-1])  # (batch, in)
        state = self.state[group["params"][0]]
        mean, second = a.mean(0), (a * a).mean(0)
        if "mean" not in state:
            state["mean"], state["second_moment"] = mean, second
            return
        decay = group["stat_decay"]
        state["mean"].mul_(decay).add_(mean, alpha=1 - decay)
        state["second_moment"].mul_(decay).add_(second, alpha=1 - decay)

    def remove_hooks(self) -> None:
        """Stop recording input statistics (the layers stay as they are)."""
        for hook in self._hooks:
            hook.remove()

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            weight, bias = group["params"]
            if weight.grad is None or bias.grad is None:
                continue
            state = self.state[weight]
            if "mean" not in state:
                raise ValueError("step: no input statistics yet; run a forward pass of the "
                                 "layers in training mode before the first step")
            d_weight, d_bias = self.direction(weight.grad, bias.grad, state["mean"],
                                              state["second_moment"], group["damping"])
            weight.add_(d_weight, alpha=-group["lr"])
            bias.add_(d_bias, alpha=-group["lr"])


class QuasiDiagonal(_InputStatistics):
    """Gradient descent in the coordinates of 001 Eq. (9): the quasi-diagonal preconditioner
    (001 Eq. 10; see the module docstring)."""

    direction = staticmethod(quasi_diagonal_direction)


class DiagonalSecondMoment(_InputStatistics):
    """The diagonal of the quasi-diagonal curvature: each input column scaled by
    ``1 / E[a_j^2]``, the bias left as it is (see the module docstring)."""

    direction = staticmethod(diagonal_direction)
