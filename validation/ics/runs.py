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

EXACT = 1e-6  # float64 identities that hold up to rounding (invariances, step norms)
PIXELS, CLASSES = 64, 10  # a digits MLP's inputs (the 8x8 pixels) and outputs
SMOOTHING = 25  # steps of the trailing mean that smooths minibatch losses
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
