"""What the ICS experiments share: their runs, trained by :func:`models.train` into the suite's
store (on ``settings.device``, reused when finished, resumed when interrupted), and the
smoothed training-loss curves they compare.

Every run is a small MLP on the bundled digits (batch 64, float64 so that the exact
invariances hold to rounding), probed only at its end: the minibatch loss it logs at every step
is the curve, the evaluation at its end the final losses and accuracies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise import models
from scalewise.models.store import Run
from scalewise.validation.comparison import wide
from scalewise.validation.estimators import interval
from scalewise.validation.markdown import interval_cell

EXACT = 1e-6  # float64 identities that hold up to rounding (invariances, step norms)
PIXELS, CLASSES = 64, 10  # a digits MLP's inputs (the 8x8 pixels) and outputs
SMOOTHING = 25  # steps of the trailing mean that smooths minibatch losses
LOSS_THRESHOLD = 0.15  # the smoothed loss whose first step times a run's training speed
AS_FAST = 1.25
""""As fast" in a claim about training speed: at most this many times the reference's steps to
:data:`LOSS_THRESHOLD` (declared before the reference runs)."""
BASE: dict[str, Any] = {
    "data.name": "digits", "data.batch_size": 64, "precision": "float64", "probe_every": 0,
    "costly_probe_every": 0, "eval_every": 0, "checkpoint_every": 0}
"""The changes every ICS run makes to the default config."""


def config(seed: int, steps: int, changes: dict[str, Any]) -> models.TrainConfig:
    """An ICS run: :data:`BASE` for ``steps`` steps from ``seed``, then ``changes``."""
    return models.override(models.TrainConfig(),
                           {**BASE, "steps": steps, "seed": seed, **changes})


def sizes(run_config: models.TrainConfig) -> str:
    """The layer sizes of a digits MLP, ``64-64-64-10``."""
    model = run_config.model
    return "-".join(map(str, (PIXELS, *[model.width] * model.depth, CLASSES)))


def losses(run: Run) -> np.ndarray:
    """The minibatch loss of every step ``0..steps - 1`` of ``run``, NaN from the first
    non-finite one on (a diverged run stops there)."""
    logged = wide(run.metrics, "loss")[""].reindex(range(run.config.steps))
    values = logged.to_numpy(dtype=float, copy=True)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        values[bad[0]:] = np.nan
    return values


def final(run: Run, name: str) -> float:
    """The network-level metric ``name`` of ``run`` at its last step (``train_loss``,
    ``test_accuracy``...); NaN when the run diverged before it."""
    table = wide(run.metrics, name)
    return float(table[""].get(run.config.steps, math.nan)) if not table.empty else math.nan


def smoothed(losses: np.ndarray, window: int = SMOOTHING) -> np.ndarray:
    """Trailing mean over ``window`` steps (fewer at the start); NaN where ``losses`` is."""
    means = pd.Series(losses).rolling(window, min_periods=1).mean().to_numpy()
    return np.where(np.isnan(losses), np.nan, means)


def steps_to(curve: np.ndarray, threshold: float) -> float:
    """The first step at which ``curve`` is at most ``threshold``; NaN when it never is."""
    below = np.flatnonzero(curve <= threshold)
    return float(below[0]) if len(below) else math.nan


Grid = dict[tuple[str, float], list[Run]]
"""(label, learning rate) -> the runs over the seeds: an experiment's learning-rate grid."""


def steps_to_threshold(grid: Grid, threshold: float) -> dict[tuple[str, float], np.ndarray]:
    """Per key of ``grid``, each run's first step whose smoothed loss is at most ``threshold``
    (NaN for a run that never reaches it)."""
    return {key: np.array([steps_to(smoothed(losses(run)), threshold) for run in group])
            for key, group in grid.items()}


def best_rates(steps: dict[tuple[str, float], np.ndarray]) -> dict[str, float]:
    """Per label, the learning rate whose runs reach the threshold in the fewest steps (mean
    over seeds; a rate where some seed never reaches it is not a candidate, and a label without
    a candidate keeps the middle rate of its grid)."""
    grids: dict[str, list[float]] = {}
    for label, lr in steps:
        grids.setdefault(label, []).append(lr)
    out = {}
    for label, rates in grids.items():
        reached = {lr: float(np.mean(steps[label, lr])) for lr in rates
                   if np.isfinite(steps[label, lr]).all()}
        out[label] = (min(reached, key=reached.get) if reached
                      else sorted(rates)[len(rates) // 2])
    return out


def steps_table(steps: dict[tuple[str, float], np.ndarray],
                best: dict[str, float]) -> pd.DataFrame:
    """One row per label, one column per learning rate of any grid: the mean steps to the
    threshold with its 95% interval (how many seeds never reach it), the best rate's in bold,
    "—" where the label was not run at that rate."""
    rates = sorted({lr for _, lr in steps})

    def cell(label: str, lr: float) -> str:
        if (label, lr) not in steps:
            return "—"
        values = steps[label, lr]
        never = int(np.isnan(values).sum())
        shown = interval_cell(interval(values)) if never < len(values) else "never"
        shown += f" ({never} never)" if 0 < never < len(values) else ""
        return f"**{shown}**" if lr == best[label] else shown

    return pd.DataFrame([{"": label, **{f"lr {lr:g}": cell(label, lr) for lr in rates}}
                         for label in best])


def curves_figure(curves: dict[str, np.ndarray], threshold: float | None = None,
                  styles: dict[str, str] | None = None) -> Figure:
    """Smoothed training losses over steps (log scale), one per label, ``threshold`` dotted."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for label, curve in curves.items():
        ax.plot(np.arange(len(curve)), curve, (styles or {}).get(label, "-"), label=label)
    if threshold is not None:
        ax.axhline(threshold, color="gray", lw=0.8, ls=":")
    ax.set(yscale="log", xlabel="step", ylabel=f"training loss (trailing mean, {SMOOTHING})")
    ax.legend(fontsize=8)
    return fig
