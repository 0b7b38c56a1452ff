"""One training step: forward, cross-entropy, curvature bookkeeping, backward, update, probes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scalewise.models.probes import Metric, StepProbe


@dataclass(frozen=True)
class StepResult:
    """The step's mean cross-entropy ``loss``, the model's ``outputs`` (B, C) (detached), and
    the cheap probes ``metrics`` as (layer, name, value), layer ``""`` for the network."""

    loss: float
    outputs: torch.Tensor
    metrics: list[Metric]


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    probe: bool,
    generator: torch.Generator | None = None,
) -> StepResult:
    """One optimizer step on the batch ``(inputs, targets)`` in training mode.

    For K-FAC the curvature factors are updated from this batch first (a second backward pass
    from ``Dz`` sampled with ``generator``: Gaussian for Gauss-Newton, targets drawn from the
    model's predictive distribution for the Fisher). Renormalization, decoupled weight decay
    and grafting run as the optimizer's step hooks. With ``probe`` the per-layer cheap probes
    (:class:`models.probes.StepProbe`) are measured around the step, plus the network's loss.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    outputs = model(inputs)
    loss = F.cross_entropy(outputs, targets)
    if hasattr(optimizer, "update_curvature"):  # K-FAC (never grafted: the config refuses it)
        optimizer.update_curvature(outputs, generator)
    loss.backward()
    snapshot = StepProbe(model, optimizer) if probe else None
    optimizer.step()
    value = float(loss.detach())
    metrics = [("", "loss", value)] + (snapshot.metrics() if snapshot else [])
    return StepResult(value, outputs.detach(), metrics)
