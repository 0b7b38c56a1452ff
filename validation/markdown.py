"""The Markdown of the reports' text: tables and inline lists of numbers, written one way.

>>> print(markdown_table(pd.DataFrame({"a": [0.12345]}, index=["x"])))
|  | a |
|---|---|
| x | 0.123 |
>>> listing({"sgd": 0.1234, "adam": 2.0}, "{:.2g}")
'sgd: 0.12, adam: 2'
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    """``frame`` as a Markdown table, floats to 3 significant digits and every other cell as
    ``str`` gives it (format a column's numbers yourself to show them otherwise); with
    ``index`` the index is the first column, headed by its name or nothing."""
    frame = frame.reset_index() if index else frame
    if index:
        frame.columns = ["" if c == "index" else c for c in frame.columns]
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    return "\n".join([head, "|" + "---|" * len(frame.columns)]
                     + ["| " + " | ".join(row) + " |" for row in cells])


def listing(values: Mapping[str, object], number: str = "{:.3g}") -> str:
    """``"name: value, ..."`` of ``values``, each value formatted by ``number``."""
    return ", ".join(f"{name}: {number.format(value)}" for name, value in values.items())
