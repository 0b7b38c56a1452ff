"""A stored run beside theory: measured per-layer ``||w||^2``, effective learning rate and angular
update against the recurrence driven by the run's own measured gradient norms (:func:`sim.drive`,
001 Eq. 23) and against the weight-decay equilibrium (:func:`sim.equilibrium`, 001 Eq. 24-25).

001 Eq. (23) holds step by step for a scale-invariant weight under SGD, whatever the gradient
direction, so the driven prediction of a normalized layer should follow its measurement up to the
averaging over units (the probes store the layer *mean* of per-unit values; the recurrence is
driven by the mean per-unit gradient norm). A layer whose loss is not scale invariant breaks the
premise ``w . grad = 0`` (001 Eq. 18); it is flagged by its measured ``cos_w_grad``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import sim
from models.config import OptimizerName, Schedule, WeightDecayMode, WeightDecayPlacement
from models.store import Run
from models.training import schedule

QUANTITIES = ("norm_sq", "effective_lr", "angular_update")
INVARIANCE_TOLERANCE = 1e-4  # |mean cos(w, grad)| of a normalized layer in float32 is ~1e-7
TAIL_FRACTION = 0.25  # the equilibrium is compared on the last quarter of the run


def _wide(metrics: pd.DataFrame, name: str) -> pd.DataFrame:
    """Metric ``name`` as a (steps, layers) table indexed by step."""
    rows = metrics[metrics["name"] == name]
    return rows.pivot_table(index="step", columns="layer", values="value", aggfunc="last")


def invariant_layers(metrics: pd.DataFrame) -> dict[str, bool]:
    """Per probed layer: is its loss scale invariant, i.e. is ``w`` orthogonal to its gradient
    (001 Eq. 18) at every measured step, ``|mean cos(w, grad)| < INVARIANCE_TOLERANCE``."""
    cos = _wide(metrics, "cos_w_grad")
    return {layer: bool(np.nanmax(np.abs(cos[layer].to_numpy())) < INVARIANCE_TOLERANCE)
            for layer in cos.columns}


def _check_comparable(run: Run) -> None:
    opt = run.config.optimizer
    if opt.name is not OptimizerName.SGD:
        raise ValueError(f"run {run.id}: optimizer {opt.name.value!r} is not compared; the driven "
                         "recurrence (001 Eq. 23) is exact for plain SGD only")
    if opt.wd_mode not in (WeightDecayMode.NONE, WeightDecayMode.L2):
        raise ValueError(f"run {run.id}: wd_mode {opt.wd_mode.value!r} is not compared; allowed: "
                         "'none' or 'l2' (the shrink factor 1 - lr*wd of 001 Eq. 23)")
    if opt.renormalize or opt.graft_norms_from is not None or opt.graft_direction is not None:
        raise ValueError(f"run {run.id}: its norms are set by renormalization or grafting, not "
                         "by 001 Eq. (23)")
    if run.metrics.empty or not (run.metrics["name"] == "grad_norm_unit").any():
        raise ValueError(f"run {run.id} has no per-step probes (probe_every = 0 or no steps)")


def _layer_weight_decay(run: Run, invariant: dict[str, bool]) -> dict[str, float]:
    opt = run.config.optimizer
    decayed = {
        WeightDecayPlacement.ALL: lambda layer: True,
        WeightDecayPlacement.NORMALIZED: lambda layer: invariant[layer],
        WeightDecayPlacement.OUTPUT: lambda layer: not invariant[layer],
    }[opt.wd_placement]
    wd = opt.weight_decay if opt.wd_mode is WeightDecayMode.L2 else 0.0
    return {layer: wd if decayed(layer) else 0.0 for layer in invariant}


def compare_run(run: Run) -> pd.DataFrame:
    """Long-form table ``(step, layer, quantity, source, value)``: for every probed layer the
    measured ``norm_sq``, ``effective_lr`` and ``angular_update``; the same from
    :func:`sim.drive` fed the layer's measured ``grad_norm_unit`` from its measured initial norm
    (001 Eq. 23); and, where the layer is decayed at a constant learning rate, the equilibrium of :func:`sim.equilibrium` at
    the mean gradient norm of the last quarter of the run (001 Eq. 24-25), as a constant.
    ValueError for runs the recurrence does not describe (not SGD, decoupled decay, grafting,
    renormalization, probes not at every step)."""
    _check_comparable(run)
    metrics = run.metrics
    grads = _wide(metrics, "grad_norm_unit")  # (steps, layers)
    norms = _wide(metrics, "norm_sq")
    layers = list(grads.columns)
    invariant = invariant_layers(metrics)
    wd = _layer_weight_decay(run, invariant)
    steps = grads.index.to_numpy()
    if not np.array_equal(steps, np.arange(len(steps))):
        raise ValueError(f"run {run.id} was not probed at every step; the driven recurrence "
                         "needs probe_every = 1")
    lr = run.config.optimizer.lr
    decay = np.array([wd[name] for name in layers])  # (layers,)
    driven = sim.drive(grads.to_numpy(), lr=lr, weight_decay=decay,
                       init_norm=np.sqrt(norms.loc[steps[0], layers].to_numpy()),
                       schedule=schedule(run.config.optimizer))
    tail = grads.iloc[int(len(grads) * (1 - TAIL_FRACTION)):].mean()
    parts = []
    for quantity in QUANTITIES:
        measured = _wide(metrics, quantity).loc[steps, layers]
        predicted = pd.DataFrame(getattr(driven, quantity), index=steps, columns=layers)
        parts += [_long(measured, quantity, "measured"), _long(predicted, quantity, "driven")]
    for layer in layers:
        if wd[layer] > 0 and run.config.optimizer.schedule is Schedule.CONSTANT:
            target = sim.equilibrium("sgd", lr=lr, weight_decay=wd[layer], grad_norm=tail[layer])
            parts += [pd.DataFrame({"step": steps, "layer": layer, "quantity": q,
                                    "source": "equilibrium", "value": float(target[q])})
                      for q in QUANTITIES]
    return pd.concat(parts, ignore_index=True)


def _long(wide: pd.DataFrame, quantity: str, source: str) -> pd.DataFrame:
    frame = wide.rename_axis(index="step", columns="layer").stack().rename("value").reset_index()
    return frame.assign(quantity=quantity, source=source)[
        ["step", "layer", "quantity", "source", "value"]]


def relative_errors(comparison: pd.DataFrame, invariant: dict[str, bool]) -> pd.DataFrame:
    """Per layer and quantity, ``|prediction - measured| / |measured|`` of the driven
    recurrence (median over steps, and at the last step) and of the equilibrium (against the
    measured mean of the last quarter of the run; NaN for an undecayed layer)."""
    rows = []
    for (layer, quantity), group in comparison.groupby(["layer", "quantity"], sort=False):
        by = {s: g.set_index("step")["value"] for s, g in group.groupby("source")}
        measured, driven = by["measured"], by["driven"]
        error = (driven - measured).abs() / measured.abs()
        tail = measured.iloc[int(len(measured) * (1 - TAIL_FRACTION)):].mean()
        equilibrium = by.get("equilibrium")
        rows.append({
            "layer": layer, "quantity": quantity, "scale_invariant": invariant[layer],
            "driven_median": float(error.median()), "driven_last": float(error.iloc[-1]),
            "equilibrium": (np.nan if equilibrium is None
                            else float(abs(equilibrium.iloc[-1] - tail) / abs(tail))),
        })
    return pd.DataFrame(rows)
