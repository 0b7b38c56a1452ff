"""Normalized networks: an MLP, a small VGG-style CNN and a small ResNet.

Every hidden layer is ``Linear``/``Conv2d`` followed by its normalization and then the activation
(normalization before the activation, as assumed by 001 Sec. 4.2-4.4). The choice is one of
``none``, ``batch`` (BN, 001 Eq. 11), ``layer`` (LN, 001 Eq. 21; ``GroupNorm(1, C)`` for conv
layers), ``weight`` (WN, 001 Eq. 20, per output unit) or ``center`` (batch centering, 001 Eq. 13).
The output layer is never normalized, and no bias feeds a batch or layer norm or a centering
(the norm removes it, and a bias that does not rescale with the weights would break the scale
invariance).

The MLP has three options for the experiments on internal covariate shift
(:class:`~models.config.ModelConfig`): the normalization after the ReLU instead of before it
(a module ``norm<i>`` of its own after ``relu<i>``; the Linear layer then has a bias and is not
scale invariant), the knock-out transform after each batch norm (:class:`KnockOut`), and a
constant input shift (:class:`InputShift`) compensated by the first layer's bias.

Scale invariance (001 Sec. 4.3-4.4): a weight feeding BN is invariant to rescaling each output
unit (rows of a ``Linear`` weight, output channels of a ``Conv2d``), the direction ``v`` of a WN
layer likewise per unit, a weight feeding LN only to rescaling the whole layer.
:func:`scale_invariant_params` lists those tensors with their granularity.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrizations

from scalewise import checks
from scalewise.models.config import Arch, ModelConfig, Norm, NormPosition

Granularity = Literal["unit", "layer"]

_GRANULARITY: dict[Norm, Granularity | None] = {
    Norm.NONE: None,
    Norm.BATCH: "unit",
    Norm.LAYER: "layer",
    Norm.WEIGHT: "unit",
    Norm.CENTER: None,  # centering removes a shift; the scale of the weights remains
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


class BatchCenter(nn.Module):
    """Batch centering ``s - mean_batch(s)`` per unit or channel (001 Eq. 13: batch norm
    without the division by the standard deviation). In evaluation it subtracts the running
    mean, updated in training with ``momentum`` as batch norm updates its own."""

    def __init__(self, width: int, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = (0,) if x.dim() == 2 else (0, 2, 3)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if not self.training:
            return x - self.running_mean.view(shape)
        mean = x.mean(axes)  # (units,)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach().to(self.running_mean), self.momentum)
        return x - mean.view(shape)


class KnockOut(nn.Module):
    """The knock-out transform of 001 Sec. 4.2 (after Santurkar et al. 2018): in training, per
    batch and unit, ``a_j <- gamma_j a_j + m_j`` with ``gamma_j ~ U(1 - spread, 1 + spread)``
    and ``m_j ~ N(0, shift^2)``; in evaluation the identity (the transform's mean).

    Each batch's draws come from a generator seeded by ``(seed, draws)``, ``draws`` a buffer
    counting the batches seen, so a run restored from a checkpoint draws what the uninterrupted
    one would. :func:`build_model` sets ``seed`` from the model's seed and the layer's index."""

    def __init__(self, width: int, *, spread: float, shift: float, seed: int = 0):
        super().__init__()
        checks.number("spread", spread, 0.0, 1.0)
        checks.number("shift", shift, 0.0)
        self.width, self.spread, self.shift, self.seed = width, spread, shift, seed
        self.register_buffer("draws", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        entropy = np.random.SeedSequence([self.seed, int(self.draws)]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(entropy))
        self.draws += 1
        gamma = 1 + self.spread * (2 * torch.rand(self.width, generator=generator) - 1)
        offset = self.shift * torch.randn(self.width, generator=generator)
        return gamma.to(x) * x + offset.to(x)


class InputShift(nn.Module):
    """``x + shift``: every input coordinate moved by one constant (uncentered inputs, 001
    Sec. 3)."""

    def __init__(self, shift: float):
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class NormedLayer(nn.Module):
    """``norm(layer(x))``: a ``Linear``/``Conv2d`` and the normalization that follows it, then
    the knock-out transform when one is given."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, norm: Norm,
                 knockout: KnockOut | None = None):
        super().__init__()
        self.kind = norm
        self.layer = parametrizations.weight_norm(layer, dim=0) if norm == Norm.WEIGHT else layer
        self.norm = _norm_module(norm, layer)
        if knockout is not None:
            self.knockout = knockout

    def invariant_weight(self) -> nn.Parameter:
        """The tensor whose scale the loss ignores: the WN direction ``v``, else the weight."""
        if self.kind == Norm.WEIGHT:
            return self.layer.parametrizations.weight.original1
        return self.layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.layer(x))
        return self.knockout(out) if hasattr(self, "knockout") else out


