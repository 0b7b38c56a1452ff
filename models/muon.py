"""Muon on every parameter: ``torch.optim.Muon``'s update with each tensor read as a matrix.

torch's Muon takes 2-D weights only. Here a tensor of two or more dimensions is read as the
matrix ``(shape[0], prod(shape[1:]))``: a convolution kernel ``(out, in, kh, kw)`` becomes
``(out, in kh kw)``, the matrix the layer multiplies its unfolded input by, so the
orthogonalized step is the one Muon takes for that linear map. A vector (a bias, a norm's gain)
is read as a ``1 x n`` matrix, whose orthogonal polar factor is its direction: on vectors Muon
is normalized momentum descent. Everything else (the Nesterov buffer, five Newton-Schulz
iterations, the shape's learning-rate adjustment ``sqrt(max(1, rows/cols))``, the decoupled
decay) is torch's, applied to these views, which share the parameters' storage.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, MutableMapping
from typing import Any

import torch

from scalewise import checks

_DEFAULTS = {name: p.default for name, p in inspect.signature(torch.optim.Muon).parameters.items()
             if name != "params"}
"""torch's own defaults (learning rate, decay, momentum 0.95, Nesterov, Newton-Schulz)."""


def as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` viewed as ``(shape[0], rest)``, or ``(1, n)`` for a vector or a scalar."""
    rows = tensor.shape[0] if tensor.ndim >= 2 else 1
    return tensor.view(rows, -1)


class MatrixMuon(torch.optim.Muon):
    """``torch.optim.Muon`` for parameters of any shape (see the module docstring); the keyword
    arguments are torch's."""

    def __init__(self, params: Iterable[Any], **hyperparameters: Any) -> None:
        unknown = sorted(set(hyperparameters) - set(_DEFAULTS))
        if unknown:
            checks.fail("hyperparameters", unknown, f"names among {sorted(_DEFAULTS)}")
        # torch.optim.Muon.__init__ refuses tensors that are not 2-D; its defaults are kept
        torch.optim.Optimizer.__init__(self, params, {**_DEFAULTS, **hyperparameters})

    def _init_group(self, group: MutableMapping, params_with_grad: list[torch.Tensor],
                    grads: list[torch.Tensor], muon_momentum_bufs: list[torch.Tensor]) -> bool:
        for p in group["params"]:
            if p.grad is None:
                continue
            params_with_grad.append(as_matrix(p))
            grads.append(as_matrix(p.grad))
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(as_matrix(p.grad))
            muon_momentum_bufs.append(state["momentum_buffer"])
        return False  # no complex parameters
