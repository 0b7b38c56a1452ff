"""The layout every figure of the project shares: one row of gridded axes on a
:class:`~matplotlib.figure.Figure` (no ``pyplot``, no global backend or state, so figures render
headless), the size of one panel of a theory-vs-data figure (the same in every download, so fonts
have one scale), the colours of a family of curves, and numbers written for tables.

>>> fig, axes = axes_row(2)
>>> len(axes), len(colors(3))
(2, 3)
>>> [format_number(v) for v in (0.0123456, 9e-16, 12345678.0, float("nan"), 0.0)]
['0.0123', '9e-16', '1.23e+7', '—', '0']
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

PANEL_WIDTH = 3.4  # inches per panel of a theory-vs-data figure
PANEL_HEIGHT = 2.6  # inches of its curves
RATIO_HEIGHT = 1.1  # inches of the ratio panel under them
MISSING = "—"  # a number that is not there (NaN, None)


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


def format_number(value: object, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, in scientific notation when it is below
    1e-3 or from 1e4 on in size; :data:`MISSING` for NaN or None; ``∞`` for an infinite one
    (a relative error against a measured 0); other values as ``str``.

    >>> [format_number(v) for v in (0.0001234, 12.345, 12345.0, float("inf"), -np.inf)]
    ['1.23e-4', '12.3', '1.23e+4', '∞', '−∞']
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if not isinstance(value, (float, np.floating)):
        return str(value)
    if np.isinf(value):
        return "∞" if value > 0 else "−∞"
    size = abs(float(value))
    if size != 0 and (size < 1e-3 or size >= 1e4):
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent):+d}"
    return f"{value:.{digits}g}"
