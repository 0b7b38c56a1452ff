"""004 Eq. 13-14, 001 Sec. 5.2: the effective damping ``eta ||w||^2`` of each normalized layer
of a K-FAC run over training, measured and predicted by the norm recurrence driven by the
measured K-FAC steps.

Config: the batch-normalized K-FAC runs of :mod:`.runs`. Runs -> per layer, the measured
damping and sim's driven prediction (runs without decay and with decoupled decay) ->
``effective_damping@k`` records -> a bound on the largest error -> text and figure.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise import sim
from scalewise.models.store import Run
from scalewise.theory import equilibrium as eq
from scalewise.theory import kfac as kfac_theory
from scalewise.validation.comparison import normalized_layers, wide
from scalewise.validation.kfac.runs import (
    CHECKPOINTS,
    DAMPING,
    KFAC_LABELS,
    KFAC_LR,
    WD_MODES,
    WEIGHT_DECAY,
    bn_runs,
)
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import Bound, Record, Report, curve_frame, record, spread_steps
from scalewise.validation.suite import Settings

EXPERIMENT = "effective_damping"
LIMIT = 0.2  # promised max relative error of the driven effective damping


def effective_damping(report: Report, settings: Settings) -> None:
    """004 Eq. 13-14, 001 Sec. 5.2: the effective damping ``eta ||w||^2`` of each normalized
    layer over training, measured and predicted from the norm recurrence."""
    rows, curves = [], []
    for name, run in bn_runs(settings):
        for layer in normalized_layers(run.metrics):
            layer_curves, records, row = compare_layer(name, run, layer)
            curves += layer_curves
            report.add(*records)
            rows.append(row)
    frame = pd.concat(curves, ignore_index=True)
    report.add_curves(frame)
    report.bounds.append(Bound(
        EXPERIMENT, "effective_damping", LIMIT, statistic="max",
        description="eta ||w||^2 from sim's norm recurrence driven by the measured K-FAC steps "
                    "(no decay, decoupled decay)"))
    summary = pd.DataFrame(rows, columns=["label", "layer", "start", "end", "worst"])
    section = report.section("Mechanism III: effective damping over training", text(summary))
    section.figure("effective_damping", figure(frame),
                   "eta ||w||^2 per normalized layer: measured (solid) and predicted by the "
                   "driven norm recurrence (dashed).")


def compare_layer(name: str, run: Run, layer: str
                  ) -> tuple[list[pd.DataFrame], list[Record], tuple[object, ...]]:
    """One layer's curves (measured, and predicted unless L2), ``effective_damping@k``
    records, and its summary row (label, layer, start, end, worst relative error; NaN for
    L2 runs, which get no prediction)."""
    opt = run.config.optimizer
    measured = wide(run.metrics, "norm_sq")[layer].to_numpy()  # steps 0..steps
    steps = np.arange(len(measured))
    measured_damping = kfac_theory.effective_damping(opt.kfac.damping, measured)
    curves = [curve_frame(EXPERIMENT, name, layer, "effective_damping", "measured", steps,
                          measured_damping)]
    if opt.wd_mode.value == "l2":
        return curves, [], (name, layer, measured_damping[0], measured_damping[-1], np.nan)
    decay = opt.weight_decay if opt.wd_mode.value == "decoupled" else 0.0
    angles = wide(run.metrics, "angular_update")[layer].to_numpy()
    predicted = sim.effective_damping(
        driven_norm_sq(measured, angles, lr=opt.lr, decoupled_decay=decay), opt.kfac.damping)
    curves.append(curve_frame(EXPERIMENT, name, layer, "effective_damping", "predicted",
                              steps[:len(predicted)], predicted))
    records = [record(EXPERIMENT, name, layer, f"effective_damping@{k}",
                      predicted=predicted[k], measured=measured_damping[k])
               for k in spread_steps(0, len(predicted) - 1, CHECKPOINTS)]
    worst = float(np.max(np.abs(predicted / measured_damping[:len(predicted)] - 1)))
    return curves, records, (name, layer, measured_damping[0], measured_damping[-1], worst)


def driven_norm_sq(norm_sq: np.ndarray, angles: np.ndarray, *, lr: float,
                   decoupled_decay: float) -> np.ndarray:
    """``||w_k||^2`` predicted by sim's recurrence (001 Eq. 23, :func:`sim.drive`) driven by the
    measured K-FAC steps, from the measured ``norm_sq[0]``.

    A step ``w+ = (1 - alpha lambda) w - alpha d`` with ``d`` orthogonal to ``w`` turns ``w`` by
    ``tan theta = alpha ||d|| / ((1 - alpha lambda) ||w||)``; the recurrence's step at unit
    norm is then ``g = ||w|| ||d|| = (1 - alpha lambda) ||w||^2 tan(theta) / alpha`` (for SGD
    ``g = ||grad J(w_hat)||``), which is what ``angles`` (the measured angular updates, one per
    step) give with the measured ``norm_sq``. The prediction is exact when every K-FAC step is
    orthogonal to ``w`` (so for the exact curvature, ``G(w) w = 0``); K-FAC's Kronecker factors
    do not keep ``w`` in their null space, and the gap measures that radial part."""
    unit_steps = eq.unit_step_from_angle(angles, norm_sq[:len(angles)], lr, decoupled_decay)
    driven = sim.drive(unit_steps, lr=lr, weight_decay=decoupled_decay,
                       init_norm=math.sqrt(norm_sq[0]))
    return driven.norm_sq


def _change_range(summary: pd.DataFrame, mode: str) -> str:
    """``end / start`` of the runs of weight decay ``mode`` as ``lo-hi``."""
    rows = summary[summary["label"].map(lambda name: (name.split("+") + ["none"])[1]) == mode]
    change = rows["end"] / rows["start"]
    return f"{change.min():.2f}-{change.max():.2f}"


def summary_table(summary: pd.DataFrame) -> str:
    rows = [{"run": r.label, "layer": r.layer, "eta ||w||^2 at start": f"{r.start:.2e}",
             "at end": f"{r.end:.2e}",
             "worst relative error of the prediction": ("(L2: no prediction)"
                                                        if np.isnan(r.worst)
                                                        else f"{r.worst:.1%}")}
            for r in summary.itertuples()]
    return markdown_table(pd.DataFrame(rows), index=False)


def text(summary: pd.DataFrame) -> str:
    worst = summary["worst"].max()
    table = summary_table(summary)
    return (
        "**Measured.** A batch-normalized MLP (2 hidden layers) on digits trained with K-FAC-G "
        f"and K-FAC-F (lr {KFAC_LR:g}, damping eta = {DAMPING:g}, no momentum), without decay, "
        f"with decoupled decay and with L2 (lambda = {WEIGHT_DECAY:g}). The probes log each hidden "
        "layer's mean per-unit ``||w||^2`` and angular update at every step; the effective "
        "damping is ``eta ||w||^2`` (`theory.kfac.EFFECTIVE_DAMPING`, 004 Eq. 14: the curvature "
        "of a layer feeding BN scales as ||w||^-2, 004 Eq. 13, identity "
        "`kfac_factors_rescaling`).\n\n"
        "**Predicted.** `sim.effective_damping` of the norms `sim.drive` predicts from the "
        "measured ``||w_0||^2`` alone, driven step by step by the size of the measured K-FAC "
        "step at unit norm (from the measured angular update; `driven_norm_sq`). The "
        "recurrence (001 Eq. 23) holds exactly when the K-FAC step is orthogonal to w, which "
        "the exact curvature guarantees (``G(w) w = 0`` for a scale-invariant layer) and which "
        "decoupled decay keeps (it only shrinks w by 1 - alpha lambda). What is predicted is "
        "therefore how the norm, hence the damping, accumulates from the steps; what is "
        "tested is that K-FAC's steps have no radial part. L2 decay is preconditioned by "
        "K-FAC (its radial part is the decay itself), so L2 runs are shown measured only.\n\n"
        + table + "\n\n"
        f"**Result.** The prediction follows the measurement to {worst:.1%} at worst. "
        "Over the run eta ||w||^2 changes by a factor "
        f"{_change_range(summary, 'none')} without decay, {_change_range(summary, 'decoupled')} "
        f"with decoupled decay and {_change_range(summary, 'l2')} with L2: decay keeps the "
        "effective damping small (001 Sec. 5.2), L2 most, because K-FAC preconditions it (a "
        "decay along w, where the curvature of a normalized layer is small, is amplified by "
        "the inverse curvature). The residual error of the prediction is the radial "
        "component of the K-FAC step (its Kronecker factors do not annihilate w, unlike the "
        "exact Gauss-Newton or Fisher block) and the averaging over units: the probes log layer "
        "means of per-unit values, and the recurrence is driven by the mean.")


def figure(frame: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, len(KFAC_LABELS), sharey=True)
    colors = {mode: f"C{i}" for i, mode in enumerate(WD_MODES)}
    styles = {"measured": "-", "predicted": "--"}
    for ax, optimizer in zip(axes, KFAC_LABELS):
        for (name, layer, source), curve in frame.groupby(["optimizer", "layer", "source"]):
            if name.split("+")[0] != optimizer:
                continue
            mode = name.split("+")[1] if "+" in name else "none"
            ax.plot(curve["step"], curve["value"], styles[source], color=colors[mode],
                    alpha=1.0 if layer.endswith("1") else 0.5,
                    label=f"{mode}, {layer}, {source}")
        ax.set(yscale="log", xlabel="step", title=optimizer)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("effective damping eta ||w||^2")
    return fig
