"""Theory's weight-decay equilibrium against the settled runs (001 Eq. 24-25;
:mod:`theory.optimizers` for momentum SGD, Adam and AdamW): the per-step angular update, the
effective LR and ``||w||^2`` at the tail-mean gradient norm, and the step from which the norm
has settled.

Config: the decayed runs of :mod:`.runs`. Runs -> per scale-invariant layer, the measured tail
means and theory's equilibrium, and the settling steps measured and simulated -> records (no
bound: the text says where theory misses) -> text and one figure per network.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise import sim
from scalewise.validation import comparison
from scalewise.validation.effective_lr.plots import grid, legend, plot_pair
from scalewise.validation.effective_lr.runs import (
    NO_DECAY,
    Measured,
    equilibrium_runs,
    grad_norms,
    invariant,
    series,
    table_curves,
    tail_mean,
)
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import Record, Report, record
from scalewise.validation.suite import Settings

EXPERIMENT = "equilibrium"
QUANTITIES = ("angular_update", "effective_lr", "norm_sq")
SETTLE_TOLERANCE = 0.1  # settled: |norm^2 / tail mean - 1| <= this from then on
ANGULAR_TARGET = 0.05  # the agreement of the CNN's angular update the text measures against


def equilibrium(report: Report, settings: Settings) -> None:
    """Tail means of the angular update, effective LR and ``||w||^2`` against
    :func:`sim.equilibrium` at the tail-mean gradient norm; settling steps against the
    simulated ones."""
    measured = [m for m in equilibrium_runs(settings) if not m.label.endswith(NO_DECAY)]
    records = [r for m in measured for r in layer_records(m)]
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.add_curves(pd.concat([table_curves(EXPERIMENT, m, invariant(m), QUANTITIES,
                                              ("measured", "equilibrium")) for m in measured],
                                ignore_index=True))
    section = report.section("Equilibrium", text(records))
    for net in dict.fromkeys(m.network for m in measured):
        section.figure(f"equilibrium-{net}", figure([m for m in measured if m.network == net]),
                       f"{net}: measured angular update and effective LR per scale-invariant "
                       "layer (solid) and theory's equilibrium at the tail-mean gradient norm "
                       "(dashed).")


def layer_records(m: Measured) -> list[Record]:
    """Per scale-invariant layer of ``m``: each of :data:`QUANTITIES` (theory's equilibrium
    against the measured tail mean) and ``settling_steps``."""
    records = []
    for layer in invariant(m):
        name = f"{m.network}/{layer}"
        for q in QUANTITIES:
            records.append(record(
                EXPERIMENT, m.label, name, q,
                predicted=series(m.table, layer, q, "equilibrium").iloc[-1],
                measured=tail_mean(series(m.table, layer, q, "measured"))))
        predicted, settled = settling(m, layer)
        records.append(record(EXPERIMENT, m.label, name, "settling_steps",
                              predicted=predicted, measured=settled))
    return records


def settling_step(norm_sq: np.ndarray, tolerance: float = SETTLE_TOLERANCE) -> int:
    """First step from which ``norm_sq`` stays within ``tolerance`` of its tail mean.

    >>> settling_step(np.array([4.0, 2.0, 1.05, 0.98, 1.0, 1.0, 1.0, 1.0]))
    2
    """
    target = tail_mean(pd.Series(norm_sq))
    outside = np.flatnonzero(np.abs(norm_sq / target - 1) > tolerance)
    return int(outside[-1] + 1) if len(outside) else 0


def settling(m: Measured, layer: str) -> tuple[float, float]:
    """(predicted, measured) settling steps of ``||w||^2``: the same criterion on the measured
    curve and on :func:`sim.simulate` of the run's optimizer at the tail-mean gradient norm
    from the measured initial norm (the constant-gradient model of theory's approach rate)."""
    opt = m.run.config.optimizer
    measured = series(m.table, layer, "norm_sq", "measured")
    t = sim.simulate(opt.name.value, lr=opt.lr, weight_decay=opt.weight_decay,
                     steps=len(measured), grad_norm=tail_mean(grad_norms(m)[layer]),
                     init_norm=float(np.sqrt(measured.iloc[0])), dim=m.dims[layer],
                     runs=comparison.MEAN_FIELD_RUNS, eps=opt.eps,
                     **comparison.simulator_options(opt))
    return (float(settling_step(t.run_mean("norm_sq"))),
            float(settling_step(measured.to_numpy())))


def text(records: list[Record]) -> str:
    frame = pd.DataFrame([r.__dict__ for r in records])
    table = markdown_table(frame.pivot_table(index=["optimizer", "layer"], columns="quantity",
                                             values="rel_error"))
    cnn = frame[frame["layer"].str.startswith("cnn/") & (frame["quantity"] == "angular_update")]
    worst = cnn.groupby("optimizer")["rel_error"].max()
    promised = ", ".join(f"{label} {worst[label]:.1%}" for label in ("sgd", "sgdm", "adamw")
                         if label in worst)
    verdict = (f"The CNN's angular update against a target of {ANGULAR_TARGET:.0%} (worst "
               f"layer): {promised}; no bound is declared where the target is missed.\n\n"
               if promised else "")
    return verdict + (
        "Runs with weight decay at a constant learning rate. Once the norm has settled, theory "
        "predicts the per-step angular update arccos(E<w_k, w_k+1> / E||w||^2), the effective "
        "LR and ||w||^2 at the gradient norm g: SGD exactly (001 Eq. 24-25: cos theta = 1 - "
        "alpha lambda, alpha_hat = sqrt(alpha lambda (2 - alpha lambda)) / g), momentum SGD, "
        "AdamW and Adam (L2, leading order in its small parameter) in the mean-field model "
        "of theory.optimizers (gradient directions independent across steps, isotropic "
        "converged second moments with beta2 -> 1). Measured: the mean over the last quarter "
        "of the run of the layer means; g is the tail mean of the measured gradient norm at "
        "unit weight norm. The settling step is the first step from which ||w||^2 stays within "
        f"{SETTLE_TOLERANCE:.0%} of its tail mean, measured and on `sim.simulate` at the "
        "tail-mean g from the measured initial norm (whose late-time rate is theory's approach "
        "rate).\n\nRelative error per optimizer, layer and quantity:\n\n" + table + "\n\n"
        "Where theory misses: the angular update of SGD is set by alpha lambda alone, so a "
        "miss means the layer is not at equilibrium: on digits the loss and with it g keep "
        "falling while the norm follows with a lag of about 1/(4 alpha lambda) steps, and "
        "units whose gradient has almost vanished only shrink; at the small equilibrium "
        "norms of digits, batch norm's eps also starts to break the scale invariance (see "
        "the driven section; the layers that fail the invariance test are left out here). "
        "The momentum and adaptive forms further assume gradient directions independent "
        "across steps, which minibatch gradients of a real loss are not, so their measured "
        "angular updates and norms differ from the white-noise prediction. "
        "Adam with L2 divides the decay term by the per-coordinate second moment, "
        "which real gradients make highly anisotropic: its numbers are reported but not "
        "bounded. The settling step depends on the early gradient norms, which are larger "
        "than the tail mean the simulation assumes.")


def figure(measured: list[Measured]) -> Figure:
    quantities = ("angular_update", "effective_lr")
    fig, axes = grid(list(quantities), [m.label for m in measured])
    for column, m in enumerate(measured):
        for row, q in enumerate(quantities):
            ax = axes[row, column]
            for color, layer in zip(("C0", "C1", "C2", "C3"), invariant(m)):
                plot_pair(ax, series(m.table, layer, q, "measured"),
                          series(m.table, layer, q, "equilibrium"), layer, color)
            ax.set(title=m.label, xlabel="step", ylabel=q.replace("_", " "), yscale="log")
            legend(ax)
    return fig
