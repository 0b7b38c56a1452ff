"""Step hooks that set the norms or directions of a run's steps: renormalization of the
scale-invariant weights (001 Sec. 4.3), norm grafting (004 Sec. 4.1, Fig. 4) and AdaGraft
(000 Algorithm 2). Hooks and a thin wrapper, not subclasses of the optimizers they act on, so
each keeps the ``state_dict`` torch defines.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.hooks import RemovableHandle

from scalewise import checks
from scalewise.models.networks import ScaleInvariant
from scalewise.models.probes import unit_rows

NormTargets = Callable[[int], Sequence[float]] | np.ndarray


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
            checks.fail("targets", norms, f"{len(invariants)} norms per step, one per layer")
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
        checks.positive("eps", eps)
        mine = [p for g in magnitude.param_groups for p in g["params"]]
        theirs = [p for g in direction.param_groups for p in g["params"]]
        if [id(p) for p in mine] != [id(p) for p in theirs]:
            checks.fail("direction", type(direction).__name__, "an optimizer of the parameters "
                        "of magnitude, in the same order")
        self.magnitude, self.direction, self.eps = magnitude, direction, eps
        super().__init__(magnitude.param_groups, {})
        self.param_groups = magnitude.param_groups  # one list: a schedule reaches the magnitude

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

    def state_dict(self) -> dict[str, Any]:
        return {"magnitude": self.magnitude.state_dict(), "direction": self.direction.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.magnitude.load_state_dict(state_dict["magnitude"])
        self.direction.load_state_dict(state_dict["direction"])
        self.param_groups = self.magnitude.param_groups  # loading replaced the magnitude's


def graft_targets(metrics: pd.DataFrame, invariants: Sequence[ScaleInvariant],
                  steps: int) -> np.ndarray:
    """Per-step layer norms (steps, layers) for :func:`graft_norms` from
    another run's long-form ``metrics``: row ``k`` holds ``sqrt(units * norm_sq)`` of each of
    ``invariants``' layers logged at step ``k + 1`` (the per-unit mean of the squared norms
    after ``k + 1`` updates; ``units = 1`` for LN layers).

    Raises ``ValueError`` when a layer's ``norm_sq`` is missing or not finite at any step
    ``1..steps``."""
    rows = metrics[metrics["name"] == "norm_sq"]
    table = rows.pivot(index="step", columns="layer", values="value")  # (logged steps, layers)
    names = [inv.name for inv in invariants]
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise ValueError(f"no norm_sq of the layers {', '.join(missing)}")
    needed = table.reindex(index=range(1, steps + 1), columns=names).to_numpy()  # (steps, L)
    finite = np.isfinite(needed).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite)) + 1
        raise ValueError(f"norm_sq is missing or not finite at step {first} of the steps "
                         f"1..{steps} needed (train it for >= {steps} steps, probe_every = 1)")
    units = np.array([unit_rows(inv.param, inv.granularity).shape[0] for inv in invariants])
    return np.sqrt(units * needed)
