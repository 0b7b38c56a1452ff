"""What a reader sees first of a validation report, read from any report folder
(:class:`~scalewise.validation.report.LoadedReport`) without knowing its suite: per experiment
its agreement with the bounds the suite declared, and one headline comparison of predicted
beside measured with the spread over the report's curves.

Everything is derived from the report's generic parts: the records ``(experiment, optimizer,
layer, quantity, predicted, measured, rel_error)``, the curves ``(experiment, optimizer, layer,
quantity, source, step, value)`` whose source ``"measured"`` is the data and every other source
a prediction, and the agreement rows of ``index.json`` (a bound's ``value`` against its
``limit``, ``holds``). A curve is one ``(quantity, optimizer, layer)`` of an experiment.

Two optional parts are shown where a report has them: curve columns ``low`` and ``high``, the
spread of a measured curve (over units, seeds or runs), drawn as a band around it; and record
fields beyond the required ones (``low`` and ``high`` of an interval over seeds, ``seeds``, ...),
listed in the records' table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalewise.figures.comparison import Comparison
from scalewise.validation.report import LoadedReport, base_quantity

MEASURED = "measured"
CURVE_KEYS = ("quantity", "optimizer", "layer")
BAND = ("low", "high")  # optional curve columns: the spread of a measured curve
SPREAD_POINTS = 200  # steps of the common grid the spread over curves is taken on
SPREAD = (0.1, 0.9)  # quantiles of the band of measured / predicted over curves
FEW_POINTS = 30  # curves this short are drawn with a marker per point


def experiments(report: LoadedReport) -> list[str]:
    """The report's experiments, in the order they first appear in its records, curves and
    agreement."""
    named = [*report.records["experiment"], *report.curves.get("experiment", []),
             *(row["experiment"] for row in report.index.get("agreement", []))]
    return list(dict.fromkeys(named))


def bounds(report: LoadedReport, experiment: str | None = None) -> pd.DataFrame:
    """The agreement rows (of ``experiment``, or all), as a table."""
    rows = pd.DataFrame(report.index.get("agreement", []))
    if rows.empty or experiment is None:
        return rows
    return rows[rows["experiment"] == experiment].reset_index(drop=True)


def summary(report: LoadedReport) -> pd.DataFrame:
    """One row per experiment: bounds held of declared, the worst bound's value against its
    limit, the number of records and their median relative error, and the curves drawn."""
    rows = []
    agreement = bounds(report)
    for experiment in experiments(report):
        records = report.records[report.records["experiment"] == experiment]
        errors = records["rel_error"].to_numpy(dtype=float)
        declared = (agreement[agreement["experiment"] == experiment] if not agreement.empty
                    else agreement)
        worst = (declared.assign(margin=declared["value"] / declared["limit"])
                 .sort_values("margin", na_position="first").iloc[-1] if len(declared) else None)
        rows.append({
            "experiment": experiment,
            "bounds held": f"{int(declared['holds'].sum())} of {len(declared)}"
                           if len(declared) else "none declared",
            "worst bound": np.nan if worst is None else float(worst["value"]),
            "its limit": np.nan if worst is None else float(worst["limit"]),
            "records": len(records),
            "median rel. error": (float(np.nanmedian(errors)) if np.isfinite(errors).any()
                                  else np.nan),
            "curves": len(curve_table(report, experiment)),
        })
    return pd.DataFrame(rows)


def curve_table(report: LoadedReport, experiment: str) -> pd.DataFrame:
    """One row per curve of ``experiment``: its keys, its sources, whether it has a prediction
    beside the measurement, and the median over its steps of ``|measured / predicted - 1|``
    (NaN without both)."""
    curves = report.curves
    if curves.empty:
        return pd.DataFrame(columns=[*CURVE_KEYS, "sources", "compared", "median_miss"])
    curves = curves[curves["experiment"] == experiment]
    rows = []
    for keys, curve in curves.groupby(list(CURVE_KEYS), sort=False):
        sources = list(dict.fromkeys(curve["source"]))
        ratio = _ratio(curve, _prediction(sources))
        rows.append({**dict(zip(CURVE_KEYS, keys)), "sources": sources,
                     "compared": ratio is not None,
                     "median_miss": (np.nan if ratio is None
                                     else float(np.nanmedian(np.abs(ratio["ratio"] - 1))))})
    return pd.DataFrame(rows, columns=[*CURVE_KEYS, "sources", "compared", "median_miss"])


def default_curve(table: pd.DataFrame) -> dict[str, str] | None:
    """The curve a reader is shown first: among the compared curves of the most compared
    quantity, the one whose miss is the median (typical, neither the best nor the worst); any
    curve where none is compared; None for no curve."""
    if table.empty:
        return None
    compared = table[table["compared"]]
    if compared.empty:
        return dict(table.iloc[0][list(CURVE_KEYS)])
    quantity = compared["quantity"].value_counts().index[0]
    candidates = compared[compared["quantity"] == quantity].sort_values("median_miss")
    return dict(candidates.iloc[(len(candidates) - 1) // 2][list(CURVE_KEYS)])


def overlay(report: LoadedReport, experiment: str, quantity: str) -> Comparison:
    """Every curve of ``quantity`` of ``experiment`` on one panel, as data (curves without a
    prediction beside them: variants of a run compared with each other)."""
    curves = report.curves[(report.curves["experiment"] == experiment)
                           & (report.curves["quantity"] == quantity)]
    series = [_label(o, layer) + ("" if s == MEASURED else f" ({s})")
              for o, layer, s in zip(curves["optimizer"], curves["layer"], curves["source"])]
    table = pd.DataFrame({"panel": quantity, "series": series, "role": "data",
                          "step": curves["step"].to_numpy(), "value": curves["value"].to_numpy()})
    return Comparison(table, data=MEASURED, log_y=(quantity,) if (curves["value"] > 0).all() else (),
                      x_scale=_step_scale(curves["step"]),
                      markers=curves.groupby(series).size().max() <= FEW_POINTS)


def records_comparison(report: LoadedReport, experiment: str) -> Comparison | None:
    """The records of ``experiment`` as points, measured against predicted, beside the line
    measured = predicted (theory); one colour per quantity. None without a record that has
    both numbers."""
    records = records_table(report, experiment)
    records = records[np.isfinite(records["predicted"]) & np.isfinite(records["measured"])]
    if records.empty:
        return None
    panel = "measured against predicted"
    ends = [records["predicted"].min(), records["predicted"].max()]
    table = pd.concat([
        pd.DataFrame({"panel": panel, "series": records["quantity"], "role": "data",
                      "step": records["predicted"], "value": records["measured"]}),
        pd.DataFrame({"panel": panel, "series": "measured = predicted", "role": "theory",
                      "step": ends, "value": ends}),
    ], ignore_index=True)
    positive = bool((records[["predicted", "measured"]] > 0).all().all())
    return Comparison(table, x_title="predicted", y_titles={panel: "measured"},
                      data=MEASURED, theory="predicted", x_scale="log" if positive else "linear",
                      log_y=(panel,) if positive else (), lines=False)


def headline(report: LoadedReport, experiment: str, quantity: str, optimizer: str,
             layer: str) -> Comparison:
    """One curve of ``experiment``: measured as data beside each prediction as theory (the
    ratio panel divides by the first, ``"predicted"`` where there is one); and, where the
    quantity has more than one compared curve, a second panel with the median over them of
    measured / predicted and its band from the :data:`SPREAD` quantiles."""
    curves = report.curves[report.curves["experiment"] == experiment]
    curves = curves[curves["quantity"] == quantity]
    curve = curves[(curves["optimizer"] == optimizer) & (curves["layer"] == layer)]
    sources = list(dict.fromkeys(curve["source"]))
    first = _prediction(sources)
    order = ([MEASURED] if MEASURED in sources else []) + ([first] if first else [])
    order += [s for s in sources if s not in order]
    panel = f"{quantity} · {_label(optimizer, layer)}"
    rows = [pd.DataFrame({"panel": panel, "series": source,
                          "role": "data" if source == MEASURED or first is None else "theory",
                          "step": part["step"], "value": part["value"],
                          **{end: pd.to_numeric(part[end], errors="coerce")
                             for end in BAND if end in part}})
            for source in order for part in [curve[curve["source"] == source]]]
    spread = _spread(curves, quantity)
    if spread is not None:
        rows.append(spread)
    table = pd.concat(rows, ignore_index=True)
    positive = bool((curve["value"] > 0).all())
    return Comparison(table, theory="predicted", data=MEASURED,
                      log_y=(panel,) if positive else (),
                      x_scale=_step_scale(curve["step"]),
                      markers=curve.groupby("source").size().max() <= FEW_POINTS)


def _spread(curves: pd.DataFrame, quantity: str) -> pd.DataFrame | None:
    """Median and quantile band over the compared curves of ``quantity`` of measured /
    predicted, on a common grid of steps (each curve inside its own range of steps)."""
    ratios = [r for _, curve in curves.groupby(["optimizer", "layer"], sort=False)
              for r in [_ratio(curve, _prediction(list(dict.fromkeys(curve["source"]))))]
              if r is not None and len(r) > 1]
    if len(ratios) < 2:
        return None
    grid = np.linspace(min(r["step"].min() for r in ratios), max(r["step"].max() for r in ratios),
                       SPREAD_POINTS)
    stacked = np.vstack([np.interp(grid, r["step"], r["ratio"], left=np.nan, right=np.nan)
                         for r in ratios])  # (curves, grid)
    counted = np.isfinite(stacked).sum(axis=0) >= 2
    if not counted.any():
        return None
    with np.errstate(all="ignore"):
        low, median, high = np.nanquantile(stacked[:, counted], (SPREAD[0], 0.5, SPREAD[1]),
                                           axis=0)
    panel = f"measured / predicted, {len(ratios)} curves of {quantity}"
    band = f"median, {SPREAD[0]:.0%}–{SPREAD[1]:.0%} band"
    return pd.concat([
        pd.DataFrame({"panel": panel, "series": band, "role": "data", "step": grid[counted],
                      "value": median, "low": low, "high": high}),
        pd.DataFrame({"panel": panel, "series": band, "role": "theory",
                      "step": [grid[0], grid[-1]], "value": 1.0}),
    ], ignore_index=True)


def _prediction(sources: list[str]) -> str | None:
    """The prediction a measured curve is divided by: ``"predicted"`` where there is one, else
    the first other source; None without a measured curve or any prediction."""
    if MEASURED not in sources:
        return None
    others = [s for s in sources if s != MEASURED]
    return "predicted" if "predicted" in others else (others[0] if others else None)


def _ratio(curve: pd.DataFrame, prediction: str | None) -> pd.DataFrame | None:
    """Measured / ``prediction`` at the measured steps (the prediction interpolated, a
    constant where it has one value); None without both."""
    if prediction is None:
        return None
    measured = curve[curve["source"] == MEASURED].sort_values("step")
    predicted = curve[curve["source"] == prediction].sort_values("step")
    values = predicted["value"].to_numpy(dtype=float)
    if len(np.unique(values)) == 1:
        expected = np.full(len(measured), values[0])
    else:
        expected = np.interp(measured["step"], predicted["step"], values, left=np.nan,
                             right=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = measured["value"].to_numpy(dtype=float) / expected
    return pd.DataFrame({"step": measured["step"].to_numpy(dtype=float), "ratio": ratio})


def _step_scale(steps: pd.Series) -> str:
    """A log axis for steps from 0 over more than two decades, else a linear one."""
    return "symlog" if steps.min() >= 0 and steps.max() > 100 * max(steps.min(), 1) else "linear"


def _label(optimizer: str, layer: str) -> str:
    return " · ".join(part for part in (optimizer, layer) if part) or "whole network"


def records_table(report: LoadedReport, experiment: str) -> pd.DataFrame:
    """The records of ``experiment`` with the step of a curve sample split off its quantity
    (``"norm_sq@100"`` -> quantity ``norm_sq``, step 100), and any fields the report adds to
    the required ones (an interval's ``low`` and ``high``, ``seeds``) after them."""
    records = report.records[report.records["experiment"] == experiment]
    step = records["quantity"].str.extract(r"@(-?\d+)$", expand=False)
    required = ["optimizer", "layer", "quantity", "step", "predicted", "measured", "rel_error"]
    extra = [c for c in records.columns if c not in required and c != "experiment"]
    return records.assign(quantity=records["quantity"].map(base_quantity),
                          step=pd.to_numeric(step, errors="coerce"))[required + extra]
