"""Theory beside data: the one long-form table behind every theory-vs-data chart (the explorer's
interactive charts and their PNG/PDF downloads), the ratio of data to theory drawn under each
chart, and the matplotlib figure of it, at the figure scale every download shares
(:mod:`figures.layout`).

A comparison table has one row per point::

    panel    the chart the point belongs to (a quantity, ``"||w||^2"``)
    series   the curve within its panel: a learning rate, a layer, a source; one colour each
    role     "theory" or "data"
    step     the x coordinate
    value    the y coordinate
    low, high  optional, on data rows: the spread of the data (over units, seeds, runs), a band

Theory is drawn as a thick translucent line behind the data. The ratio panel shows data / theory:
each data series over the theory of its own series, or else over its panel's first theory curve,
interpolated (linearly in ``step``) to the data's steps; a theory curve of one value is a
constant.

>>> table = pd.DataFrame({"panel": "y", "series": "a", "role": ["theory", "theory", "data"],
...                       "step": [0, 10, 5], "value": [2.0, 2.0, 3.0]})
>>> Comparison(table).ratios()[["step", "ratio"]].to_dict("records")
[{'step': 5, 'ratio': 1.5}]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise import checks
from scalewise.figures.layout import PANEL_HEIGHT, PANEL_WIDTH, RATIO_HEIGHT, colors

ROLES = ("theory", "data")
X_SCALES = ("symlog", "log", "linear")
COLUMNS = ("panel", "series", "role", "step", "value")
THEORY_STYLE = {"lw": 6.0, "alpha": 0.3, "solid_capstyle": "round", "zorder": 1}
DATA_STYLE = {"lw": 1.5, "zorder": 3}


@dataclass(frozen=True)
class Comparison:
    """A theory-vs-data chart: its table (see the module docstring) and how to label it.

    ``y_titles`` maps a panel to its axis title (default: the panel's name); ``theory`` and
    ``data`` name the two roles in legends; ``log_y`` lists the panels drawn on a log axis;
    ``x_scale`` is ``"symlog"`` (steps on a log axis that is linear below 1, so step 0 is
    shown), ``"log"`` or ``"linear"``;
    ``markers`` marks each data point (curves of a few points); without ``lines`` the data
    are points only (a scatter of records)."""

    table: pd.DataFrame
    x_title: str = "step k"
    y_titles: dict[str, str] = field(default_factory=dict)
    theory: str = "theory"
    data: str = "data"
    x_scale: str = "symlog"
    log_y: tuple[str, ...] = ()
    markers: bool = False
    lines: bool = True

    def __post_init__(self) -> None:
        missing = sorted(set(COLUMNS) - set(self.table.columns))
        if missing:
            checks.fail("table", f"a table with columns {list(self.table.columns)}",
                        f"a table with the columns {list(COLUMNS)}")
        checks.one_of("x_scale", self.x_scale, X_SCALES)
        roles = set(self.table["role"].unique())
        if not roles <= set(ROLES):
            checks.fail("role", sorted(roles - set(ROLES)), f"one of {', '.join(ROLES)}")

    @property
    def panels(self) -> list[str]:
        return self.table["panel"].drop_duplicates().tolist()  # in order of appearance

    @property
    def series(self) -> list[str]:
        return self.table["series"].drop_duplicates().tolist()

    def y_title(self, panel: str) -> str:
        return self.y_titles.get(panel, panel)

    def ratios(self) -> pd.DataFrame:
        """:attr:`_ratios`, computed once per comparison (every panel's chart asks for it)."""
        return self._ratios

    @cached_property
    def _ratios(self) -> pd.DataFrame:
        """Per data point, ``ratio = value / theory`` (and ``low``, ``high`` of the band divided
        by the same theory where the table has them): columns panel, series, step, ratio[, low,
        high]. A data series is divided by the theory curve of its own series, or else by its
        panel's first theory curve; in a panel without theory it is left out."""
        parts = []
        for panel, rows in self.table.groupby("panel", sort=False):
            theories = {s: t.sort_values("step") for s, t in
                        rows[rows["role"] == "theory"].groupby("series", sort=False)}
            shared = next(iter(theories.values()), None)
            for series, data in rows[rows["role"] == "data"].groupby("series", sort=False):
                theory = theories.get(series, shared)
                if theory is not None:
                    parts.append(_ratio(panel, series, data, theory))
        columns = ["panel", "series", "step", "ratio"]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    def final_ratios(self) -> pd.DataFrame:
        """The ratio at each curve's last data step: columns panel, series, step, ratio."""
        ratios = self.ratios()
        if ratios.empty:
            return ratios
        last = ratios.groupby(["panel", "series"], sort=False)["step"].transform("max")
        return ratios[ratios["step"] == last][["panel", "series", "step", "ratio"]]


def _ratio(panel: str, series: str, data: pd.DataFrame, theory: pd.DataFrame) -> pd.DataFrame:
    expected = _interpolate(theory["step"].to_numpy(float), theory["value"].to_numpy(),
                            data["step"].to_numpy(float))
    part = {"panel": panel, "series": series, "step": data["step"].to_numpy()}
    with np.errstate(divide="ignore", invalid="ignore"):
        part["ratio"] = data["value"].to_numpy() / expected
        for bound in ("low", "high"):
            if bound in data:
                part[bound] = data[bound].to_numpy() / expected
    return pd.DataFrame(part)


def _interpolate(steps: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Theory's value at the steps ``at``: a constant where theory has one value, else linear
    interpolation inside its range and NaN outside."""
    if len(np.unique(values)) == 1:
        return np.full(len(at), values[0], dtype=float)
    return np.interp(at, steps, values, left=np.nan, right=np.nan)


def draw(comparison: Comparison, title: str = "") -> Figure:
    """The comparison as a matplotlib figure: per panel the curves (theory thick and translucent
    behind the data, the data's band) over its ratio panel, one legend for the figure. Every
    panel has the same size (:data:`~figures.layout.PANEL_WIDTH` by
    :data:`~figures.layout.PANEL_HEIGHT`, ratio :data:`~figures.layout.RATIO_HEIGHT`), so fonts
    have one scale in every download."""
    panels = comparison.panels
    fig = Figure(figsize=(PANEL_WIDTH * len(panels) + 1.6, PANEL_HEIGHT + RATIO_HEIGHT),
                 layout="constrained")
    grid = fig.add_gridspec(2, len(panels), height_ratios=(PANEL_HEIGHT, RATIO_HEIGHT))
    palette = dict(zip(comparison.series, colors(len(comparison.series))))
    ratios = comparison.ratios()
    for j, panel in enumerate(panels):
        top = fig.add_subplot(grid[0, j])
        bottom = fig.add_subplot(grid[1, j], sharex=top)
        rows = comparison.table[comparison.table["panel"] == panel]
        for series, curve in rows.groupby("series", sort=False):
            _draw_curve(top, curve, palette[series], str(series), comparison)
        for series, curve in ratios[ratios["panel"] == panel].groupby("series", sort=False):
            _draw_ratio(bottom, curve, palette[series], comparison.lines)
        bottom.axhline(1.0, color="k", lw=0.8, zorder=2)
        _style_axes(top, bottom, comparison, panel)
    first = fig.axes[0]  # grey keys of the two roles, after the series' colours
    first.plot([], [], color="0.4", label=comparison.theory, **THEORY_STYLE)
    first.plot([], [], color="0.4", label=comparison.data, **DATA_STYLE)
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(entries.values(), entries.keys(), loc="outside right center", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _draw_curve(ax, curve: pd.DataFrame, color, series: str, comparison: Comparison) -> None:
    theory = curve[curve["role"] == "theory"].sort_values("step")
    data = curve[curve["role"] == "data"].sort_values("step")
    if len(theory):
        ax.plot(theory["step"], theory["value"], color=color, **THEORY_STYLE)
    if len(data):
        if "low" in data and data["low"].notna().any():
            ax.fill_between(data["step"], data["low"], data["high"], color=color, alpha=0.2,
                            lw=0, zorder=2)
        marker = "o" if comparison.markers or not comparison.lines else None
        ax.plot(data["step"], data["value"], color=color, label=series, marker=marker,
                ls="-" if comparison.lines else "none", ms=4, **DATA_STYLE)
    elif len(theory):
        ax.plot([], [], color=color, label=series, **DATA_STYLE)


def _draw_ratio(ax, curve: pd.DataFrame, color, lines: bool) -> None:
    curve = curve.sort_values("step")
    if "low" in curve and curve["low"].notna().any():
        ax.fill_between(curve["step"], curve["low"], curve["high"], color=color, alpha=0.2,
                        lw=0)
    ax.plot(curve["step"], curve["ratio"], color=color, ls="-" if lines else "none",
            marker=None if lines else "o", ms=4, **DATA_STYLE)


def _style_axes(top, bottom, comparison: Comparison, panel: str) -> None:
    for ax in (top, bottom):
        ax.grid(True, which="major", alpha=0.3)
        if comparison.x_scale == "symlog":
            ax.set_xscale("symlog", linthresh=1.0)
        elif comparison.x_scale == "log":
            ax.set_xscale("log")
    if panel in comparison.log_y:
        top.set_yscale("log")
    top.set_ylabel(comparison.y_title(panel))
    top.tick_params(labelbottom=False)
    bottom.set_xlabel(comparison.x_title)
    bottom.set_ylabel(f"{comparison.data} / {comparison.theory}", fontsize="small")
