"""scalewise explorer (Streamlit): theory beside measurement.

UI only: every number shown here is computed in theory/, sim/ or models/.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import theory


@st.cache_data(max_entries=64, show_spinner=False)
def check(name: str) -> tuple[bool, bool, float]:
    result = theory.IDENTITIES[name].check()
    return result.holds, result.control_rejected, result.seconds


def identities_page() -> None:
    st.header("Identities")
    st.write(
        "Every identity of the seeds, proved exactly in SymPy. Each has a negative control: a "
        "deliberately wrong variant the same check must reject."
    )
    topics = sorted({item.topic for item in theory.IDENTITIES.values()})
    topic = st.selectbox("Topic", ["all", *topics])
    for name, item in theory.IDENTITIES.items():
        if topic not in ("all", item.topic):
            continue
        with st.expander(f"{name} — {item.source}"):
            st.latex(item.statement)
            if item.note:
                st.caption(item.note)
            if st.button("Check now", key=f"check-{name}"):
                holds, rejected, seconds = check(name)
                st.write(f"holds: **{holds}**, control rejected: **{rejected}** ({seconds:.3f} s)")
    st.subheader("Slips in the seeds")
    slips = pd.DataFrame([vars(s) for s in theory.SLIPS])
    st.dataframe(slips, hide_index=True, width="stretch")


st.set_page_config(page_title="scalewise", layout="wide")
st.title("scalewise")
st.caption("Normalization, weight decay, adaptive methods and K-FAC: proved, simulated, measured.")
identities_page()
