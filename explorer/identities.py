"""Page 4: every identity of the seeds in one searchable table, checked one by one or all at once,
each with its entry of docs/identities.md; and the seeds' slips."""

from __future__ import annotations

import streamlit as st

from explorer.computations import check
from explorer.display import intuition
from scalewise import theory
from scalewise.theory.catalogue import SEEDS, identity_markdown, seeds_cited, summary_markdown

PARAMETER = "identity"  # ?identity=NAME opens that identity's entry


def main() -> None:
    st.header("4 · Identities")
    intuition("Every formula the other pages draw is proved here first, exactly: each identity "
              "of the seeds is a SymPy expression whose residual simplifies to 0 (or a derived "
              "closed form compared exactly), and each has a negative control, a deliberately "
              "wrong variant that the same check must reject with an exact witness. The "
              "simulators and the explorer evaluate these same expressions, so a formula is "
              "written once.")
    results: dict = st.session_state.setdefault("identity-checks", {})
    shown = _filtered()
    columns = st.columns([1, 3], vertical_alignment="center")
    if columns[0].button(f"Check all {len(shown)} shown", disabled=not shown):
        _check_all(shown, results)
    held = [results[i.name] for i in shown if i.name in results]
    columns[1].caption(f"{len(shown)} of {len(theory.IDENTITIES)} identities shown; "
                       f"{len(held)} checked, {sum(h[0] and h[1] for h in held)} hold with their "
                       "control rejected. Each source links to the identity's entry below.")
    if shown:
        st.markdown(summary_markdown(shown, results, lambda i: f"?{PARAMETER}={i.name}"))
    else:
        st.info("No identity matches the search and filters.")
    _detail(shown, results)
    _slips()


BEYOND = "other"
"""The filter for identities that cite sources beyond the seeds only (theory.catalogue.REFERENCES)."""


def _filtered() -> list:
    """The identities matching the search text, the seeds and the topic chosen."""
    columns = st.columns([2, 2, 1])
    text = columns[0].text_input("Search (name, statement, source, note)", "").strip().lower()
    sources = [*SEEDS, BEYOND]
    seeds = columns[1].pills("Seeds cited (the sidebar says which is which)", sources,
                             selection_mode="multi", default=sources)
    topics = sorted({item.topic for item in theory.IDENTITIES.values()})
    topic = columns[2].selectbox("Topic", ["all", *topics])
    found = []
    for item in theory.IDENTITIES.values():
        words = " ".join((item.name, item.statement, item.source, item.note or "")).lower()
        if text and text not in words:
            continue
        if topic not in ("all", item.topic):
            continue
        if not set(seeds_cited(item.source) or [BEYOND]) & set(seeds or ()):
            continue
        found.append(item)
    return found


def _check_all(items: list, results: dict) -> None:
    bar = st.progress(0.0, text="checking")
    for n, item in enumerate(items, start=1):
        bar.progress(n / len(items), text=f"{n}/{len(items)}: {item.name}")
        results[item.name] = check(item.name)
    bar.empty()


def _detail(shown: list, results: dict) -> None:
    """One identity's entry of docs/identities.md with its check on demand."""
    if not shown:
        return
    names = [item.name for item in shown]
    asked = st.query_params.get(PARAMETER)
    st.subheader("An identity in full")
    name = st.selectbox("Identity", names, index=names.index(asked) if asked in names else 0,
                        key="identity")
    item = theory.IDENTITIES[name]
    st.markdown(identity_markdown(item).replace(f"### `{name}`", "", 1))
    cited = seeds_cited(item.source)
    st.caption("Seeds: " + "; ".join(f"{key}: {SEEDS[key]}" for key in cited)
               + ". The same entry is in docs/identities.md.")
    if st.button("Check now", key=f"check-{name}"):
        results[name] = check(name)
    if name in results:
        holds, rejected, seconds = results[name]
        st.write(f"holds: **{holds}**, control rejected: **{rejected}** ({seconds:.3f} s)")


def _slips() -> None:
    st.subheader("Slips in the seeds")
    st.caption("Where a seed states something the identities prove otherwise; each row names the "
               "identity that settles it.")
    for slip in theory.SLIPS:
        st.markdown(f"**{slip.seed}, {slip.place}.** It says {slip.says}. True: {slip.truth} "
                    f"(identity `{slip.identity}`).")


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
