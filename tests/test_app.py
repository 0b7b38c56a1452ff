"""The explorer, page by page, in Streamlit's AppTest (no browser): no exception, the expected
elements, outputs that follow the widgets, clear messages for impossible inputs, and the two ways
to reach a page (its navigation entry and ``?page=KEY``)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from scalewise import models, theory, validation
from scalewise.models.store import STORE_ENV, RunStore
from scalewise.validation import overview

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def store_path(tmp_path, monkeypatch) -> Path:
    """Every test sees its own (initially absent) run store."""
    path = tmp_path / "runs" / "store.sqlite"
    monkeypatch.setenv(STORE_ENV, str(path))
    return path


def open_page(key: str | None) -> AppTest:
    """The app opened at ``?page=key`` (at its root URL when ``key`` is None)."""
    app = AppTest.from_file(APP, default_timeout=120)
    if key is not None:
        app.query_params["page"] = key
    return app.run()


def outputs(app: AppTest) -> tuple[bytes, ...]:
    """Every chart's specification and data, and every metric: they change with the content."""
    charts = tuple(e.proto.SerializeToString() for e in app.get("vega_lite_chart"))
    return charts + tuple(f"{m.label}={m.value}".encode() for m in app.metric)


EQUILIBRIUM_METRICS = ("‖w‖² at equilibrium", "effective LR", "angular update",
                       "time constant τ")


def equilibrium_metrics(app: AppTest) -> list:
    return [m for m in app.metric if m.label in EQUILIBRIUM_METRICS]


def no_equilibrium(app: AppTest) -> list:
    return [w for w in app.warning if "No equilibrium" in w.value]


def your_runs(app: AppTest) -> AppTest:
    """The measurement page switched to the user's runs."""
    return app.radio[0].set_value("Your runs").run()


@dataclass(frozen=True)
class PageCase:
    key: str
    header: str
    downloads: int  # 3 per figure: PNG, PDF, CSV; a reference report adds its curve and JSON


PAGES = [
    PageCase("norm-growth", "Norm growth", 3),
    PageCase("wd-equilibrium", "Weight-decay equilibrium", 3),
    PageCase("measurement", "Theory vs measurement", 4),
    PageCase("identities", "Identities", 0),
    PageCase("kfac", "K-FAC", 10),
    PageCase("covariate-shift", "Internal covariate shift", 7),
    PageCase("schedules", "Schedules and the corrected decay", 3),
]


@pytest.mark.parametrize("case", PAGES, ids=lambda c: c.key)
def test_every_page_renders(case: PageCase) -> None:
    app = open_page(case.key)
    assert not app.exception
    assert case.header in app.header[0].value
    assert len(app.get("download_button")) == case.downloads
    assert not app.error


def test_navigation_switches_pages() -> None:
    app = open_page("norm-growth")
    app.switch_page("explorer/covariate_shift.py").run()
    assert not app.exception and "covariate shift" in app.header[0].value


def test_page_parameter_moves_to_the_pages_own_url() -> None:
    """``?page=KEY`` is consumed: the page is shown at its navigation path, with no parameter
    left to send a later visit back to it."""
    app = open_page("kfac")
    assert not app.exception and "K-FAC" in app.header[0].value
    assert "page" not in app.query_params


@pytest.mark.parametrize("key", [None, "no-such-page"], ids=["root", "unknown-key"])
def test_root_and_unknown_keys_open_the_first_page(key: str | None) -> None:
    app = open_page(key)
    assert not app.exception and "Norm growth" in app.header[0].value


@dataclass(frozen=True)
class WidgetCase:
    id: str
    page: str
    change: object  # AppTest -> None, changes one widget


