"""Weight decay is an exponentially growing learning rate, on a real BN network (Li and Arora
2020, cited in 001 Sec. 4.3; 000 slides "Counteracting the implicit LR effect").

:mod:`theory.schedules` proves it for any scale-invariant cost and :mod:`sim.equivalence` shows
it on the sphere; here both sides train the digits BN MLP in float64 from the same weights on
the same batches:

- run A: ``torch.optim.SGD`` at the learning rate ``alpha`` with weight decay ``lambda``
  (torch's coupled decay: ``w <- (1 - alpha lambda) w - alpha grad`` without momentum,
  ``m <- mu m + grad + lambda w``, ``w <- w - alpha m`` with it);
- run B: the same optimizer without weight decay at theory's schedule ``alpha (1 - alpha
  lambda)^(-2k-1)`` (plain) or ``alpha r^(-2k-1)`` (momentum, ``r`` the growth factor), with
  momentum starting from theory's buffer ``-(1 - r) w_0 / (alpha r)``; a control starts it from
  torch's empty buffer instead.

Theory predicts ``w_B,k = w~_k``, the decay run's weights mapped by
:func:`theory.schedules.sgd_equivalent_weights` / :func:`~theory.schedules.sgdm_equivalent_state`,
hence equal directions ``w_A / ||w_A|| = w_B / ||w_B||`` of every unit at every step.

The theorem needs every trained parameter to be scale invariant: the output layer and the BN
shifts and scales are not (decay on them is a real penalty that no rescaling undoes), so they are
frozen at their initial values; and the BN ``eps``, added to the batch variance, breaks invariance
by a relative ``eps / var``, so it is set to the smallest normal float64 (torch refuses 0), which
rounds away against any variance of a live unit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from scalewise.models import DataConfig, ModelConfig, load_dataset, train_step
from scalewise.models.data import BatchSampler, Data
from scalewise.models.networks import (
    ScaleInvariant,
    build_model,
    scale_invariant_params,
)
from scalewise.theory import schedules as li_arora
from scalewise.validation.report import Bound, Record, Report, curve_frame, record, spread_steps
from scalewise.validation.suite import Settings, Size

EXPERIMENT = "exponential_lr"
LR, WEIGHT_DECAY, MOMENTUM = 0.1, 1e-2, 0.9  # lr*wd = 1e-3 <= (1 - sqrt(0.9))^2 = 2.6e-3
MODEL = ModelConfig(arch="mlp", norm="batch", width=64, depth=2)
DATA = DataConfig(name="digits", batch_size=128)
CHECKPOINTS = 12  # steps of the run at which records compare
LIMIT = 1e-9  # float64 rounding grown over the run; an error of the theory would show at 1e-3


@dataclass(frozen=True)
class Scale:
    steps: int


SCALES = {Size.SMOKE: Scale(steps=200), Size.REFERENCE: Scale(steps=1000)}


@dataclass(frozen=True)
class Case:
    """One pair of runs: ``label`` (the records' optimizer), the momentum, and whether run B
    starts from theory's buffer (``False``: torch's empty one, the control)."""

    label: str
    momentum: float
    matched_buffer: bool = True


CASES = (Case("sgd", 0.0), Case("sgdm", MOMENTUM), Case("sgdm:empty-buffer", MOMENTUM, False))


@dataclass(frozen=True)
class PairTrajectory:
    """Per step ``k = 0..steps`` and scale-invariant layer: ``mismatch`` the largest distance
    ``||w_A/||w_A|| - w_B/||w_B||||`` over the layer's units, ``predicted_norm`` the Frobenius
    norm of theory's ``w~_k`` mapped from run A, ``measured_norm`` that of ``w_B,k`` and
    ``decay_norm`` that of ``w_A,k``; each (steps + 1, layers)."""

    case: Case
    layers: tuple[str, ...]
    mismatch: np.ndarray
    predicted_norm: np.ndarray
    measured_norm: np.ndarray
    decay_norm: np.ndarray


def scale_invariant_network(data: Data, seed: int) -> nn.Module:
    """The digits BN MLP in float64 whose trainable parameters are exactly its scale-invariant
    weights (001 Eq. 18): output layer and BN affine parameters frozen, BN ``eps`` the smallest
    normal float64 (see the module docstring)."""
    model = build_model(MODEL, data.in_shape, data.num_classes, seed=seed).double()
    invariant = {id(inv.param) for inv in scale_invariant_params(model)}
    for param in model.parameters():
        param.requires_grad_(id(param) in invariant)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eps = torch.finfo(torch.float64).tiny
    return model


def equivalent_lrs(steps: int, momentum: float) -> np.ndarray:
    """Run B's learning rates ``(steps,)`` from :mod:`theory.schedules`."""
    k = np.arange(steps)
    if momentum == 0:
        return li_arora.sgd_equivalent_lr(k, lr=LR, weight_decay=WEIGHT_DECAY)
    return li_arora.sgdm_equivalent_lr(k, lr=LR, weight_decay=WEIGHT_DECAY, momentum=momentum)