def _norm_module(norm: Norm, layer: nn.Linear | nn.Conv2d) -> nn.Module:
    conv = isinstance(layer, nn.Conv2d)
    width = layer.out_channels if conv else layer.out_features
    if norm == Norm.BATCH:
        return nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)
    if norm == Norm.LAYER:
        return nn.GroupNorm(1, width) if conv else nn.LayerNorm(width)
    if norm == Norm.CENTER:
        return BatchCenter(width)
    return nn.Identity()


def _hidden(layer: nn.Linear | nn.Conv2d, norm: Norm) -> nn.Module:
    """The layer itself without normalization (a plain module), else wrapped with its norm."""
    return layer if norm == Norm.NONE else NormedLayer(layer, norm)


def _has_bias(norm: Norm) -> bool:
    """Whether a layer followed by ``norm`` keeps a bias (none follows that removes it)."""
    return norm in (Norm.NONE, Norm.WEIGHT)


def _conv(c_in: int, c_out: int, norm: Norm, *, kernel: int = 3, stride: int = 1) -> nn.Module:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2,
                     bias=_has_bias(norm))
    return _hidden(conv, norm)


def _mlp(config: ModelConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, each normalized before (or after) its ReLU,
    and a linear output layer; :class:`InputShift` first when ``config.input_shift``."""
    fan_in = int(torch.Size(in_shape).numel())
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    if config.input_shift:
        layers["shift"] = InputShift(config.input_shift)
    after = config.norm_position is NormPosition.AFTER
    for i in range(1, config.depth + 1):
        if after:
            layers[f"hidden{i}"] = nn.Linear(fan_in, config.width)
        else:
            knockout = (KnockOut(config.width, spread=config.knockout_spread,
                                 shift=config.knockout_shift) if config.knockout else None)
            linear = nn.Linear(fan_in, config.width, bias=_has_bias(config.norm))
            layers[f"hidden{i}"] = (linear if config.norm == Norm.NONE
                                    else NormedLayer(linear, config.norm, knockout))
        layers[f"relu{i}"] = nn.ReLU()
        if after:
            layers[f"norm{i}"] = _norm_module(config.norm, layers[f"hidden{i}"])
        fan_in = config.width
    layers["output"] = nn.Linear(fan_in, num_classes)
    return nn.Sequential(layers)


@torch.no_grad()
def _compensate_input_shift(model: nn.Module, shift: float) -> None:
    """Move the first layer's bias by ``-W shift 1`` so that the network on inputs shifted by
    ``shift`` computes what it computed on the unshifted ones (a norm that removes the shift
    leaves the layer without a bias, and nothing to compensate)."""
    first = layer_weights(model)[0].name
    layer = model.get_submodule(first)
    linear = layer.layer if isinstance(layer, NormedLayer) else layer
    if linear.bias is not None:
        linear.bias.sub_(shift * linear.weight.sum(dim=1))


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
_WITH_EPS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
"""The normalizations whose ``eps`` :attr:`ModelConfig.norm_eps` sets."""


def build_model(
    config: ModelConfig, in_shape: tuple[int, ...], num_classes: int, *, seed: int,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """The network ``config`` describes, for inputs of shape ``in_shape`` (without the batch
    axis) and ``num_classes`` outputs, initialised deterministically from ``seed``, in
    ``dtype``: the float32 initialization converted, so every precision starts from the same
    weights (an input shift is then compensated in ``dtype``).

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
        model = _BUILDERS[config.arch](config, tuple(in_shape), num_classes).to(dtype)
    if config.input_shift:
        _compensate_input_shift(model, config.input_shift)
    if config.invariant_init_scale != 1.0:
        with torch.no_grad():
            for invariant in scale_invariant_params(model):
                invariant.param.mul_(config.invariant_init_scale)
    for norm in (m for m in model.modules() if isinstance(m, _WITH_EPS)):
        norm.eps = config.norm_eps
    knockouts = [m for m in model.modules() if isinstance(m, KnockOut)]
    for index, knockout in enumerate(knockouts):
        knockout.seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    return model


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
