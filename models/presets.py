"""Named starting points for ``scalewise train --preset NAME``: a :class:`TrainConfig` each, which
flags then override field by field.

>>> preset("digits-bn-sgd").optimizer.wd_mode.value
'l2'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scalewise import checks
from scalewise.models.config import TrainConfig, override


def _preset(name: str, **changes: Any) -> TrainConfig:
    return override(TrainConfig(name=name), changes)


PRESETS: Mapping[str, TrainConfig] = {
    config.name: config
    for config in (
        # The notes' central case (001 Sec. 5.1, Eq. 25): BN + SGD + WD, whose effective LR
        # tends to sqrt(2 alpha lambda). Linearizing 001 Eq. (23) at its fixed point, the
        # squared norms approach it by a factor 2 (1 - alpha lambda)^2 - 1 ~ 1 - 4 alpha lambda
        # per step: a time constant of 500 steps here, six of them in 3000 steps.
        _preset("digits-bn-sgd", **{"optimizer.weight_decay": 5e-3, "optimizer.wd_mode": "l2",
                                    "steps": 3000}),
        # The same network with each normalized unit rescaled to unit norm after every step,
        # so that the effective LR equals the LR (001 Sec. 4.3).
        _preset("digits-bn-sgd-renorm", **{"optimizer.renormalize": True, "steps": 1000}),
        _preset("digits-bn-adamw", **{"optimizer.name": "adamw", "optimizer.lr": 1e-3,
                                      "optimizer.weight_decay": 5e-2,
                                      "optimizer.wd_mode": "decoupled", "steps": 1000}),
        _preset("digits-bn-kfac", **{"optimizer.name": "kfac", "optimizer.lr": 1e-2,
                                     "optimizer.weight_decay": 1e-3, "optimizer.wd_mode": "l2",
                                     "steps": 1000}),
        # A teacher-student task without normalization: the control case.
        _preset("teacher-mlp-sgd", **{"data.name": "teacher", "model.norm": "none",
                                      "optimizer.lr": 0.05, "steps": 1000}),
        # The paper's (004) CIFAR-10 setting: VGG with BN, momentum SGD, wd on the conv layers.
        _preset("cifar10-vgg-bn-sgd", **{
            "data.name": "cifar10", "data.root": "data", "model.arch": "vgg",
            "optimizer.name": "sgdm", "optimizer.weight_decay": 5e-4,
            "optimizer.wd_mode": "l2", "optimizer.wd_placement": "normalized",
            "optimizer.schedule": "step", "optimizer.milestones": (10000, 15000),
            "steps": 20000, "costly_probe_every": 1000, "eval_every": 1000,
            "checkpoint_every": 1000}),
        _preset("mnist-mlp-bn-sgd", **{"data.name": "mnist", "data.root": "data",
                                       "model.width": 256, "optimizer.weight_decay": 5e-4,
                                       "optimizer.wd_mode": "l2", "steps": 3000,
                                       "eval_every": 500, "checkpoint_every": 500}),
    )
}
"""Named starting points for ``scalewise train --preset NAME`` (flags then override fields).
CIFAR-10 and MNIST read from ``data/`` under the current folder unless ``data.root`` says
otherwise."""


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        checks.fail("preset", name, "one of " + ", ".join(PRESETS))
    return PRESETS[name]