def equivalent_weights(weights: np.ndarray, buffer: np.ndarray, step: int,
                       momentum: float) -> np.ndarray:
    """Theory's ``w~_k`` for the decay run's weights ``w_k`` and buffer ``m_k`` at ``step``."""
    if momentum == 0:
        return li_arora.sgd_equivalent_weights(weights, step, lr=LR, weight_decay=WEIGHT_DECAY)
    return li_arora.sgdm_equivalent_state(weights, buffer, step, lr=LR,
                                          weight_decay=WEIGHT_DECAY, momentum=momentum)[0]


def _matched_buffers(optimizer: torch.optim.SGD, invariants: list[ScaleInvariant]) -> None:
    """Set run B's initial momentum buffers to theory's ``m~_0`` (for ``m_0 = 0``)."""
    for inv in invariants:
        w0 = inv.param.detach().numpy()
        _, buffer = li_arora.sgdm_equivalent_state(w0, np.zeros_like(w0), 0, lr=LR,
                                                   weight_decay=WEIGHT_DECAY, momentum=MOMENTUM)
        optimizer.state[inv.param]["momentum_buffer"] = torch.from_numpy(buffer)


def _unit_directions(w: torch.Tensor) -> torch.Tensor:
    rows = w.detach().reshape(w.shape[0], -1)  # (units, fan_in)
    return rows / rows.norm(dim=1, keepdim=True)


def _buffer(optimizer: torch.optim.SGD, param: nn.Parameter) -> np.ndarray:
    buffer = optimizer.state[param].get("momentum_buffer")
    return np.zeros(param.shape) if buffer is None else buffer.numpy()


def run_pair(case: Case, data: Data, steps: int, seed: int) -> PairTrajectory:
    """Train runs A and B of ``case`` in lockstep for ``steps`` on the same batches."""
    model_a = scale_invariant_network(data, seed)
    model_b = copy.deepcopy(model_a)
    inv_a, inv_b = scale_invariant_params(model_a), scale_invariant_params(model_b)
    opt_a = torch.optim.SGD([i.param for i in inv_a], lr=LR, momentum=case.momentum,
                            weight_decay=WEIGHT_DECAY)
    opt_b = torch.optim.SGD([i.param for i in inv_b], lr=LR, momentum=case.momentum)
    if case.momentum and case.matched_buffer:
        _matched_buffers(opt_b, inv_b)
    lrs_b = equivalent_lrs(steps, case.momentum)
    sampler = BatchSampler(len(data.train), DATA.batch_size, seed=seed)
    inputs, targets = data.train.inputs.double(), data.train.targets
    rows = []
    for k in range(steps + 1):
        if k:
            batch = sampler.next()
            opt_b.param_groups[0]["lr"] = float(lrs_b[k - 1])
            for model, optimizer in ((model_a, opt_a), (model_b, opt_b)):
                train_step(model, optimizer, inputs[batch], targets[batch])
        rows.append([_compare(a.param, b.param, _buffer(opt_a, a.param), k, case.momentum)
                     for a, b in zip(inv_a, inv_b)])
    mismatch, predicted, measured, decay = np.moveaxis(np.array(rows), -1, 0)
    return PairTrajectory(case, tuple(i.name for i in inv_a), mismatch, predicted, measured,
                          decay)


