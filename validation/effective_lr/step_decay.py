"""The effective LR's response to step decays of the learning rate (004 Sec. 4.1, Fig. 3): an
immediate drop by gamma, then recovery to the new equilibrium sqrt(gamma) times the old (001
Eq. 25).

Config: the MLP with SGD and momentum SGD with decay, two step decays. Runs -> per
scale-invariant layer, the measured effective LR beside the driven recurrence and the
constant-g simulation -> records at spread steps and around each decay -> a bound on SGD's
driven prediction -> text and figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise import sim
from scalewise.models.training import schedule
from scalewise.validation import comparison
from scalewise.validation.effective_lr.plots import grid, legend, plot_pair
from scalewise.validation.effective_lr.runs import (
    DECAYED_DRIVEN_LIMIT,
    NETWORKS,
    RECORD_POINTS,
    SETTINGS,
    Measured,
    base_quantities,
    config,
    curve_records,
    grad_norms,
    invariant,
    measure,
    scaled,
    series,
    source_curves,
)
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import Bound, Record, Report, spread_steps
from scalewise.validation.suite import Settings, Size, train_runs

EXPERIMENT = "step_decay"
GAMMA = 0.3  # the learning rate's factor at each decay


@dataclass(frozen=True)
class Scale:
    steps: int  # the decays come at a third and two thirds of the run


SCALES = {Size.SMOKE: Scale(steps=240), Size.REFERENCE: Scale(steps=1500)}
Panel = tuple[str, pd.Series, pd.Series, pd.Series]  # (name, measured, driven, mean-g)


def step_decay(report: Report, settings: Settings) -> None:
    """The effective LR's response to step decays of the learning rate (004 Sec. 4.1, Fig. 3):
    an immediate drop by gamma, then recovery to the new equilibrium sqrt(gamma) times the old
    (001 Eq. 25); measured against :func:`sim.drive` with the run's gradient norms and
    schedule, and against :func:`sim.simulate` at the run's mean gradient norm."""
    steps = settings.scale(SCALES).steps
    milestones = (steps // 3, 2 * steps // 3)
    measured = decay_runs(settings, steps, milestones)
    at = np.unique(np.concatenate([spread_steps(0, steps - 1, RECORD_POINTS),
                                   np.array(milestones) - 1,
                                   np.array(milestones) + steps // 30]))
    records, curves, panels = [], [], []
    for m in measured:
        for layer in invariant(m):
            layer_records, panel = compare_layer(m, layer, at)
            records += layer_records
            panels.append(panel)
            _, x_measured, drive, mean_g = panel
            curves.append(source_curves(EXPERIMENT, m.label, f"mlp/{layer}", "effective_lr",
                                        {"measured": x_measured, "predicted": drive,
                                         "predicted_mean_g": mean_g}))
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.add_curves(pd.concat(curves, ignore_index=True))
    report.bounds.append(Bound(EXPERIMENT, "effective_lr", DECAYED_DRIVEN_LIMIT,
                               optimizer="sgd", statistic="median", per_layer=True,
                               description="effective LR through the step decays, 001 Eq. (23) "
                               "driven by the layer-mean gradient norms (the unit average, see "
                               "the driven section)"))
    section = report.section("Step decays", text(records, milestones))
    section.figure("step-decay", figure(panels),
                   f"Effective LR through two step decays (gamma = {GAMMA:g}): measured (solid), "
                   "driven by the measured gradient norms (dashed), simulated at the mean "
                   "gradient norm (dotted).")


def decay_runs(settings: Settings, steps: int, milestones: tuple[int, int]) -> list[Measured]:
    """The MLP with SGD and with momentum SGD (with decay), the LR multiplied by
    :data:`GAMMA` at ``milestones``."""
    decays = {"optimizer.schedule": "step", "optimizer.milestones": milestones,
              "optimizer.gamma": GAMMA}
    chosen = [s for s in SETTINGS if s.name in ("sgd", "sgdm")]
    configs = [config(NETWORKS["mlp"], scaled(s, settings), True, steps, settings.seed, decays)
               for s in chosen]
    runs = train_runs(configs, settings, desc="effective-lr step decays")
    return [measure("mlp", s.label, run, settings.seed) for s, run in zip(chosen, runs)]


def compare_layer(m: Measured, layer: str, at: np.ndarray) -> tuple[list[Record], Panel]:
    """``effective_lr@k`` (driven) and ``effective_lr_mean_g@k`` records of one layer at
    ``at``, and its panel."""
    x_measured = series(m.table, layer, "effective_lr", "measured")
    drive = series(m.table, layer, "effective_lr", "driven")
    mean_g = mean_g_prediction(m, layer)
    name = f"mlp/{layer}"
    records = [*curve_records(EXPERIMENT, m.label, name, "effective_lr", drive, x_measured, at),
               *curve_records(EXPERIMENT, m.label, name, "effective_lr_mean_g", mean_g,
                              x_measured, at)]
    return records, (f"{m.label} {name}", x_measured, drive, mean_g)


def mean_g_prediction(m: Measured, layer: str) -> pd.Series:
    """The effective LR of :func:`sim.simulate` for the run's optimizer and schedule at the
    run's mean gradient norm, from the measured initial norm (theory without measuring g)."""
    opt = m.run.config.optimizer
    g = float(grad_norms(m)[layer].mean())
    x0 = float(series(m.table, layer, "norm_sq", "measured").iloc[0])
    t = sim.simulate(opt.name.value, lr=opt.lr, weight_decay=opt.weight_decay,
                     steps=m.run.config.steps, grad_norm=g, init_norm=np.sqrt(x0),
                     schedule=schedule(opt), dim=m.dims[layer], runs=comparison.MEAN_FIELD_RUNS,
                     eps=opt.eps, **comparison.simulator_options(opt))
    return pd.Series(t.run_mean("effective_lr"), index=t.step)


def text(records: list[Record], milestones: tuple[int, ...]) -> str:
    frame = base_quantities(records)
    table = markdown_table(frame.pivot_table(index=["optimizer", "layer"], columns="base",
                                             values="rel_error", aggfunc="max"))
    return (
        f"The MLP with weight decay, its learning rate multiplied by {GAMMA:g} at steps "
        f"{', '.join(map(str, milestones))}. 004 Sec. 4.1 (Fig. 3): the effective LR drops "
        "with the learning rate, then climbs back as the norm shrinks to its new equilibrium, "
        "sqrt(gamma) times the old one (001 Eq. 25). Predictions: `sim.drive` with the run's "
        "measured gradient norms and the run's schedule (`models.training.schedule`), exact "
        "for SGD up to the average over units, the mean-field sphere model for momentum SGD "
        "(`effective_lr`); and `sim.simulate` at the run's mean gradient norm "
        "(`effective_lr_mean_g`, what theory predicts without measuring g). Recorded at "
        f"{RECORD_POINTS} steps spread over the run plus just before and shortly after each "
        "decay.\n\nLargest relative error per optimizer and layer:\n\n" + table + "\n\n"
        "The constant-g simulation misses by as much as g changes over training (on digits "
        "g keeps falling, so the effective LR keeps rising within each phase instead of "
        "levelling off); the driven one follows the drop, the transient and the new level, "
        "offset by the few percent of the unit average (the probe is the unit mean of "
        "alpha / ||w_i||^2, the prediction alpha over the norm driven by the mean g_i; see "
        "the driven section), which is why its bound is the driven one's.")


def figure(panels: list[Panel]) -> Figure:
    fig, axes = grid(["effective_lr"], [name for name, *_ in panels])
    for ax, (name, measured, drive, mean_g) in zip(axes[0], panels):
        plot_pair(ax, measured, drive, "measured / driven", "C0")
        ax.plot(mean_g.index, mean_g.to_numpy(), ":", color="C1", label="mean-g simulation")
        ax.set(title=name, xlabel="step", ylabel="effective LR", yscale="log")
        legend(ax)
    return fig
