"""A committed reference report on a page, read from any report folder without knowing its suite
(:mod:`scalewise.validation.overview`): what holds at a glance, then per experiment its bounds and
one headline chart of predicted beside measured with the spread over the report's curves, and
the report's text, figures and records on demand."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.computations import (
    reference_report,
    report_headline,
    report_overlay,
    report_overview,
    report_records,
    report_version,
)
from explorer.display import formatted, show_comparison
from scalewise.figures.layout import format_number
from scalewise.validation.overview import CURVE_KEYS, default_curve, records_table
from scalewise.validation.report import LoadedReport, statistic_label

MAX_BOUND_TILES = 4
INTRO_CHARACTERS = 400  # the intro shown at once; the rest on demand


def reference_section(suite: str) -> None:
    """The committed reference report of ``suite``, or how to make it where there is none."""
    version = report_version(suite)
    report = reference_report(suite, version)
    if isinstance(report, str):
        st.info(f"There is no reference report of `{suite}` here ({report}). Make it with "
                f"`scalewise validate {suite} --out validation/reference/{suite}`.")
        return
    st.subheader(report.index.get("title", suite))
    _intro(report.index.get("intro", ""))
    summary, curve_tables = report_overview(suite, version)
    if summary.empty:
        st.info("This report has no experiments.")
        return
    st.dataframe(formatted(summary), hide_index=True)
    labels = {e: f"{e} (bounds held: {held})"
              for e, held in zip(summary["experiment"], summary["bounds held"])}
    charted = [e for e in labels if curve_tables[e]["compared"].any()]
    experiment = st.selectbox("Experiment", list(labels), format_func=labels.get,
                              index=list(labels).index(charted[0]) if charted else 0,
                              key=f"{suite}-experiment")  # opens on one with a chart
    _bounds(report, experiment)
    _headline(suite, version, experiment, curve_tables[experiment])
    with st.expander(f"Records of {experiment}"):
        st.dataframe(formatted(records_table(report, experiment)), hide_index=True)
    _text_and_figures(report)
    st.download_button("All records (report.json)", report.records.to_json(orient="records"),
                       f"{suite}_report.json", "application/json", key=f"{suite}-json",
                       icon=":material/download:")


def _intro(text: str) -> None:
    if len(text) <= INTRO_CHARACTERS:
        st.markdown(text)
        return
    cut = text.rfind(". ", 0, INTRO_CHARACTERS) + 1 or INTRO_CHARACTERS
    st.markdown(text[:cut])
    with st.expander("More about this report"):
        st.markdown(text[cut:])


def _bounds(report: LoadedReport, experiment: str) -> None:
    """The bounds the suite declared for ``experiment``, each with its value against its limit."""
    rows = [row for row in report.index.get("agreement", []) if row["experiment"] == experiment]
    if not rows:
        st.caption("No bound is declared for this experiment: its numbers are reported as "
                   "measured.")
        return
    for column, row in zip(st.columns(min(len(rows), MAX_BOUND_TILES)), rows[:MAX_BOUND_TILES]):
        statistic = statistic_label(row["statistic"], row.get("per_layer", False),
                                    row.get("side", "both"))
        column.metric(f"{row['quantity']} ({row.get('optimizer') or 'all'}): {statistic} "
                      "relative error", format_number(row["value"]),
                      delta=f"{'within' if row['holds'] else 'over'} the bound "
                            f"{format_number(row['limit'])}",
                      delta_color="normal" if row["holds"] else "inverse",
                      help=row.get("description") or None)
    if len(rows) > MAX_BOUND_TILES:
        with st.expander(f"All {len(rows)} bounds of {experiment}"):
            st.dataframe(formatted(_bound_table(rows)), hide_index=True)


def _bound_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)[["optimizer", "quantity", "statistic", "value", "limit", "count",
                               "holds", "description"]]


def _headline(suite: str, version: float, experiment: str, curves) -> None:
    """The experiment's headline chart: a chosen curve beside its predictions (the typical
    one first) where it has compared curves of several steps; else its records, measured
    against predicted; else its curves side by side; else a sentence saying why there is none."""
    compared = curves[curves["compared"]] if not curves.empty else curves
    name = f"{suite}-{experiment}"
    if not compared.empty:
        quantity, optimizer, layer = _pick_curve(compared, name)
        st.caption("Thick translucent: the prediction; thin: the measurement; below each chart, "
                   "measured / predicted. The second chart is the spread of measured / "
                   "predicted over every curve of this quantity.")
        show_comparison(report_headline(suite, version, experiment, quantity, optimizer, layer),
                        f"{name}-{quantity}-{optimizer}-{layer}".replace("/", "_"))
        return
    scatter = report_records(suite, version, experiment)
    if scatter is not None:
        st.caption("Each record is a point, measured against predicted; on the line, theory "
                   "holds exactly. Below: measured / predicted.")
        show_comparison(scatter, f"{name}-records")
    if curves.empty:
        if scatter is None:
            st.info("This experiment has neither curves nor records with both a prediction and "
                    "a measurement to draw.")
        return
    quantities = list(dict.fromkeys(curves["quantity"]))
    quantity = st.selectbox("Quantity", quantities, key=f"{name}-overlay")
    st.caption("These curves have no prediction beside them: the experiment compares its "
               "variants with each other (the records and bounds say by how much).")
    show_comparison(report_overlay(suite, version, experiment, quantity),
                    f"{name}-{quantity}-curves")


def _pick_curve(compared, name: str) -> tuple[str, str, str]:
    """Widgets choosing a compared curve, starting from the typical one (its miss the median)."""
    start = default_curve(compared)
    quantities = list(dict.fromkeys(compared["quantity"]))
    columns = st.columns(2)
    quantity = columns[0].selectbox("Quantity", quantities,
                                    index=quantities.index(start["quantity"]),
                                    key=f"{name}-quantity")
    rows = compared[compared["quantity"] == quantity].sort_values("median_miss")
    choices = [tuple(r) for r in rows[list(CURVE_KEYS[1:])].itertuples(index=False)]
    misses = dict(zip(choices, rows["median_miss"]))
    typical = default_curve(rows)
    curves = {(" · ".join(p for p in c if p) or "whole network")
              + f" (median miss {format_number(misses[c])})": c for c in choices}
    labels = list(curves)  # plain strings: a widget's value survives a rerun as it was shown
    chosen = columns[1].selectbox(
        "Curve (sorted by median |measured / predicted − 1|)", labels,
        index=choices.index((typical["optimizer"], typical["layer"])), key=f"{name}-{quantity}")
    return quantity, *curves[chosen]


def _text_and_figures(report: LoadedReport) -> None:
    sections = report.index.get("sections", [])
    if not sections:
        return
    with st.expander("The report's text and figures"):
        for tab, section in zip(st.tabs([s["title"] for s in sections]), sections):
            with tab:
                st.markdown(section["text"])
                for figure in section.get("figures", []):
                    path = report.folder / figure["file"]
                    if path.exists():
                        st.image(str(path), caption=figure.get("caption"), width="content")
                    else:
                        st.caption(f"Figure {figure['file']} is missing from the report folder.")