WIDGET_CHANGES = [
    WidgetCase("norm-growth-lrs", "norm-growth", lambda a: a.multiselect[0].set_value([0.3])),
    WidgetCase("norm-growth-steps", "norm-growth",
               lambda a: a.select_slider[0].set_value(3000)),
    WidgetCase("wd-lr", "wd-equilibrium", lambda a: a.number_input[0].set_value(0.05)),
    WidgetCase("wd-optimizer", "wd-equilibrium", lambda a: a.selectbox[0].select("adamw")),
    WidgetCase("kfac-damping", "kfac", lambda a: a.number_input[2].set_value(0.01)),
    WidgetCase("kfac-width", "kfac", lambda a: a.slider[0].set_value(3)),
    WidgetCase("ics-mean", "covariate-shift", lambda a: a.slider[0].set_value(2.0)),
    WidgetCase("schedule-kind", "schedules", lambda a: a.selectbox[1].select("linear")),
    WidgetCase("schedule-corrected", "schedules", lambda a: a.checkbox[0].check()),
    WidgetCase("schedule-optimizer", "schedules", lambda a: a.selectbox[0].select("muon")),
]


@pytest.mark.parametrize("case", WIDGET_CHANGES, ids=lambda c: c.id)
def test_changing_a_widget_changes_the_output(case: WidgetCase) -> None:
    app = open_page(case.page)
    before = outputs(app)
    case.change(app)
    app.run()
    assert not app.exception and not app.error
    assert outputs(app) != before


def test_momentum_and_betas_appear_with_their_optimizers() -> None:
    app = open_page("wd-equilibrium")
    assert len(app.slider) == 0
    app.selectbox[0].select("sgdm").run()
    assert [s.label for s in app.slider] == ["Momentum"] and app.slider[0].value == 0.9
    assert app.number_input[0].value == 0.1
    app.selectbox[0].select("adam").run()
    assert [s.label for s in app.slider] == ["β₁", "β₂"]
    assert app.number_input[0].value == 1e-3  # Adam's step is about lr per coordinate
    assert len(equilibrium_metrics(app)) == 4 and not app.exception


def test_adagrad_shows_theorys_reason_for_no_equilibrium() -> None:
    app = open_page("wd-equilibrium")
    app.selectbox[0].select("adagrad").run()
    assert not app.exception and len(app.metric) == 0
    assert "O(1/sqrt(k))" in no_equilibrium(app)[0].value


@pytest.mark.parametrize("page,lr_index,wd_index", [("wd-equilibrium", 0, 1), ("kfac", 0, 1)],
                         ids=["wd-equilibrium", "kfac"])
def test_lr_times_wd_at_least_one_is_a_clear_error(page: str, lr_index: int,
                                                   wd_index: int) -> None:
    app = open_page(page)
    app.number_input[lr_index].set_value(2.0)
    app.number_input[wd_index].set_value(0.5).run()
    assert not app.exception
    assert "Impossible input" in app.error[0].value and "lr * weight_decay" in app.error[0].value


def test_empty_store_says_there_are_no_runs() -> None:
    app = your_runs(open_page("measurement"))
    assert not app.exception and "no runs in the store yet" in app.info[-1].value


def test_corrupt_store_is_a_clear_error(store_path: Path) -> None:
    store_path.parent.mkdir(parents=True)
    store_path.write_bytes(b"this is not a database" * 100)
    app = your_runs(open_page("measurement"))
    assert not app.exception and "run store cannot be read" in app.error[0].value
    assert not open_page("kfac").exception


