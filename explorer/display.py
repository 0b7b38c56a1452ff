"""How the explorer's pages show results: a figure with its PNG, PDF and CSV downloads, and a
committed reference report (agreement table, sections with figures, curves to redraw, records to
download)."""

from __future__ import annotations

import functools
import io

import pandas as pd
import streamlit as st
from matplotlib.figure import Figure

from explorer.computations import reference_report, report_version
from scalewise.figures import layout
from scalewise.validation.report import LoadedReport

HEIGHT = 3.6  # inches: a row of axes that fits beside the widgets of a wide page


def axes_row(ncols: int, width: float = 11.0) -> tuple[Figure, list]:
    return layout.axes_row(ncols, width=width, height=HEIGHT)


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=120)
    return buffer.getvalue()


def show(fig: Figure, data: pd.DataFrame, name: str) -> None:
    """Draw ``fig`` and offer it as PNG and PDF and its ``data`` as CSV (the PDF is rendered
    only when asked for)."""
    png = figure_bytes(fig, "png")
    st.image(png)
    buttons = st.columns(3)
    buttons[0].download_button(f"{name}.png", png, f"{name}.png", "image/png", key=f"{name}-png")
    buttons[1].download_button(f"{name}.pdf", functools.partial(figure_bytes, fig, "pdf"),
                               f"{name}.pdf", "application/pdf", key=f"{name}-pdf")
    buttons[2].download_button(f"{name}.csv", data.to_csv(index=False), f"{name}.csv",
                               "text/csv", key=f"{name}-csv")


def reference_section(suite: str) -> None:
    """The committed reference report of ``suite``: its agreement table, each section with its
    figures, and the records and curves to browse and download."""
    report = reference_report(suite, report_version(suite))
    if isinstance(report, str):
        st.info(f"No reference report of `{suite}` here ({report}). Make it with "
                f"`scalewise validate {suite} --out validation/reference/{suite}`.")
        return
    st.subheader(report.index["title"])
    st.markdown(report.index["intro"])
    agreement = pd.DataFrame(report.index["agreement"])
    if not agreement.empty:
        st.write("Agreement: the statistic of |predicted − measured| / |measured| against the "
                 "limit the suite promises.")
        st.dataframe(agreement[["experiment", "optimizer", "quantity", "statistic", "per_layer",
                                "value", "limit", "count", "holds", "description"]],
                     hide_index=True, width="stretch")
    sections = report.index["sections"]
    for tab, section in zip(st.tabs([s["title"] for s in sections]), sections):
        with tab:
            st.markdown(section["text"])
            for figure in section["figures"]:
                st.image(str(report.folder / figure["file"]), caption=figure["caption"])
    _browse_curves(report, suite)
    with st.expander(f"All {len(report.records)} records (report.json)"):
        st.dataframe(report.records, hide_index=True, width="stretch")
        st.download_button("report.json", report.records.to_json(orient="records"),
                           f"{suite}_report.json", "application/json", key=f"{suite}-json")


def _browse_curves(report: LoadedReport, suite: str) -> None:
    """Redraw any measured curve of the report beside its predictions."""
    data = report.curves
    if data.empty:
        return
    st.write("Curves: choose one to redraw, every source (measured, predicted) on one axis.")
    columns = st.columns(4)
    for column, key in zip(columns, ("experiment", "quantity", "optimizer", "layer")):
        data = data[data[key] == column.selectbox(key, sorted(data[key].unique()),
                                                  key=f"{suite}-{key}")]
    fig, (ax,) = axes_row(1, width=7.0)
    for source, group in data.groupby("source"):
        ax.plot(group["step"], group["value"], "--" if source != "measured" else "-",
                label=source)
    positive = (data["value"] > 0).all()
    ax.set(xlabel="step k", yscale="log" if positive else "linear")
    ax.legend()
    show(fig, data, f"{suite}_curve")
