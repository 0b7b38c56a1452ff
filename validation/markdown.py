"""The Markdown of the reports' text: tables and inline lists of numbers, written one way:
three significant digits, scientific notation for the small and the large, "—" for a missing
value.

>>> print(markdown_table(pd.DataFrame({"a": [0.12345, float("nan")], "b": [9e-16, 2]},
...                                   index=["x", "y"])))
|  | a | b |
|---|---|---|
| x | 0.123 | 9e-16 |
| y | — | 2 |
>>> listing({"sgd": 0.1234, "adam": 2.0}, "{:.2g}")
'sgd: 0.12, adam: 2'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np  # noqa: F401  (the doctests)
import pandas as pd

MISSING = "—"


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    """``frame`` as a Markdown table, each cell by :func:`cell` (format a column's numbers
    yourself to show them otherwise); with ``index`` the index is the first column, headed by
    its name or nothing."""
    frame = frame.reset_index() if index else frame
    if index:
        frame.columns = ["" if c == "index" else c for c in frame.columns]
    cells = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    return "\n".join([head, "|" + "---|" * len(frame.columns)]
                     + ["| " + " | ".join(row) + " |" for row in cells])


def cell(value: object) -> str:
    """One table cell: a number to 3 significant digits ("—" when missing), anything else as
    ``str`` gives it."""
    if value is None:
        return MISSING
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return MISSING if math.isnan(value) else f"{float(value):.3g}"
    return str(value)


def interval_cell(i: object, digits: int = 3) -> str:
    """A mean with its 95% interval (an :class:`~scalewise.validation.estimators.Interval`):
    ``"mean [low, high]"``, the mean alone for one seed.

    >>> from scalewise.validation.estimators import interval
    >>> interval_cell(interval(np.array([1.0, 1.1, 0.9])))
    '1 [0.752, 1.25]'
    """
    if i.n < 2:
        return cell(i.mean)
    return f"{i.mean:.{digits}g} [{i.low:.{digits}g}, {i.high:.{digits}g}]"


def listing(values: Mapping[str, object], number: str = "{:.3g}") -> str:
    """``"name: value, ..."`` of ``values``, each value formatted by ``number``."""
    return ", ".join(f"{name}: {number.format(value)}" for name, value in values.items())


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1.

    >>> counted(1, "seed"), counted(5, "seed")
    ('1 seed', '5 seeds')
    """
    return f"{n} {noun}" + ("" if n == 1 else "s")


def grid_ends(chosen: Mapping[str, float], grid: Sequence[float], what: str) -> str:
    """A sentence naming the keys of ``chosen`` whose value lies at an end of ``grid`` (where a
    value outside the grid might do better), or ``""``.

    >>> print(grid_ends({"sgd": 0.01, "adam": 0.1, "kfac": 0.03}, (0.01, 0.03, 0.1), "decay"))
    ... # doctest: +NORMALIZE_WHITESPACE
     At an end of the grid of decay, where a value outside it might do better:
     sgd (the smallest), adam (the largest).
    """
    ends = {key: "smallest" if value == min(grid) else "largest"
            for key, value in chosen.items() if value in (min(grid), max(grid))}
    if not ends:
        return ""
    return (f" At an end of the grid of {what}, where a value outside it might do better: "
            + ", ".join(f"{key} (the {end})" for key, end in ends.items()) + ".")
