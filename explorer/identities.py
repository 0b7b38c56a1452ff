"""Page 4: every identity of the seeds with its check on demand, and the seeds' slips."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.computations import check
from scalewise import theory


def main() -> None:
    st.header("4 · Identities")
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


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
