"""Normalized networks: an MLP, a small VGG-style CNN and a small ResNet.

Every hidden layer is ``Linear``/``Conv2d`` followed by its normalization and then the activation
(normalization before the activation, as assumed by 001 Sec. 4.2-4.4). The choice is one of
``none``, ``batch`` (BN, 001 Eq. 11), ``layer`` (LN, 001 Eq. 21; ``GroupNorm(1, C)`` for conv
layers) or ``weight`` (WN, 001 Eq. 20, per output unit). The output layer is never normalized,
and no bias feeds a batch or layer norm (the norm's own shift replaces it, and a bias that does
not rescale with the weights would break the scale invariance).

Scale invariance (001 Sec. 4.3-4.4): a weight feeding BN is invariant to rescaling each output
unit (rows of a ``Linear`` weight, output channels of a ``Conv2d``), the direction ``v`` of a WN
layer likewise per unit, a weight feeding LN only to rescaling the whole layer.
:func:`scale_invariant_params` lists those tensors with their granularity.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrizations

from scalewise import checks
from scalewise.models.config import Arch, ModelConfig, Norm

Granularity = Literal["unit", "layer"]

_GRANULARITY: dict[Norm, Granularity | None] = {
    Norm.NONE: None,
    Norm.BATCH: "unit",
    Norm.LAYER: "layer",
    Norm.WEIGHT: "unit",
}


@dataclass(frozen=True)
class ScaleInvariant:
    """A weight tensor the loss is invariant to rescaling, per ``unit`` or per ``layer``.
    ``name`` is the layer's module name (the metric's ``layer``)."""

    name: str
    param: nn.Parameter
    granularity: Granularity


@dataclass(frozen=True)
class LayerWeight:
    """The weight tensor of one ``Linear``/``Conv2d`` layer (the direction ``v`` for WN), with
    its invariance: ``granularity`` is ``None`` when the loss is not invariant to its scale."""

    name: str
    param: nn.Parameter
    granularity: Granularity | None


class NormedLayer(nn.Module):
    """``norm(layer(x))``: a ``Linear``/``Conv2d`` and the normalization that follows it."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, norm: Norm):
        super().__init__()
        self.kind = norm
        self.layer = parametrizations.weight_norm(layer, dim=0) if norm == Norm.WEIGHT else layer
        self.norm = _norm_module(norm, layer)

    def invariant_weight(self) -> nn.Parameter:
        """The tensor whose scale the loss ignores: the WN direction ``v``, else the weight."""
        if self.kind == Norm.WEIGHT:
            return self.layer.parametrizations.weight.original1
        return self.layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.layer(x))


def _norm_module(norm: Norm, layer: nn.Linear | nn.Conv2d) -> nn.Module:
    conv = isinstance(layer, nn.Conv2d)
    width = layer.out_channels if conv else layer.out_features
    if norm == Norm.BATCH:
        return nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)
    if norm == Norm.LAYER:
        return nn.GroupNorm(1, width) if conv else nn.LayerNorm(width)
    return nn.Identity()


def _hidden(layer: nn.Linear | nn.Conv2d, norm: Norm) -> nn.Module:
    """The layer itself without normalization (a plain module), else wrapped with its norm."""
    return layer if norm == Norm.NONE else NormedLayer(layer, norm)


def _linear(fan_in: int, fan_out: int, norm: Norm) -> nn.Module:
    return _hidden(nn.Linear(fan_in, fan_out, bias=norm in (Norm.NONE, Norm.WEIGHT)), norm)


def _conv(c_in: int, c_out: int, norm: Norm, *, kernel: int = 3, stride: int = 1) -> nn.Module:
    bias = norm in (Norm.NONE, Norm.WEIGHT)
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias)
    return _hidden(conv, norm)


