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
