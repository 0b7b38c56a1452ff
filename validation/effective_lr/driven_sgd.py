"""SGD's weight norm from its gradients alone, per unit (001 Eq. 23): for a scale-invariant unit
``||w_{k+1}||^2 = (1 - alpha lam)^2 ||w_k||^2 + alpha^2 g_k^2 / ||w_k||^2`` with
``g_k = ||grad J(w_hat_k)||``, whatever the gradients' directions.

Config: the SGD runs of the equilibrium experiment (with decay) and of the growth experiment at
its middle learning rate (without), on every network of the size. Runs -> per scale-invariant
unit (median ``|cos(w, grad J)|`` below :data:`~.runs.INVARIANCE_TOLERANCE`), :func:`scalewise.
sim.drive` fed the unit's measured ``g_k`` from its measured ``||w_0||^2`` against the measured
``||w_{k+1}||^2`` over the whole run -> one record per unit at its worst step -> bounds on the
median and the largest unit error -> a table, the units left out, and a figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise import sim
from scalewise.models.training import schedule
from scalewise.validation.effective_lr import norm_growth
from scalewise.validation.effective_lr.equilibrium import equilibrium_runs
from scalewise.validation.effective_lr.plots import grid
from scalewise.validation.effective_lr.runs import Measured, unit_grad_norm, unit_values
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings

EXPERIMENT = "driven_sgd"
MEDIAN_LIMIT = 1e-4  # median over a layer's units of each unit's largest error over the run
MAX_LIMIT = 1e-3  # the largest unit error


def driven_sgd(report: Report, settings: Settings) -> None:
    """The per-unit driven recurrence against every SGD run's measured norms."""
    measured = [*equilibrium_runs(settings, optimizers=("sgd",)),
                *norm_growth.growth_runs(settings, lrs=(norm_growth.MIDDLE_LR,))]
    records, worst = [], {}
    for m in measured:
        for layer, mask in m.compared(margin=0.0).items():
            errors, unit_records = unit_errors(m, layer, mask)
            records += unit_records
            worst[(m.setting.label, m.layer(layer), m.seed)] = errors
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.bounds += BOUNDS
    excluded = [line for m in measured for line in m.excluded(margin=0.0)]
    section = report.section("SGD's norm from its gradients, per unit",
                             _text(records, excluded, len(measured)))
    section.figure("driven-sgd", _figure(worst),
                   "Each unit's largest relative error of the driven recurrence over its run, "
                   "per network and layer; the dashed lines are the declared bounds.")


BOUNDS = [
    *(Bound(EXPERIMENT, "norm_sq", MEDIAN_LIMIT, optimizer=o, statistic="median", per_layer=True,
            description="median over a layer's units of each unit's largest error over the run")
      for o in ("sgd", "sgd-nowd")),
    *(Bound(EXPERIMENT, "norm_sq", MAX_LIMIT, optimizer=o,
            description="largest error of any unit at any step")
      for o in ("sgd", "sgd-nowd")),
]
"""Declared before the reference run; never loosened to fit a result."""


def driven_norm_sq(m: Measured, layer: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted, measured)`` ``||w_{k+1}||^2`` for every record and unit of ``mask``, the
    prediction :func:`scalewise.sim.drive` run from the measured ``||w_0||^2`` on the measured
    ``g_k`` of every step (the run's records must be every step from 0)."""
    v = unit_values(m, layer, mask)
    steps = m.units.layers[layer].steps
    if not np.array_equal(steps, np.arange(len(steps))):
        raise ValueError(f"run {m.run.id}: the driven recurrence needs per-unit records at every "
                         "step from 0 (unit_probe_every = 1)")
    g = unit_grad_norm({k: v[k].astype(np.float64) for k in ("grad_sq", "norm_sq")})
    config = m.run.config.optimizer
    trajectory = sim.drive(np.vstack([g, np.zeros_like(g[:1])]), lr=config.lr,
                           weight_decay=config.weight_decay, schedule=schedule(config),
                           init_norm=np.sqrt(v["norm_sq"][0].astype(np.float64)))
    return trajectory.norm_sq[1:], v["next_norm_sq"].astype(np.float64)


def unit_errors(m: Measured, layer: str, mask: np.ndarray) -> tuple[np.ndarray, list[Record]]:
    """Each unit's largest relative error over the run, and one record per unit at that step."""
    predicted, measured = driven_norm_sq(m, layer, mask)
    error = np.abs(predicted - measured) / measured
    worst = np.argmax(error, axis=0)
    units = np.arange(error.shape[1])
    records = [record(EXPERIMENT, m.setting.label, m.layer(layer), "norm_sq",
                      predicted=p, measured=x)
               for p, x in zip(predicted[worst, units], measured[worst, units])]
    return error[worst, units], records


def _text(records: list[Record], excluded: list[str], runs: int) -> str:
    frame = pd.DataFrame([r.__dict__ for r in records])
    table = frame.groupby(["optimizer", "layer"], sort=False)["rel_error"].agg(
        units="size", median="median", max="max")
    lines = [
        "For a scale-invariant unit SGD's step is tangent to $w$ (001 Eq. 16), so "
        "$\\|w_{k+1}\\|^2 = (1-\\alpha\\lambda)^2\\|w_k\\|^2 + \\alpha^2 g_k^2/\\|w_k\\|^2$ "
        "(001 Eq. 23) with $g_k = \\|\\nabla J(\\hat w_k)\\|$, whatever the gradients' directions. "
        f"Over {runs} runs, every unit's recurrence is driven by its own measured $g_k$ from its "
        "measured $\\|w_0\\|^2$ and compared with its measured $\\|w_{k+1}\\|^2$ at every step; "
        "per unit, the largest relative error over the run. Per layer (seeds pooled), the "
        f"median and largest unit error (bounds {MEDIAN_LIMIT:.0e} and {MAX_LIMIT:.0e}):",
        "", markdown_table(table.reset_index(), index=False)]
    if excluded:
        lines += ["", f"Left out, not scale invariant ({len(excluded)}):", "",
                  *(f"- {line}" for line in excluded)]
    return "\n".join(lines)


def _figure(worst: dict[tuple[str, str, int], np.ndarray]) -> Figure:
    labels = list(dict.fromkeys(label for label, *_ in worst))
    fig, axes = grid(["errors"], labels)
    for ax, label in zip(axes[0], labels):
        layers = list(dict.fromkeys(layer for lab, layer, _ in worst if lab == label))
        for i, layer in enumerate(layers):
            errors = np.concatenate([e for (lab, lay, _), e in worst.items()
                                     if lab == label and lay == layer])
            ax.plot(np.full(errors.size, i), np.maximum(errors, 1e-17), ".", ms=2, alpha=0.5)
        ax.axhline(MEDIAN_LIMIT, ls="--", color="0.5", lw=0.8)
        ax.axhline(MAX_LIMIT, ls="--", color="0.3", lw=0.8)
        ax.set_xticks(range(len(layers)), layers, rotation=60, fontsize=6)
        ax.set(title=label, yscale="log", ylabel="largest relative error per unit")
    return fig
