"""Page 3: theory vs measurement: the committed effective-lr report, and the user's own runs with
the same comparison, layer by layer and unit by unit; a button trains a small run."""

from __future__ import annotations

import streamlit as st

from explorer.computations import (
    open_store,
    run_comparison,
    seed_interval,
    seed_runs,
    unit_comparison,
    unit_layers,
    version,
)
from explorer.display import formatted, intuition, ratio_metrics, ratio_text, show_comparison
from explorer.reports import reference_section
from scalewise import models
from scalewise.figures.layout import format_number
from scalewise.models.store import RunStore
from scalewise.validation.comparison import layer_view, unit_view

SMALL_RUN_PRESET = "digits-bn-sgd"
VIEWS = ("Reference report", "Your runs")


def main() -> None:
    st.header("3 · Theory vs measurement")
    intuition("On a real network each row of a weight feeding batch norm is a scale-invariant "
              "unit, so 001 Eq. (23) holds for it step by step: fed the unit's own measured "
              "gradient norm, the recurrence must reproduce its measured norm exactly under SGD. "
              "The reference report measures this and theory's equilibria on small networks; "
              "your own runs get the same comparison, per layer and per unit.")
    view = st.radio("Show", VIEWS, horizontal=True, label_visibility="collapsed")
    if view == VIEWS[0]:
        reference_section("effective-lr")
    else:
        _your_runs()


def _your_runs() -> None:
    store = open_store()
    if isinstance(store, str):
        st.error(f"The run store cannot be read: {store}. Point $SCALEWISE_STORE at another "
                 "file or move this one away.")
        return
    with store:
        st.caption(f"Run store: `{store.path}`")
        _start_small_run(store)
        runs = store.runs()
    if runs.empty:
        st.info("There are no runs in the store yet: start a small run above, or train one with "
                "`scalewise train --preset digits-bn-sgd --unit-probe-every 1` (the per-unit "
                "records are what the unit-by-unit comparison needs).")
        return
    ids = {f"{row.id} · {row.name or 'unnamed'} · {row.status} · {row.last_step} steps": row.id
           for row in runs.itertuples()}  # plain labels: a widget's value survives as shown
    run_id = ids[st.selectbox("Run", list(ids))]
    versions = {row.id: version(row) for row in runs.itertuples()}
    _compare(str(store.path), run_id, versions)


def _start_small_run(store: RunStore) -> None:
    columns = st.columns([1, 2], vertical_alignment="bottom")
    steps = columns[0].number_input("Steps of a small run", 20, 1000, 200, step=20)
    if not columns[1].button(f"Start a small run ({SMALL_RUN_PRESET} on CPU, per-unit records)"):
        return
    config = models.override(models.preset(SMALL_RUN_PRESET), {
        "steps": int(steps), "device": "cpu", "unit_probe_every": 1})
    bar = st.progress(0.0, text="training")
    run = models.train(config, store=store, progress=False,
                       on_step=lambda k, _: bar.progress((k + 1) / config.steps,
                                                         text=f"step {k + 1}/{config.steps}"))
    st.success(f"Run {run.id} finished: {run.status.value}.")


def _compare(path: str, run_id: str, versions: dict[str, str]) -> None:
    run_version = versions[run_id]
    st.subheader(f"Run {run_id}")
    result = run_comparison(path, run_id, run_version)
    if isinstance(result, str):
        st.info(result)
        return
    table, errors = result
    layers = list(dict.fromkeys(table["layer"]))
    layer = st.selectbox("Layer", layers, key=f"layer-{run_id}")
    st.caption("Thin: measured (the layer mean over its units); thick translucent: the "
               "recurrence 001 Eq. (23) driven by the layer's measured gradient norms, and the "
               "equilibrium (001 Eq. 24-25) where the layer is decayed. Below: measured / driven.")
    _chart(layer_view(table, layer), f"comparison_{run_id}_{layer}")
    with st.expander("Relative errors of every layer"):
        st.caption("driven: median over steps and at the last step; equilibrium: against the "
                   "measured mean of the last quarter of the run, meaningful only once the run "
                   "has lasted several time constants (page 2). A layer that is not scale "
                   "invariant breaks the premise of 001 Eq. (23).")
        st.dataframe(formatted(errors), hide_index=True)
    _units(path, run_id, versions)


def _units(path: str, run_id: str, versions: dict[str, str]) -> None:
    """The unit-by-unit comparison: a chosen unit beside its own driven recurrence, and the
    spread of measured / predicted over all units of the layer."""
    st.markdown("**Unit by unit**")
    run_version = versions[run_id]
    layers = unit_layers(path, run_id, run_version)
    if not layers:
        st.info("This run recorded no per-unit statistics (unit_probe_every = 0). Train with "
                "`unit_probe_every = 1` (the small run above does) to compare unit by unit.")
        return
    columns = st.columns(2)
    layer = columns[0].selectbox("Layer of the units", layers, key=f"unit-layer-{run_id}")
    units = unit_comparison(path, run_id, run_version, layer)
    if isinstance(units, str):
        st.info(units)
        return
    choices = sorted(units["unit"].unique())
    unit = columns[1].selectbox("Unit", choices, key=f"unit-{run_id}-{layer}")
    st.caption("Left: the unit's measured ‖w‖² and sim.drive fed its own gradient norm at unit "
               "weight norm √(grad_sq · norm_sq) (001 Eq. 18, 23). Right: measured / predicted "
               "over every unit of the layer, its median and the band of 90% of the units.")
    _chart(unit_view(units, unit), f"units_{run_id}_{layer}_{unit}")
    _seeds(path, run_id, versions, layer)


def _chart(comparison, key: str) -> None:
    """A comparison's chart (``key`` names its downloads) and measured / predicted at its last
    step."""
    show_comparison(comparison, key.replace("/", "_"))
    ratio_metrics(comparison, "at the last step", panel=comparison.panels[0])


def _seeds(path: str, run_id: str, versions: dict[str, str], layer: str) -> None:
    """Measured / predicted at the last step, median over the layer's units, over the stored
    seeds of this run's configuration: a mean with its 95% interval."""
    pairs = tuple(versions.items())
    seeds = seed_runs(path, run_id, pairs)
    if len(seeds) < 2:
        st.caption("One seed of this configuration is stored: train it again with another "
                   "`--seed` for an interval over seeds.")
        return
    found = seed_interval(path, tuple((s, versions[s]) for s in seeds), layer)
    if found is None:
        st.caption(f"{len(seeds)} seeds of this configuration are stored, but not all have "
                   "per-unit records of this layer at every step.")
        return
    st.metric(f"measured / predicted ‖w‖² at the last step, median over units, mean over "
              f"{found.n} seeds", ratio_text(found.mean),
              delta=f"95% interval {format_number(found.low, 4)} – {format_number(found.high, 4)}",
              delta_color="off", delta_arrow="off",
              help="Student-t interval over seeds (validation.estimators.interval).")


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
