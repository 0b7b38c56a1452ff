"""The layout every figure of the project shares: one row of gridded axes on a
:class:`~matplotlib.figure.Figure` (no ``pyplot``, no global backend or state, so figures render
headless), and the colours of a family of curves.

>>> fig, axes = axes_row(2)
>>> len(axes), len(colors(3))
(2, 3)
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure


def axes_row(ncols: int, width: float = 9.0, height: float = 3.4) -> tuple[Figure, list]:
    """A ``width`` x ``height`` inch figure with ``ncols`` axes side by side, each with a light
    major grid."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(1, ncols)))
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    return fig, axes


def colors(n: int) -> list:
    """``n`` colours along viridis, stopping short of its pale yellow end (hard to see on white)."""
    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.85, n)]