def _compare(w_a: torch.Tensor, w_b: torch.Tensor, buffer_a: np.ndarray, step: int,
             momentum: float) -> tuple[float, float, float, float]:
    """(largest unit direction distance, ``||w~_k||``, ``||w_B||``, ``||w_A||``) of a layer."""
    mismatch = (_unit_directions(w_a) - _unit_directions(w_b)).norm(dim=1).max()
    mapped = equivalent_weights(w_a.detach().numpy(), buffer_a, step, momentum)
    return (float(mismatch), float(np.linalg.norm(mapped)), float(w_b.detach().norm()),
            float(w_a.detach().norm()))


def _records(pair: PairTrajectory, steps: list[int]) -> list[Record]:
    """Per layer and checkpoint: the norm of run B against theory's ``||w~_k||``, and the
    direction agreement ``1 - mismatch`` against 1 (its rel. error is the mismatch, to first
    order)."""
    out = []
    for j, layer in enumerate(pair.layers):
        for k in steps:
            out += [record(EXPERIMENT, pair.case.label, layer, f"norm@{k}",
                           predicted=pair.predicted_norm[k, j], measured=pair.measured_norm[k, j]),
                    record(EXPERIMENT, pair.case.label, layer, f"direction_agreement@{k}",
                           predicted=1.0, measured=1.0 - pair.mismatch[k, j])]
    return out


def _curves(pair: PairTrajectory) -> pd.DataFrame:
    steps = np.arange(len(pair.mismatch))
    parts = [curve_frame(EXPERIMENT, pair.case.label, layer, quantity, source, steps,
                         values[:, j])
             for j, layer in enumerate(pair.layers)
             for quantity, source, values in (("direction_mismatch", "measured", pair.mismatch),
                                              ("norm", "predicted", pair.predicted_norm),
                                              ("norm", "measured", pair.measured_norm))]
    return pd.concat(parts, ignore_index=True)


def equivalence(report: Report, settings: Settings) -> None:
    """SGD with weight decay against SGD without it under theory's exponentially growing LR,
    plain and momentum (plus the empty-buffer control), on the digits BN MLP in float64."""
    steps = settings.scale(SCALES).steps
    data = load_dataset(DATA, seed=settings.seed)
    pairs = [run_pair(case, data, steps, settings.seed) for case in CASES]
    checkpoints = spread_steps(1, steps, CHECKPOINTS)
    for pair in pairs:
        report.add(*_records(pair, checkpoints))
        report.add_curves(_curves(pair))
    for label in ("sgd", "sgdm"):
        for quantity in ("norm", "direction_agreement"):
            report.bounds.append(Bound(EXPERIMENT, quantity, LIMIT, optimizer=label,
                                       description=f"{label}: theory's w~_k to float64 rounding"))
    section = report.section("Weight decay as an exponentially growing learning rate",
                             _text(pairs, steps))
    section.figure("exponential-lr-directions", _figure(pairs),
                   "Left: largest direction mismatch between the decay run and the growing-LR "
                   "run over the units of the BN MLP (log scale), float64 epsilon dashed. Right: "
                   "the ratio of their weight norms in the first layer, measured and theory's "
                   "r^-k (dotted).")


