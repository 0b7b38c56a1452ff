"""Typed, frozen configuration of a training run: model, data, optimizer, probes, schedule.

A run is reproducible from its :class:`TrainConfig` alone (stored as JSON with the run). Every
choice is a ``str`` enum so that configs round-trip through JSON and the CLI unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Arch(str, Enum):
    MLP = "mlp"
    VGG = "vgg"
    RESNET = "resnet"


class Norm(str, Enum):
    """Normalization placed before each hidden activation (never on the output layer)."""

    NONE = "none"
    BATCH = "batch"
    LAYER = "layer"
    WEIGHT = "weight"


class OptimizerName(str, Enum):
    SGD = "sgd"
    SGDM = "sgdm"
    ADAM = "adam"
    ADAMW = "adamw"
    RMSPROP = "rmsprop"
    ADAGRAD = "adagrad"
    KFAC = "kfac"


class WeightDecayMode(str, Enum):
    """``l2``: lambda*w added to the gradient (so preconditioned by adaptive methods);
    ``decoupled``: the literal shrink w <- (1 - alpha*lambda) w (001 Eq. 22)."""

    NONE = "none"
    L2 = "l2"
    DECOUPLED = "decoupled"


class WeightDecayPlacement(str, Enum):
    """Which parameters are decayed: the paper's (004) wd-conv / wd-fc / wd-all."""

    NORMALIZED = "normalized"
    OUTPUT = "output"
    ALL = "all"


class Curvature(str, Enum):
    """K-FAC's curvature: the Fisher (targets sampled from the model) or the Gauss-Newton."""

    FISHER = "fisher"
    GAUSS_NEWTON = "gauss-newton"


class Dataset(str, Enum):
    TEACHER = "teacher"
    DIGITS = "digits"
    CIFAR10 = "cifar10"
    MNIST = "mnist"


class Schedule(str, Enum):
    CONSTANT = "constant"
    STEP = "step"
    EXPONENTIAL = "exponential"
    WARMUP_COSINE = "warmup-cosine"


@dataclass(frozen=True)
class ModelConfig:
    arch: Arch = Arch.MLP
    norm: Norm = Norm.BATCH
    width: int = 64
    depth: int = 2


@dataclass(frozen=True)
class DataConfig:
    name: Dataset = Dataset.DIGITS
    root: str | None = None  # folder holding CIFAR-10 / MNIST files; unused otherwise
    batch_size: int = 128
    train_size: int | None = None  # None: the whole training split
    test_size: int | None = None


@dataclass(frozen=True)
class KFACConfig:
    curvature: Curvature = Curvature.GAUSS_NEWTON
    damping: float = 1e-3
    factor_decay: float = 0.95
    factor_interval: int = 1
    inverse_interval: int = 20


@dataclass(frozen=True)
class OptimizerConfig:
    name: OptimizerName = OptimizerName.SGD
    lr: float = 0.1
    momentum: float = 0.9  # used by sgdm, rmsprop and kfac
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    wd_mode: WeightDecayMode = WeightDecayMode.NONE
    wd_placement: WeightDecayPlacement = WeightDecayPlacement.ALL
    kfac: KFACConfig = field(default_factory=KFACConfig)
    renormalize: bool = False  # rescale each scale-invariant unit to unit norm after each step
    schedule: Schedule = Schedule.CONSTANT
    milestones: tuple[int, ...] = ()  # step decay: multiply lr by gamma at these steps
    gamma: float = 0.1  # step decay factor, or per-step factor of the exponential schedule
    warmup_steps: int = 0


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    steps: int = 500
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when present, else CPU
    probe_every: int = 1  # cheap per-layer probes
    costly_probe_every: int = 100  # Jacobian / Gauss-Newton / trace probes
    eval_every: int = 100
    checkpoint_every: int = 100
    name: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return from_dict(cls, json.loads(text))


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from plain JSON data, converting enums and tuples."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        kind = _field_type(cls, f.name)
        if dataclasses.is_dataclass(kind):
            value = from_dict(kind, value)
        elif isinstance(kind, type) and issubclass(kind, Enum):
            value = kind(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _field_type(cls: type, name: str) -> Any:
    import typing

    return typing.get_type_hints(cls)[name]