def test_a_small_run_joins_the_comparison() -> None:
    app = your_runs(open_page("measurement"))
    app.number_input[0].set_value(20)
    app.button[0].click().run()
    assert not app.exception and "finished: completed" in app.success[0].value
    assert app.selectbox[0].label == "Run"
    # the layer's comparison and the unit's, 3 downloads each; the layers' relative errors
    assert len(app.get("download_button")) == 3 + 3 and len(app.dataframe) == 1
    errors = app.dataframe[0].value
    assert set(errors["quantity"]) == {"norm_sq", "effective_lr", "angular_update"}
    before = outputs(app)
    app.selectbox[1].select("hidden2").run()
    assert not app.exception and outputs(app) != before
    # unit by unit: a chosen layer and unit of it beside the unit's own recurrence
    run_id = app.selectbox[0].value.split(" · ")[0]
    unit_layer, unit = app.selectbox(key=f"unit-layer-{run_id}"), app.selectbox[-1]
    assert unit.label == "Unit" and len(unit.options) > 1 and unit_layer.options
    before = outputs(app)
    app = unit.select_index(1).run()
    assert not app.exception and outputs(app) != before
    assert any("One seed of this configuration" in c.value for c in app.caption)


def test_seeds_of_a_run_give_an_interval(store_path: Path) -> None:
    config = models.override(models.preset("digits-bn-sgd"),
                             {"steps": 8, "device": "cpu", "unit_probe_every": 1})
    with RunStore(store_path) as store:
        first = models.train(config, store=store, progress=False).id
        for seed in (1, 2):
            models.train(models.override(config, {"seed": seed}), store=store, progress=False)
        models.train(models.override(config, {"steps": 9}), store=store, progress=False)
    app = your_runs(open_page("measurement"))
    runs = app.selectbox[0]
    app = runs.select_index(next(i for i, o in enumerate(runs.options) if first in o)).run()
    assert not app.exception
    pooled = [m for m in app.metric if "seeds" in m.label]
    assert len(pooled) == 1 and "mean over 3 seeds" in pooled[0].label  # not the 9-step run
    assert "95% interval" in pooled[0].delta


def summary_rows(app: AppTest) -> list[str]:
    """The rows of the identities' summary table (one per identity shown)."""
    table = next(m.value for m in app.markdown if m.value.startswith("| identity |"))
    return table.splitlines()[2:]


def test_identities_page_lists_every_identity() -> None:
    app = open_page("identities")
    assert len(summary_rows(app)) == len(theory.IDENTITIES)
    assert len(app.selectbox(key="identity").options) == len(theory.IDENTITIES)


def test_identities_topic_filter_changes_the_page() -> None:
    app = open_page("identities")
    app.selectbox[0].select("equilibrium").run()
    expected = sum(item.topic == "equilibrium" for item in theory.IDENTITIES.values())
    assert not app.exception and len(summary_rows(app)) == expected
    assert len(app.selectbox(key="identity").options) == expected


def test_identities_search_and_check_all() -> None:
    app = open_page("identities")
    app.text_input[0].set_value("angular").run()
    rows = summary_rows(app)
    assert 0 < len(rows) < len(theory.IDENTITIES)
    app.button[0].click().run()
    assert not app.exception
    assert all("| — | — | — |" not in row for row in summary_rows(app))


def test_kfac_page_says_where_gauss_newton_norms_come_from() -> None:
    app = open_page("kfac")
    assert any("computed live" in info.value for info in app.info)


def test_corrupt_run_is_a_message_not_a_traceback(store_path: Path) -> None:
    with RunStore(store_path) as store:
        store.begin("broken", models.preset("digits-bn-sgd"), fresh=True, message="test")
    with sqlite3.connect(store_path) as connection:
        connection.execute("UPDATE runs SET config = '{\"not\": \"a config\"' WHERE id = 'broken'")
    app = your_runs(open_page("measurement"))
    assert not app.exception and "broken" in app.selectbox[0].value
    assert "cannot be read" in app.info[-1].value


def test_every_optimizer_shows_an_equilibrium_or_theorys_reason() -> None:
    app = open_page("wd-equilibrium")
    for option in app.selectbox[0].options:
        app.selectbox[0].select(option).run()
        assert not app.exception and not app.error, option
        assert (len(equilibrium_metrics(app)) == 4) != (len(no_equilibrium(app)) == 1), option
        drawn = len(app.get("download_button")) == 3
        assert drawn != any("no mean-field map" in info.value for info in app.info), option


