"""Optimizers with weight-decay modes and placement, renormalization, norm grafting, AdaGraft.

``torch.optim``'s SGD, Adam, AdamW, RMSprop and Adagrad are used as they are; K-FAC comes from
:mod:`models.kfac`. Weight decay (001 Sec. 5) is one of

* ``l2``: ``lambda w`` added to the gradient (torch's own ``weight_decay``), hence
  preconditioned by adaptive methods (001 Sec. 5, "AdamW");
* ``decoupled``: the literal shrink ``w <- (1 - alpha lambda) w`` of 001 Eq. (22), applied by a
  step pre-hook with each group's current learning rate before the optimizer's own update
  (``torch.optim.AdamW`` for ``adamw``, which does exactly this);

placed on the scale-invariant weights (``normalized``), the output layer (``output``) or every
parameter (``all``): the paper 004's wd-conv / wd-fc / wd-all (Sec. 4.1, Fig. 2).

Hooks, not subclasses, carry decoupled decay, renormalization and grafting, so the returned
object is the plain torch optimizer whose ``state_dict`` round-trips as torch defines it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from scalewise.models.config import (
    OptimizerConfig,
    OptimizerName,
    WeightDecayMode,
    WeightDecayPlacement,
)
from scalewise.models.kfac import KFAC
from scalewise.models.networks import ScaleInvariant, output_layer, scale_invariant_params

NormTargets = Callable[[int], Sequence[float]] | np.ndarray


def decayed_params(model: nn.Module, placement: WeightDecayPlacement) -> list[nn.Parameter]:
    """The parameters weight decay applies to under ``placement`` (004 Sec. 4.1)."""
    placement = WeightDecayPlacement(placement)
    if placement == WeightDecayPlacement.NORMALIZED:
        return [s.param for s in scale_invariant_params(model)]
    if placement == WeightDecayPlacement.OUTPUT:
        return list(output_layer(model).parameters())
    return list(model.parameters())


def param_groups(model: nn.Module, config: OptimizerConfig, key: str) -> list[dict[str, Any]]:
    """Two groups, decayed and not (empty ones dropped), the decay stored under ``key``."""
    rate = 0.0 if config.wd_mode == WeightDecayMode.NONE else config.weight_decay
    decayed = {id(p) for p in decayed_params(model, config.wd_placement)}
    groups = [
        {"params": [p for p in model.parameters() if id(p) in decayed], key: rate},
        {"params": [p for p in model.parameters() if id(p) not in decayed], key: 0.0},
    ]
    return [g for g in groups if g["params"]]


def _torch_optimizer(groups: list[dict[str, Any]], config: OptimizerConfig,
                     name: OptimizerName) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer ``name`` over ``groups``, with ``config``'s settings."""
    lr = config.lr
    if name in (OptimizerName.SGD, OptimizerName.SGDM):
        momentum = config.momentum if name == OptimizerName.SGDM else 0.0
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == OptimizerName.ADAM:
        return torch.optim.Adam(groups, lr=lr, betas=config.betas, eps=config.eps)
    if name == OptimizerName.ADAMW:
        return torch.optim.AdamW(groups, lr=lr, betas=config.betas, eps=config.eps)
    if name == OptimizerName.RMSPROP:
        return torch.optim.RMSprop(groups, lr=lr, alpha=config.rmsprop_alpha, eps=config.eps,
                                   momentum=config.momentum)
    return torch.optim.Adagrad(groups, lr=lr, eps=config.eps)


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` describes for ``model``'s parameters, with its weight decay
    mode and placement, AdaGraft when ``config.graft_direction`` is set, and per-step
    renormalization when ``config.renormalize``. (Norm grafting needs another run's norms:
    :func:`models.training.train` adds it with :func:`graft_norms`.)

    ``config`` validated its own values when it was built; K-FAC raises ``ValueError`` for a
    layer it does not support (see :func:`models.kfac.preconditioned_layers`)."""
    decoupled = config.wd_mode == WeightDecayMode.DECOUPLED
    if config.graft_direction is not None:
        optimizer: torch.optim.Optimizer = _adagraft(model, config, config.graft_direction)
    elif config.name == OptimizerName.KFAC:
        k = config.kfac
        optimizer = KFAC(
            model, param_groups(model, config, "weight_decay"), lr=config.lr,
            momentum=config.momentum, damping=k.damping, weight_decay=0.0,
            wd_mode=config.wd_mode, curvature=k.curvature, factor_decay=k.factor_decay,
            factor_interval=k.factor_interval, inverse_interval=k.inverse_interval)
    elif config.name == OptimizerName.ADAMW or not decoupled:
        optimizer = _torch_optimizer(param_groups(model, config, "weight_decay"), config,
                                     config.name)
    else:
        optimizer = _torch_optimizer(_decoupled_groups(model, config), config, config.name)
        optimizer.register_step_pre_hook(decoupled_weight_decay)
    if config.renormalize:
        renormalize_after_step(optimizer, scale_invariant_params(model))
    return optimizer


def _decoupled_groups(model: nn.Module, config: OptimizerConfig) -> list[dict[str, Any]]:
    """Groups for a decay applied by :func:`decoupled_weight_decay`: torch's own is off."""
    groups = param_groups(model, config, "decoupled_weight_decay")
    return [{**g, "weight_decay": 0.0} for g in groups]


def _adagraft(model: nn.Module, config: OptimizerConfig, direction: OptimizerName) -> AdaGraft:
    """AdaGraft of ``config.name`` (magnitude) and ``direction``. An ``l2`` decay enters both
    optimizers' gradients; a decoupled one shrinks the weights once, as a pre-hook of the
    grafted step, so neither inner optimizer decays (AdamW steps as Adam)."""
    decoupled = config.wd_mode == WeightDecayMode.DECOUPLED

    def inner(name: OptimizerName) -> torch.optim.Optimizer:
        groups = (_decoupled_groups(model, config) if decoupled
                  else param_groups(model, config, "weight_decay"))
        return _torch_optimizer(groups, config, name)

    optimizer = AdaGraft(inner(config.name), inner(direction))
    if decoupled:
        optimizer.register_step_pre_hook(decoupled_weight_decay)
    return optimizer


@torch.no_grad()
def decoupled_weight_decay(optimizer: torch.optim.Optimizer, *_: Any) -> None:
    """Step pre-hook: ``w <- (1 - lr lambda) w`` with each group's ``lr`` and
    ``decoupled_weight_decay`` (001 Eq. 22), before the optimizer's update."""
    for group in optimizer.param_groups:
        rate = group.get("decoupled_weight_decay", 0.0)
        if rate:
            for param in group["params"]:
                param.mul_(1 - group["lr"] * rate)


def _rows(inv: ScaleInvariant) -> torch.Tensor:
    """The tensor as (units, fan_in): one row per output unit, or one row for the layer."""
    return inv.param.reshape(inv.param.shape[0] if inv.granularity == "unit" else 1, -1)


@torch.no_grad()
def renormalize(invariants: Iterable[ScaleInvariant]) -> None:
    """Rescale each scale-invariant unit (or LN layer) to unit norm in place: the network's
    function is unchanged and the effective LR ``alpha / ||w||^2`` equals ``alpha``
    (001 Sec. 4.3, the "third option")."""
    for inv in invariants:
        rows = _rows(inv)
        rows.div_(rows.norm(dim=1, keepdim=True))


def renormalize_after_step(
    optimizer: torch.optim.Optimizer, invariants: Sequence[ScaleInvariant]
) -> RemovableHandle:
    """Register :func:`renormalize` as a step post-hook of ``optimizer``."""
    return optimizer.register_step_post_hook(lambda *_: renormalize(invariants))


def graft_norms(
    optimizer: torch.optim.Optimizer,
    invariants: Sequence[ScaleInvariant],
    targets: NormTargets,
    *,
    start_step: int = 0,
) -> RemovableHandle:
    """Norm grafting (004 Sec. 4.1, Fig. 4; 000 "norm grafting"): after each optimizer step
    ``k`` (counted from ``start_step``; pass the resumed step when resuming), rescale each
    scale-invariant layer ``l`` to Frobenius norm ``targets[k][l]``, the norm the same layer
    had after step ``k`` in another run. By scale invariance this changes only the effective
    learning rate, which it sets to the other run's.

    ``targets`` is an array (steps, layers) or a callable ``step -> per-layer norms``, layers
    in the order of ``invariants``. From another run's probes, a layer's norm is
    ``sqrt(units * norm_sq)`` (``norm_sq`` is the per-unit mean; ``units = 1`` for LN layers).
    """
    lookup = targets if callable(targets) else np.asarray(targets).__getitem__
    counter = itertools.count(start_step)

    @torch.no_grad()
    def hook(*_: Any) -> None:
        norms = lookup(next(counter))
        if len(norms) != len(invariants):
            raise ValueError(f"targets must give {len(invariants)} norms per step, got {len(norms)}")
        for inv, norm in zip(invariants, norms):
            inv.param.mul_(float(norm) / inv.param.norm())

    return optimizer.register_step_post_hook(hook)


class AdaGraft(torch.optim.Optimizer):
    """AdaGraft (000 Algorithm 2, Agarwal et al. 2020), per parameter tensor: the step
    ``||w_M - w|| / (||w_D - w|| + eps) * (w_D - w)`` has the magnitude of ``magnitude``'s step
    and the direction of ``direction``'s. Both optimizers hold the same parameters and keep
    their own state; the learning rate that matters is ``magnitude``'s, whose parameter groups
    this optimizer shares (so an LR scheduler on it scales the magnitude)."""

    def __init__(self, magnitude: torch.optim.Optimizer, direction: torch.optim.Optimizer,
                 eps: float = 1e-16):
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        mine = [p for g in magnitude.param_groups for p in g["params"]]
        theirs = [p for g in direction.param_groups for p in g["params"]]
        if [id(p) for p in mine] != [id(p) for p in theirs]:
            raise ValueError("magnitude and direction must optimize the same parameters")
        self.magnitude, self.direction, self.eps = magnitude, direction, eps
        super().__init__(magnitude.param_groups, {})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        start = [p.clone() for p in params]
        self.magnitude.step()
        sizes = [(p - s).norm() for p, s in zip(params, start)]
        for p, s in zip(params, start):
            p.copy_(s)
        self.direction.step()
        for p, s, size in zip(params, start, sizes):
            step = p - s
            p.copy_(s + size / (step.norm() + self.eps) * step)

    def update_curvature(self, outputs: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Forward K-FAC's curvature bookkeeping to whichever inner optimizer needs it."""
        for inner in (self.magnitude, self.direction):
            if hasattr(inner, "update_curvature"):
                inner.update_curvature(outputs, generator)

    def state_dict(self) -> dict[str, Any]:
        return {"magnitude": self.magnitude.state_dict(), "direction": self.direction.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.magnitude.load_state_dict(state_dict["magnitude"])
        self.direction.load_state_dict(state_dict["direction"])
