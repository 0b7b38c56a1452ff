"""The figure pieces of the effective-LR experiments: a grid of panels and a measured curve
beside its prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def grid(rows: list[str], columns: list[str]) -> tuple[Figure, np.ndarray]:
    """A figure of ``len(rows) x len(columns)`` panels and its axes (rows, columns)."""
    fig = Figure(figsize=(3.2 * len(columns), 2.6 * len(rows)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(columns), squeeze=False))
    return fig, axes


def legend(ax) -> None:
    """A small legend, where anything is labelled."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_pair(ax, measured: pd.Series, predicted: pd.Series, label: str, color: str) -> None:
    """``measured`` solid and ``predicted`` dashed, in one color, indexed by step."""
    ax.plot(measured.index, measured.to_numpy(), "-", color=color, lw=1.2, label=f"{label}")
    ax.plot(predicted.index, predicted.to_numpy(), "--", color=color, lw=1.2)


def ratio_panel(ax, labels: list[str], intervals: list, title: str, band: float) -> None:
    """Measured/predicted per label as a point with its 95% interval
    (:class:`~scalewise.validation.estimators.Interval`), the line 1 of perfect agreement and
    the declared bound's band ``1 +- band`` shaded."""
    y = np.arange(len(labels))
    means = np.array([i.mean for i in intervals])
    low = np.nan_to_num(means - np.array([i.low for i in intervals]))
    high = np.nan_to_num(np.array([i.high for i in intervals]) - means)
    ax.axvspan(1 - band, 1 + band, color="0.9", zorder=0)
    ax.axvline(1.0, color="0.4", lw=0.8)
    ax.errorbar(means, y, xerr=[low, high], fmt="o", ms=3, capsize=2, color="C0")
    ax.set_yticks(y, labels, fontsize=7)
    ax.set(title=title, xlabel="measured / predicted")
