"""Page 3: theory vs measurement on stored runs, with a button that trains a small one."""

from __future__ import annotations

import streamlit as st

from explorer.computations import open_store, run_comparison, version
from explorer.display import axes_row, reference_section, show
from scalewise import models
from scalewise.models.store import RunStore

SMALL_RUN_PRESET = "digits-bn-sgd"


def main() -> None:
    st.header("3 · Theory vs measurement")
    st.write("Measured per-layer ‖w‖², effective LR and angular update of stored runs, beside "
             "the recurrence 001 Eq. (23) driven by the run's own measured gradient norms at "
             "unit weight norm and the equilibrium prediction (001 Eq. 24-25).")
    reference_section("effective-lr")
    st.subheader("Your runs")
    store = _open_store()
    if store is None:
        return
    with store:
        st.caption(f"Run store: `{store.path}`")
        _start_small_run(store)
        runs = store.runs()
    if runs.empty:
        st.info("There are no runs in the store yet: start a small run above, or train one with "
                "`scalewise train --preset digits-bn-sgd`.")
        return
    labels = {row.id: f"{row.id} · {row.name} · {row.status} · {row.last_step} steps"
              for row in runs.itertuples()}
    chosen = st.multiselect("Runs", list(labels), default=list(labels)[:1],
                            format_func=labels.get)
    versions = {row.id: version(row) for row in runs.itertuples()}
    for run_id in chosen:
        _compare(str(store.path), run_id, versions[run_id])


def _open_store() -> RunStore | None:
    store = open_store()
    if isinstance(store, str):
        st.error(f"The run store cannot be read: {store}. Point $SCALEWISE_STORE at another "
                 "file or move this one away.")
        return None
    return store


def _start_small_run(store: RunStore) -> None:
    steps = st.number_input("Steps of a small run", 20, 1000, 200, step=20)
    if not st.button(f"Start a small run ({SMALL_RUN_PRESET} on CPU)"):
        return
    config = models.override(models.preset(SMALL_RUN_PRESET), {"steps": int(steps),
                                                                "device": "cpu"})
    bar = st.progress(0.0, text="training")
    run = models.train(config, store=store, progress=False,
                       on_step=lambda k, _: bar.progress((k + 1) / config.steps,
                                                         text=f"step {k + 1}/{config.steps}"))
    st.success(f"Run {run.id} finished: {run.status.value}.")


def _compare(path: str, run_id: str, run_version: str) -> None:
    st.subheader(f"Run {run_id}")
    result = run_comparison(path, run_id, run_version)
    if isinstance(result, str):
        st.info(result)
        return
    table, errors = result
    layer = st.selectbox("Layer", sorted(table["layer"].unique()), key=f"layer-{run_id}")
    rows = table[table["layer"] == layer]
    fig, axes = axes_row(3)
    styles = {"measured": "-", "driven": "--", "equilibrium": ":"}
    for ax, (quantity, group) in zip(axes, rows.groupby("quantity", sort=False)):
        for source, style in styles.items():
            series = group[group["source"] == source]
            if not series.empty:
                ax.semilogy(series["step"], series["value"], ls=style, label=source)
        ax.set(xlabel="step k", title=quantity)
    axes[0].legend()
    show(fig, rows, f"comparison_{run_id}_{layer}")
    st.write("Relative errors |prediction − measured| / |measured|")
    st.caption("driven: median over steps and at the last step; equilibrium: against the "
               "measured mean of the last quarter of the run, which is only meaningful once the "
               "run has lasted several time constants (page 2 shows the approach rate). A layer "
               "that is not scale invariant breaks the premise of 001 Eq. (23).")
    st.dataframe(errors, hide_index=True, width="stretch")


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