@pytest.mark.parametrize(("page", "suite"), [("measurement", "effective-lr"), ("kfac", "kfac"),
                                             ("covariate-shift", "ics")])
def test_reference_report_is_shown_with_its_agreement(page: str, suite: str) -> None:
    app = open_page(page)
    reference = validation.reference(suite)
    assert reference.index["title"] in [e.value for e in app.subheader]
    assert len(app.tabs) == len(reference.index["sections"])
    experiments = overview.experiments(reference)
    assert any(len(frame.value) == len(experiments) for frame in app.dataframe)


@pytest.mark.parametrize(("page", "suite"), [("measurement", "effective-lr"), ("kfac", "kfac"),
                                             ("covariate-shift", "ics")])
def test_every_experiment_of_a_reference_report_renders(page: str, suite: str) -> None:
    """Each experiment of the committed report chosen in turn (its bounds, headline chart and
    records table, whatever the shape of its records): never a traceback."""
    app = open_page(page)
    for name in overview.experiments(validation.reference(suite)):
        choose = next(box for box in app.selectbox if box.label == "Experiment")
        app = choose.set_value(name).run()
        assert not app.exception, (suite, name, app.exception[0].value)


def test_missing_reference_report_says_how_to_make_it(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation.suite, "REFERENCE_DIR", tmp_path)
    app = open_page("kfac")
    assert not app.exception
    assert any("scalewise validate kfac --out validation/reference/kfac" in e.value
               for e in app.info)


def test_choosing_another_curve_redraws_it() -> None:
    app = open_page("measurement")
    before = outputs(app)
    curve = next(box for box in app.selectbox if box.label.startswith("Curve"))
    app = curve.select_index(1 - curve.index).run()
    assert not app.exception and outputs(app) != before


def numeric_widgets(app: AppTest) -> list:
    """The page's number inputs, sliders and select sliders, in page order by kind."""
    return [*app.number_input, *app.slider, *app.select_slider]


def bounds(widget) -> tuple:
    if widget.type == "select_slider":
        return widget.options[0], widget.options[-1]
    return widget.min, widget.max


def set_bound(widget, end: int) -> None:
    value = bounds(widget)[end]
    if widget.type == "select_slider":  # its options are the shown labels; values are numbers
        value = type(widget.value)(value)
    widget.set_value(value)


SWEPT_PAGES = ["norm-growth", "wd-equilibrium", "schedules", "kfac", "covariate-shift"]


@pytest.mark.parametrize("page", SWEPT_PAGES)
def test_every_widget_at_each_bound_and_all_at_once(page: str) -> None:
    """Each numeric widget alone at its minimum and at its maximum, then every widget at its
    minimum together and at its maximum together: a page or a clear message, never a
    traceback."""
    app = open_page(page)
    count = len(numeric_widgets(app))
    assert count > 0
    for index in range(count):
        for end in (0, 1):
            app = open_page(page)
            widget = numeric_widgets(app)[index]
            set_bound(widget, end)
            app.run()
            assert not app.exception, (widget.label, bounds(widget)[end])
    for end in (0, 1):
        app = open_page(page)
        for widget in numeric_widgets(app):
            set_bound(widget, end)
        app.run()
        assert not app.exception, ("all at", end)


@pytest.mark.parametrize("optimizer", ["sgdm", "adam", "adamw", "rmsprop", "adagrad"])
def test_every_optimizers_widgets_at_their_corners(optimizer: str) -> None:
    for end in (0, 1):
        app = open_page("wd-equilibrium")
        app.selectbox[0].select(optimizer).run()
        for widget in numeric_widgets(app):
            set_bound(widget, end)
        app.run()
        assert not app.exception, (optimizer, end)


def test_no_learning_rate_says_to_pick_one() -> None:
    app = open_page("norm-growth")
    app.multiselect[0].set_value([]).run()
    assert not app.exception and any("at least one" in info.value for info in app.info)
