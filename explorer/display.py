"""How the explorer's pages show results: a theory-vs-data comparison as interactive charts with
its agreement metrics and its PNG, PDF and CSV downloads (matplotlib draws the PNG and PDF only
when one is asked for), tables with their numbers formatted, and the page's opening paragraph."""

from __future__ import annotations

import functools
import io

import pandas as pd
import streamlit as st

from explorer.charts import panel_specs
from scalewise.figures import comparison as comparisons
from scalewise.figures.comparison import Comparison
from scalewise.figures.layout import MISSING, format_number

FIGURE_DPI = 200  # of the PNG downloads; the figure's size in inches is the same for all
MAX_METRICS = 4  # agreement metrics shown as tiles; more go to a table


def intuition(text: str) -> None:
    """The page's one paragraph of intuition, set apart from the controls."""
    st.info(text, icon=":material/lightbulb:")


def show_comparison(comparison: Comparison, name: str, title: str = "") -> None:
    """``comparison`` as one column per panel (its curves over its ratio panel), then its
    downloads: the figure as PNG and PDF, its table as CSV."""
    if title:
        st.markdown(f"**{title}**")
    for column, panel in zip(st.columns(len(comparison.panels)), comparison.panels):
        main, ratio = panel_specs(comparison, panel)
        with column:
            st.vega_lite_chart(spec=main, width="stretch", key=f"{name}-{panel}-main")
            if ratio is not None:
                st.vega_lite_chart(spec=ratio, width="stretch", key=f"{name}-{panel}-ratio")
    downloads(comparison, name, title)


def downloads(comparison: Comparison, name: str, title: str = "") -> None:
    buttons = st.columns(3, gap="small", width=420)
    for button, fmt, mime in zip(buttons, ("png", "pdf"), ("image/png", "application/pdf")):
        button.download_button(f"{fmt.upper()}", functools.partial(_figure_bytes, comparison,
                                                                  fmt, title),
                               f"{name}.{fmt}", mime, key=f"{name}-{fmt}",
                               icon=":material/download:")
    buttons[2].download_button("CSV", functools.partial(comparison.table.to_csv, index=False),
                               f"{name}.csv", "text/csv", key=f"{name}-csv",
                               icon=":material/download:")


def _figure_bytes(comparison: Comparison, fmt: str, title: str) -> bytes:
    buffer = io.BytesIO()
    comparisons.draw(comparison, title).savefig(buffer, format=fmt, dpi=FIGURE_DPI)
    return buffer.getvalue()


def ratio_metrics(comparison: Comparison, what: str, panel: str | None = None) -> None:
    """Data / theory at each curve's last data step (of ``panel``, or all), as metric tiles (a
    table beyond :data:`MAX_METRICS`); ``what`` says where that step is ("at step 100,000")."""
    final = comparison.final_ratios()
    if panel is not None and not final.empty:
        final = final[final["panel"] == panel]
    if final.empty:
        return
    if len(final) > MAX_METRICS:
        st.dataframe(formatted(final.rename(columns={"ratio": f"{comparison.data} / "
                                                     f"{comparison.theory}"})),
                     hide_index=True)
        return
    st.caption(f"{comparison.data} ÷ {comparison.theory} {what}")
    for column, row in zip(st.columns(len(final)), final.itertuples()):
        off = row.ratio - 1
        column.metric(f"{row.series} · {row.panel}", ratio_text(row.ratio),
                      delta=None if pd.isna(row.ratio) else
                      f"{'+' if off >= 0 else '−'}{format_number(abs(off), 2)} off theory",
                      delta_color="off", delta_arrow="off")


def ratio_text(ratio: float) -> str:
    """A ratio near 1 with the digits that show how near."""
    if pd.isna(ratio):
        return MISSING
    off = abs(ratio - 1)
    digits = 6 if off < 1e-3 else 4 if off < 0.1 else 3
    return f"{ratio:.{digits}f}" if off < 0.1 else format_number(ratio, digits)


def formatted(frame: pd.DataFrame):
    """``frame`` for ``st.dataframe``: numbers to three significant digits (scientific notation
    when very small or large), missing values as a dash; sorting still uses the numbers."""
    numbers = frame.select_dtypes("number").columns
    return frame.style.format(format_number, subset=list(numbers), na_rep=MISSING)