def _text(pairs: list[PairTrajectory], steps: int) -> str:
    worst = {p.case.label: float(p.mismatch.max()) for p in pairs}
    norm_error = {p.case.label: float(np.max(np.abs(p.measured_norm / p.predicted_norm - 1)))
                  for p in pairs}
    growth = li_arora.sgdm_growth_factor(lr=LR, weight_decay=WEIGHT_DECAY, momentum=MOMENTUM)
    return (
        "Li and Arora's theorem (001 Sec. 4.3; proved symbolically in `theory.schedules`, "
        "identities `sgd_exp_lr_equivalence`, `sgdm_exp_lr_equivalence`, "
        "`sgdm_exp_lr_three_steps`): for a scale-invariant cost, SGD with weight decay "
        f"(alpha = {LR}, lambda = {WEIGHT_DECAY}) and SGD without it at the learning rate "
        "alpha (1 - alpha lambda)^(-2k-1) point the same way at every step; with momentum "
        f"(mu = {MOMENTUM}) the schedule is alpha r^(-2k-1) with r = {float(growth):.6f} and "
        "the decay-free run must start from the buffer -(1 - r) w_0 / (alpha r).\n\n"
        f"Both runs train the digits BN MLP (width {MODEL.width}, depth {MODEL.depth}, batch "
        f"{DATA.batch_size}) in float64 for {steps} steps from the same weights on the same "
        "batches. Only the normalized weights are trained: the output layer and the BN shifts "
        "and scales are not scale invariant (decay on them is a real penalty no rescaling "
        "undoes), so they are frozen at initialization, and BN's eps, which breaks invariance "
        "by a relative eps/var, is set to the smallest normal float64 (torch refuses 0).\n\n"
        "Records: per layer at checkpoint steps, the Frobenius norm of the decay-free run "
        "against theory's ||w~_k|| mapped from the decay run (`norm@k`), and the direction "
        "agreement 1 - max_j ||w_A,j/||w_A,j|| - w_B,j/||w_B,j|||, predicted 1 "
        "(`direction_agreement@k`; its rel. error is the largest unit-direction distance).\n\n"
        f"Largest direction mismatch over all steps and units: plain SGD {worst['sgd']:.2g}, "
        f"momentum SGD {worst['sgdm']:.2g}; largest norm rel. error {norm_error['sgd']:.2g} "
        f"and {norm_error['sgdm']:.2g}. This is float64 rounding (eps = 2.2e-16) "
        "accumulated over the steps: the equivalence holds on the real network as exactly as "
        "arithmetic allows. The control, momentum started from torch's empty buffer, misses "
        f"by {worst['sgdm:empty-buffer']:.2g} in direction and "
        f"{norm_error['sgdm:empty-buffer']:.2g} in norm: the initial buffer is part of the "
        "theorem."
    )


def _figure(pairs: list[PairTrajectory]) -> Figure:
    """Direction mismatch over steps (log) beside the norm ratio ``||w_B|| / ||w_A||``."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    for pair in pairs:
        steps = np.arange(1, len(pair.mismatch))
        left.semilogy(steps, np.maximum(pair.mismatch[1:].max(axis=1), 1e-18),
                      label=pair.case.label)
        ratio = pair.measured_norm / pair.decay_norm
        right.semilogy(np.arange(len(ratio)), ratio[:, 0], label=f"{pair.case.label} measured")
        right.semilogy(np.arange(len(ratio)), (pair.predicted_norm / pair.decay_norm)[:, 0],
                       linestyle=":", color="black")
    left.axhline(np.finfo(np.float64).eps, color="gray", linestyle="--", label="float64 eps")
    left.set(xlabel="step k", ylabel="max over units of ||w_A/|w_A| - w_B/|w_B|||",
             title="direction mismatch, decay run vs growing-LR run")
    right.plot([], [], linestyle=":", color="black", label="theory (dotted)")
    right.set(xlabel="step k", ylabel=f"||w_B|| / ||w_A|| ({pairs[0].layers[0]})",
              title="weight scale of the growing-LR run")
    left.legend()
    right.legend()
    return figure
