"""One training step: forward, cross-entropy, curvature bookkeeping, backward, update, probes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from scalewise.models.probes import Metric, StepProbe, UnitRecord


@dataclass(frozen=True)
class StepResult:
    """The step's mean cross-entropy ``loss``, the model's ``outputs`` (B, C) (detached), the
    cheap probes ``metrics`` as (layer, name, value), layer ``""`` for the network, and the
    per-unit records ``units`` (layer -> :class:`~scalewise.models.probes.UnitRecord`) when due."""

    loss: float
    outputs: torch.Tensor
    metrics: list[Metric]
    units: dict[str, UnitRecord] = field(default_factory=dict)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    probe: StepProbe | None = None,
    generator: torch.Generator | None = None,
) -> StepResult:
    """One optimizer step on the batch ``(inputs, targets)`` in training mode.

    For K-FAC the curvature factors are updated from this batch first (a second backward pass
    from ``Dz`` sampled with ``generator``: Gaussian for Gauss-Newton, targets drawn from the
    model's predictive distribution for the Fisher). Renormalization, decoupled weight decay
    and grafting run as the optimizer's step hooks. A ``probe`` (a
    :class:`~scalewise.models.probes.StepProbe` of this model and optimizer) measures what its
    plan says around the step.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    outputs = model(inputs)
    loss = F.cross_entropy(outputs, targets)
    if hasattr(optimizer, "update_curvature"):  # K-FAC (never grafted: the config refuses it)
        optimizer.update_curvature(outputs, generator)
    loss.backward()
    if probe is not None:
        probe.snapshot()
    optimizer.step()
    value = float(loss.detach())
    metrics, units = probe.measure() if probe is not None else ([], {})
    return StepResult(value, outputs.detach(), [("", "loss", value), *metrics], units)
