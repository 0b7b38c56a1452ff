"""The compute behind one widget change on each of the explorer's pages, cold (the cache emptied:
the pure function runs) and warm (a cache hit), measured through the explorer's own cached
wrappers (``explorer/computations.py``), then the chart: the page's
:class:`~scalewise.figures.comparison.Comparison` and its Vega-Lite specifications
(``explorer/charts.py``), which no cache holds and every rerun rebuilds.

    python bench/bench_app.py

Every page is loaded once first (each case computed, not timed), as a user's change follows
the page's first load, which pays the imports and the first calls into torch and SymPy; the
change is then timed with the page's caches emptied. Target: the compute under 50 ms cold where
the page's default inputs allow it, at most 100 ms for any; the rows say which do not. Drawing
in the browser is not timed here (``tests/test_app_browser.py`` records a page's first load and
its re-render after a widget change). The measurement page's run is
trained once into a temporary store before timing.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import streamlit.logger

from scalewise.vocabulary import Optimizer

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 0.05
SMALL_RUN_STEPS = 200


def explorer(name: str):
    """``explorer.<name>``, imported from the repository as ``streamlit run app.py`` does (the
    explorer's folder is not installed)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"explorer.{name}")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def chart(comparison) -> None:
    """What a rerun rebuilds of a comparison: every panel's specifications."""
    charts = explorer("charts")
    for panel in comparison.panels:
        charts.panel_specs(comparison, panel)


def cases(app, store_path: str, run_ids: list[str]) -> list[tuple]:
    """(label, the cached wrappers a change misses, compute: () -> result, chart: result ->
    None)."""
    from scalewise.figures import curves
    from scalewise.validation import comparison as runs

    kfac, shift = explorer("kfac"), explorer("covariate_shift")
    identities = explorer("identities")

    found = [("1 norm growth: steps -> 100,000", (app.norm_growth,),
              lambda: app.norm_growth((0.01, 0.1, 1.0), 100_000, 1.0),
              lambda data: chart(curves.norm_growth_comparison(data)))]
    for optimizer in app.OPTIMIZERS:
        properties = Optimizer.parse(optimizer).properties
        momentum = properties.default_momentum if properties.uses_momentum else 0.0
        lr, wd = app.default_lr(optimizer), app.default_weight_decay(optimizer)
        target = app.wd_equilibrium(optimizer, lr, wd, momentum, (0.9, 0.999), app.SPHERE_DIM)
        rate = target["approach_rate"] if isinstance(target, dict) else float("nan")
        steps = max(app.settling_steps(rate) or app.STEP_CHOICES[-1], 3000)

        def compute(o=optimizer, lr=lr, wd=wd, m=momentum, steps=steps):
            return (app.wd_trajectory(o, lr * 1.5, wd, steps, m, (0.9, 0.999), app.SPHERE_DIM),
                    app.wd_equilibrium(o, lr * 1.5, wd, m, (0.9, 0.999), app.SPHERE_DIM))

        def draw(result, o=optimizer):
            trajectory, equilibrium = result
            if trajectory is not None:
                chart(curves.wd_comparison({o: trajectory}, equilibrium
                                           if isinstance(equilibrium, dict) else None))

        found.append((f"2 wd equilibrium, {optimizer} ({steps:,} steps): lr x 1.5",
                      (app.wd_trajectory, app.wd_equilibrium), compute, draw))
    found += _measurement_cases(app, store_path, run_ids, runs)
    found.append(("4 identities: search 'norm'", (),
                  lambda: [i for i in identities.theory.IDENTITIES.values()
                           if "norm" in (i.name + i.statement + i.source).lower()],
                  lambda shown: identities.summary_markdown(shown, {}, lambda i: i.name)))
    found.append(("5 kfac: damping -> 0.01 (30,000 steps)", (app.damping,),
                  lambda: app.damping(0.1, 1e-3, 0.01, 30_000),
                  lambda data: chart(curves.effective_damping_comparison(data))))
    found.append(("5 kfac: width -> 5 (live networks)", (app.family_norms,),
                  lambda: app.family_norms(kfac.DEPTHS, 5, 0),
                  lambda data: chart(kfac._gauss_newton_comparison(data))))
    found.append(("6 covariate shift: largest ||m|| -> 4.1", (app.outliers,),
                  lambda: app.outliers(4.1, 32, 4096, 0),
                  lambda data: chart(shift._outlier_comparison(data))))
    return found


def _measurement_cases(app, store_path: str, run_ids: list[str], runs) -> list:
    report = app.reference_report("effective-lr", app.report_version("effective-lr"))
    found = []
    if not isinstance(report, str):
        from scalewise.validation import overview

        version = app.report_version("effective-lr")
        tables = {e: overview.curve_table(report, e) for e in overview.experiments(report)}
        experiment = next(e for e, t in tables.items() if t["compared"].any())  # the page opens
        curve = overview.default_curve(tables[experiment])  # on it, on this curve
        found.append((f"3 measurement: report curve ({experiment})", (app.report_headline,),
                      lambda: app.report_headline("effective-lr", version, experiment,
                                                  curve["quantity"], curve["optimizer"],
                                                  curve["layer"]), chart))
    versions = _versions(store_path)
    run_id = run_ids[0]
    layer = app.unit_layers(store_path, run_id, versions[run_id])[0]
    found.append((f"3 measurement: a run chosen ({SMALL_RUN_STEPS} steps)",
                  (app.run_comparison, app.stored_run),
                  lambda: app.run_comparison(store_path, run_id, versions[run_id]),
                  lambda result: chart(runs.layer_view(result[0], layer))))
    found.append(("3 measurement: layer of the units", (app.unit_comparison,),
                  lambda: app.unit_comparison(store_path, run_id, versions[run_id], layer),
                  lambda units: chart(runs.unit_view(units, int(units["unit"].iloc[0])))))
    found.append(("3 measurement: another unit (its layer cached)", (),
                  lambda: app.unit_comparison(store_path, run_id, versions[run_id], layer),
                  lambda units: chart(runs.unit_view(units, int(units["unit"].iloc[-1])))))
    found.append((f"3 measurement: interval over {len(run_ids)} seeds",
                  (app.unit_comparison, app.seed_runs),
                  lambda: app.seed_interval(store_path, tuple(
                      (r, versions[r]) for r in app.seed_runs(store_path, run_id,
                                                             tuple(versions.items()))), layer),
                  lambda _: None))
    return found


def _versions(store_path: str) -> dict[str, str]:
    from scalewise.models.store import RunStore

    app = explorer("computations")
    with RunStore(store_path, create=False) as store:
        return {row.id: app.version(row) for row in store.runs().itertuples()}


def _small_runs(store_path: str) -> list[str]:
    """Three seeds of the explorer's small run, with per-unit records at every step."""
    from scalewise import models
    from scalewise.models.store import RunStore

    measurement = explorer("measurement")
    config = models.override(models.preset(measurement.SMALL_RUN_PRESET), {
        "steps": SMALL_RUN_STEPS, "device": "cpu", "unit_probe_every": 1})
    with RunStore(store_path) as store:
        return [models.train(models.override(config, {"seed": seed}), store=store,
                             progress=False).id for seed in range(3)]


def main() -> None:
    streamlit.logger.set_log_level("error")  # "no runtime" notices: we run outside a server
    app = explorer("computations")
    with tempfile.TemporaryDirectory() as folder:
        store_path = os.path.join(folder, "runs.sqlite")
        run_ids = _small_runs(store_path)
        found = cases(app, store_path, run_ids)
        for _, _, compute, _ in found:  # the pages' first loads, not timed
            compute()
        print(f"{'widget change':58s} {'cold ms':>8s} {'warm ms':>8s} {'chart ms':>8s}  "
              f"compute under {TARGET_SECONDS * 1e3:.0f} ms")
        for label, wrappers, compute, draw in found:
            for wrapper in wrappers:
                wrapper.clear()
            cold, result = timed(compute)
            warm = timed(compute)[0]
            drawn = timed(lambda: draw(result))[0]  # noqa: B023 (called at once)
            print(f"{label:58s} {cold * 1e3:8.1f} {warm * 1e3:8.2f} {drawn * 1e3:8.1f}  "
                  f"{cold < TARGET_SECONDS}")


if __name__ == "__main__":
    main()