def _mlp(config: ModelConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    fan_in = int(torch.Size(in_shape).numel())
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    for i in range(1, config.depth + 1):
        layers[f"hidden{i}"] = _linear(fan_in, config.width, config.norm)
        layers[f"relu{i}"] = nn.ReLU()
        fan_in = config.width
    layers["output"] = nn.Linear(fan_in, num_classes)
    return nn.Sequential(layers)


def _image_shape(in_shape: tuple[int, ...], arch: Arch) -> tuple[int, int]:
    if len(in_shape) != 3:
        checks.fail("in_shape", in_shape, f"(channels, height, width) for arch={arch.value}")
    return in_shape[0], min(in_shape[1:])


def _vgg(config: ModelConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """``depth`` stages of 3x3 conv -> norm -> ReLU -> 2x2 max-pool (while the image is at
    least 2 pixels wide), channels ``width * 2**stage``; global average pool; linear output."""
    channels, size = _image_shape(in_shape, Arch.VGG)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(1, config.depth + 1):
        width = config.width * 2 ** (i - 1)
        layers[f"conv{i}"] = _conv(channels, width, config.norm)
        layers[f"relu{i}"] = nn.ReLU()
        if size >= 2:
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            size //= 2
        channels = width
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["output"] = nn.Linear(channels, num_classes)
    return nn.Sequential(layers)


class ResidualBlock(nn.Module):
    """``relu(conv2(relu(conv1(x))) + shortcut(x))`` with each conv normalized; the shortcut
    is a normalized 1x1 conv when the shape changes, else the identity."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: Norm):
        super().__init__()
        self.conv1 = _conv(c_in, c_out, norm, stride=stride)
        self.conv2 = _conv(c_out, c_out, norm)
        reshape = stride != 1 or c_in != c_out
        self.shortcut = _conv(c_in, c_out, norm, kernel=1, stride=stride) if reshape else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + skip)


def _resnet(config: ModelConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """A stem conv and ``depth`` residual blocks; each block after the first doubles the
    channels and halves the image (while it is at least 2 pixels wide)."""
    channels, size = _image_shape(in_shape, Arch.RESNET)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["stem"] = _conv(channels, config.width, config.norm)
    layers["stem_relu"] = nn.ReLU()
    width = config.width
    for i in range(1, config.depth + 1):
        stride = 2 if i > 1 and size >= 2 else 1
        out = width * 2 if i > 1 else width
        layers[f"block{i}"] = ResidualBlock(width, out, stride, config.norm)
        size, width = size // stride, out
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["output"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)


_BUILDERS = {Arch.MLP: _mlp, Arch.VGG: _vgg, Arch.RESNET: _resnet}


def build_model(
    config: ModelConfig, in_shape: tuple[int, ...], num_classes: int, *, seed: int
) -> nn.Module:
    """The network ``config`` describes, for inputs of shape ``in_shape`` (without the batch
    axis) and ``num_classes`` outputs, initialised deterministically from ``seed``.

    The global RNG is forked (saved and restored), so building a model leaves it untouched.

    >>> from scalewise.models.config import ModelConfig
    >>> net = build_model(ModelConfig(width=8, depth=2), (1, 8, 8), 10, seed=0)
    >>> net(torch.zeros(4, 1, 8, 8)).shape
    torch.Size([4, 10])
    """
    checks.one_of("model.arch", config.arch, _BUILDERS)
    checks.integer("model.width", config.width, 1)
    checks.integer("model.depth", config.depth, 1)
    checks.integer("num_classes", num_classes, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _BUILDERS[config.arch](config, tuple(in_shape), num_classes)


def layer_weights(model: nn.Module) -> list[LayerWeight]:
    """Every ``Linear``/``Conv2d`` weight of ``model`` (the WN direction for weight-normalized
    layers), in module order, with its scale invariance."""
    weights, inside = [], set()
    for name, module in model.named_modules():
        if isinstance(module, NormedLayer):
            weights.append(LayerWeight(name, module.invariant_weight(), _GRANULARITY[module.kind]))
            inside.update(id(m) for m in module.modules())
        elif isinstance(module, (nn.Linear, nn.Conv2d)) and id(module) not in inside:
            weights.append(LayerWeight(name, module.weight, None))
    return weights


def scale_invariant_params(model: nn.Module) -> list[ScaleInvariant]:
    """The weight tensors the loss of ``model`` is invariant to rescaling (001 Eq. 18), with
    their granularity: ``unit`` for BN and WN, ``layer`` for LN (001 Sec. 4.4)."""
    return [ScaleInvariant(w.name, w.param, w.granularity)
            for w in layer_weights(model) if w.granularity is not None]


def output_layer(model: nn.Module) -> nn.Module:
    """The (never normalized) output layer of a model built by :func:`build_model`."""
    if not hasattr(model, "output"):
        raise ValueError("model must have an 'output' submodule (as build_model's networks do)")
    return model.output
