"""Interactive theory-vs-data charts in Vega-Lite: one panel of a
:class:`~scalewise.figures.comparison.Comparison` as its curves over its ratio panel.

Theory is a thick translucent line behind the data, the data's spread a band; hovering shows the
values, the mouse wheel zooms the step axis and dragging pans it, a click on a legend entry shows
that series alone (shift-click adds more). Each panel is two charts one above the other, each as
wide as its column: Vega-Lite sizes only single and layered charts to their container, and a
chart that follows its column never overflows a narrow window.

The specifications are written as Vega-Lite dictionaries rather than built with Altair (which
Streamlit ships with, and which writes the same dictionaries): Altair validates every channel
against the Vega-Lite schema and deep-copies each chart as layers are combined, which cost about
50 ms per chart here (``bench/bench_app.py`` measures both), and a page draws up to six.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.colors import to_hex

from scalewise.figures.comparison import Comparison
from scalewise.figures.layout import colors

HEIGHT = 230  # pixels of a panel's curves
RATIO_HEIGHT = 110  # pixels of its ratio panel
THEORY_WIDTH = 7  # pixels of a theory line: thick, translucent, behind the data
THEORY_OPACITY = 0.3
FADED = 0.1  # opacity of the series a legend click did not choose
LEGEND_SHORT = 14  # characters of a series label that still fit four to a legend line

Spec = dict  # a Vega-Lite specification


def panel_specs(comparison: Comparison, panel: str, legend: bool = True
                ) -> tuple[Spec, Spec | None]:
    """The Vega-Lite specifications of ``panel``'s curves and of its ratio panel (None where no
    data has a theory to be divided by)."""
    table = comparison.table[comparison.table["panel"] == panel]
    steps = _step_scale(comparison, table["step"])
    color = _color(comparison, legend)
    x = {"field": "step", "type": "quantitative", "scale": steps, "title": None,
         "axis": {**_step_axis(comparison, table["step"]), "labels": False}}
    y = {"field": "value", "type": "quantitative", "title": comparison.y_title(panel),
         "scale": {"type": "log" if panel in comparison.log_y else "linear", "zero": False}}
    tooltip = [{"field": "series", "type": "nominal"}, {"field": "role", "type": "nominal"},
               {"field": "step", "type": "quantitative", "format": ","},
               {"field": "value", "type": "quantitative", "format": ".4~g"}]
    layers = [_layer("datum.role == 'theory'", {"type": "line", "strokeWidth": THEORY_WIDTH,
                                                  "strokeCap": "round"},
                     {"x": x, "y": y, "color": color, "detail": {"field": "series"},
                      "tooltip": tooltip, "opacity": _chosen(THEORY_OPACITY, FADED / 2)},
                     params=_params())]
    if {"low", "high"} <= set(table.columns) and table["low"].notna().any():
        layers.append(_band("datum.role == 'data' && isValid(datum.low)", x, "low", "high",
                            y["scale"], color))
    layers.append(_layer("datum.role == 'data'", _data_mark(comparison, 1.8),
                         {"x": x, "y": y, "color": color, "tooltip": tooltip,
                          "opacity": _chosen(1.0, FADED)}))
    main = {"height": HEIGHT, "datasets": {"curves": _plain(table)},
            "data": {"name": "curves"}, "layer": layers}
    ratios = comparison.ratios()
    ratios = ratios[ratios["panel"] == panel]
    if ratios.empty:
        return main, None
    return main, _ratio_spec(comparison, ratios, steps, _color(comparison, False))


def _ratio_spec(comparison: Comparison, ratios: pd.DataFrame, steps: dict, color: dict) -> Spec:
    x = {"field": "step", "type": "quantitative", "scale": steps, "title": comparison.x_title,
         "axis": _step_axis(comparison, ratios["step"])}
    y = {"field": "ratio", "type": "quantitative", "scale": {"zero": False},
         "title": "÷ theory"}
    tooltip = [{"field": "series", "type": "nominal"},
               {"field": "step", "type": "quantitative", "format": ","},
               {"field": "ratio", "type": "quantitative", "format": ".4~g"}]
    # one rule at 1: the rows aggregated to one, its height a datum
    layers = [{"transform": [{"aggregate": [{"op": "count", "as": "rows"}]}],
               "mark": {"type": "rule", "color": "black"}, "encoding": {"y": {"datum": 1.0}}}]
    if "low" in ratios and ratios["low"].notna().any():
        layers.append(_band("isValid(datum.low)", x, "low", "high", y["scale"], color))
    layers.append(_layer("true", _data_mark(comparison, 1.5),
                         {"x": x, "y": y, "color": color, "tooltip": tooltip},
                         params=_params(legend=False)))
    return {"height": RATIO_HEIGHT, "datasets": {"ratios": _plain(ratios)},
            "data": {"name": "ratios"}, "layer": layers}


def _data_mark(comparison: Comparison, width: float) -> dict:
    """Lines (with a point per datum for short curves), or points alone for a scatter."""
    if not comparison.lines:
        return {"type": "point", "filled": True, "size": 40}
    return {"type": "line", "strokeWidth": width, "point": bool(comparison.markers)}


def _layer(condition: str, mark: dict, encoding: dict, params: list | None = None) -> Spec:
    layer = {"transform": [{"filter": condition}], "mark": {**mark, "clip": True},
             "encoding": encoding}
    return {**layer, "params": params} if params else layer


def _band(condition: str, x: dict, low: str, high: str, scale: dict, color: dict) -> Spec:
    return _layer(condition, {"type": "area", "opacity": 0.2},
                  {"x": x, "y": {"field": low, "type": "quantitative", "scale": scale},
                   "y2": {"field": high}, "color": color})


def _params(legend: bool = True) -> list[dict]:
    """Zoom and pan of the step axis; with ``legend``, the series chosen by legend clicks."""
    zoom = {"name": "zoom", "select": {"type": "interval", "encodings": ["x"]}, "bind": "scales"}
    chosen = {"name": "chosen", "select": {"type": "point", "fields": ["series"]},
              "bind": "legend"}
    return [zoom, chosen] if legend else [zoom]


def _chosen(on: float, off: float) -> dict:
    return {"condition": {"param": "chosen", "value": on, "empty": True}, "value": off}


def _color(comparison: Comparison, legend: bool) -> dict:
    """One colour per series; the legend under the chart, one entry a line where they are long."""
    series = [str(s) for s in comparison.series]
    scale = {"domain": series, "range": [to_hex(c) for c in colors(len(series))]}
    columns = 1 if max(map(len, series)) > LEGEND_SHORT else 4
    return {"field": "series", "type": "nominal", "scale": scale, "title": None,
            "legend": {"orient": "bottom", "columns": columns, "labelLimit": 320}
            if legend else None}


def _step_scale(comparison: Comparison, steps: pd.Series) -> dict:
    scale = {"type": comparison.x_scale, "nice": False}
    if len(steps):
        scale["domain"] = [float(steps.min()), float(steps.max())]
    return scale


def _step_axis(comparison: Comparison, steps: pd.Series) -> dict:
    """Ticks at 0 and the powers of ten of a symmetric log axis (Vega's own are sparse there)."""
    if comparison.x_scale != "symlog" or not len(steps):
        return {}
    top = float(steps.max())
    decades = [0.0] + [10.0**e for e in range(0, int(math.log10(max(top, 1))) + 1)]
    label = ("datum.value >= 1000 ? format(datum.value / 1000, '~g') + 'k' "
             ": format(datum.value, '~g')")
    return {"values": decades, "labelExpr": label}


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its series as text and infinite values as missing (JSON has none)."""
    frame = frame.assign(series=frame["series"].astype(str))
    numbers = frame.select_dtypes("number").columns
    frame[numbers] = frame[numbers].where(frame[numbers].abs() != float("inf"))
    return frame
