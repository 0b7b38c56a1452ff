"""The optimizer factory: a run's optimizer from its config, with weight-decay modes and placement.

``torch.optim``'s SGD, Adam, AdamW, RMSprop and Adagrad are used as they are; K-FAC comes from
:mod:`models.kfac`, the quasi-diagonal and diagonal preconditioners (over every Linear layer,
no weight decay) from :mod:`models.quasi_diagonal`. Weight decay (001 Sec. 5) is one of

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

import importlib
from typing import Any

import torch
from torch import nn

from scalewise.models.config import (
    OptimizerConfig,
    WeightDecayMode,
    WeightDecayPlacement,
)
from scalewise.models.grafting import AdaGraft, renormalize_after_step
from scalewise.models.kfac import KFAC
from scalewise.models.networks import output_layer, scale_invariant_params
from scalewise.vocabulary import Optimizer, Preconditioner


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


_TORCH_ARGUMENT = {"momentum": "momentum", "betas": "betas", "eps": "eps",
                   "rmsprop_alpha": "alpha"}
"""The ``torch.optim`` argument of each hyperparameter a config field holds."""


def _torch_optimizer(groups: list[dict[str, Any]], config: OptimizerConfig,
                     name: Optimizer) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer ``name`` over ``groups``, with the hyperparameters it reads
    (:data:`scalewise.vocabulary.PROPERTIES`) taken from ``config``."""
    properties = name.properties
    module, _, kind = properties.torch_class.rpartition(".")
    arguments = {_TORCH_ARGUMENT[h]: getattr(config, h) for h in properties.hyperparameters}
    return getattr(importlib.import_module(module), kind)(groups, lr=config.lr, **arguments)


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
    elif config.name == Optimizer.KFAC:
        k = config.kfac
        optimizer = KFAC(
            model, param_groups(model, config, "weight_decay"), lr=config.lr,
            momentum=config.momentum, damping=k.damping, weight_decay=0.0,
            wd_mode=config.wd_mode, curvature=k.curvature, factor_decay=k.factor_decay,
            factor_interval=k.factor_interval, inverse_interval=k.inverse_interval)
    elif config.name.properties.preconditioner is Preconditioner.INPUT_STATISTICS:
        optimizer = _input_statistics(model, config)
    elif config.name == Optimizer.ADAMW or not decoupled:
        optimizer = _torch_optimizer(param_groups(model, config, "weight_decay"), config,
                                     config.name)
    else:
        optimizer = _torch_optimizer(_decoupled_groups(model, config), config, config.name)
        optimizer.register_step_pre_hook(decoupled_weight_decay)
    if config.renormalize:
        renormalize_after_step(optimizer, scale_invariant_params(model))
    return optimizer


def _input_statistics(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The preconditioner of ``config.name`` built from the running statistics of the inputs of
    every Linear layer of ``model`` (:mod:`models.quasi_diagonal`)."""
    module, _, kind = config.name.properties.torch_class.rpartition(".")
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return getattr(importlib.import_module(module), kind)(
        layers, lr=config.lr, stat_decay=config.statistics.decay,
        damping=config.statistics.damping)


def _decoupled_groups(model: nn.Module, config: OptimizerConfig) -> list[dict[str, Any]]:
    """Groups for a decay applied by :func:`decoupled_weight_decay`: torch's own is off."""
    groups = param_groups(model, config, "decoupled_weight_decay")
    return [{**g, "weight_decay": 0.0} for g in groups]


def _adagraft(model: nn.Module, config: OptimizerConfig, direction: Optimizer) -> AdaGraft:
    """AdaGraft of ``config.name`` (magnitude) and ``direction``. An ``l2`` decay enters both
    optimizers' gradients; a decoupled one shrinks the weights once, as a pre-hook of the
    grafted step, so neither inner optimizer decays (AdamW steps as Adam)."""
    decoupled = config.wd_mode == WeightDecayMode.DECOUPLED

    def inner(name: Optimizer) -> torch.optim.Optimizer:
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

