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


def outputs(app: AppTest) -> tuple[str, ...]:
    """The media URLs of every figure and download: they change with the content."""
    return tuple(e.proto.url for e in app.get("download_button"))


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
    assert len(app.metric) == 4 and not app.exception


def test_adagrad_shows_theorys_reason_for_no_equilibrium() -> None:
    app = open_page("wd-equilibrium")
    app.selectbox[0].select("adagrad").run()
    assert not app.exception and len(app.metric) == 0
    assert "No equilibrium" in app.warning[0].value and "O(1/sqrt(k))" in app.warning[0].value


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
    app = open_page("measurement")
    assert not app.exception and "no runs in the store yet" in app.info[0].value


def test_corrupt_store_is_a_clear_error(store_path: Path) -> None:
    store_path.parent.mkdir(parents=True)
    store_path.write_bytes(b"this is not a database" * 100)
    app = open_page("measurement")
    assert not app.exception and "run store cannot be read" in app.error[0].value
    assert not open_page("kfac").exception


def test_a_small_run_joins_the_comparison() -> None:
    app = open_page("measurement")
    app.number_input[0].set_value(20)
    app.button[0].click().run()
    assert not app.exception and "finished: completed" in app.success[0].value
    assert len(app.multiselect[0].value) == 1
    # the reference report above it has 4 downloads and 2 tables (agreement, records)
    assert len(app.get("download_button")) == 4 + 3 and len(app.dataframe) == 2 + 1
    errors = app.dataframe[-1].value
    assert set(errors["quantity"]) == {"norm_sq", "effective_lr", "angular_update"}
    before = outputs(app)
    app.selectbox[-1].select("hidden2").run()
    assert not app.exception and outputs(app) != before


def test_identities_page_lists_every_identity() -> None:
    app = open_page("identities")
    assert len(app.expander) == len(theory.IDENTITIES)
    assert len(app.dataframe) == 1


def test_identities_topic_filter_changes_the_page() -> None:
    app = open_page("identities")
    app.selectbox[0].select("equilibrium").run()
    expected = sum(item.topic == "equilibrium" for item in theory.IDENTITIES.values())
    assert not app.exception and len(app.expander) == expected


def test_kfac_page_says_where_gauss_newton_norms_come_from() -> None:
    app = open_page("kfac")
    assert "computed live" in app.info[0].value


def test_corrupt_run_is_a_message_not_a_traceback(store_path: Path) -> None:
    with RunStore(store_path) as store:
        store.begin("broken", models.preset("digits-bn-sgd"), fresh=True, message="test")
    with sqlite3.connect(store_path) as connection:
        connection.execute("UPDATE runs SET config = '{\"not\": \"a config\"' WHERE id = 'broken'")
    app = open_page("measurement")
    assert not app.exception and "broken" in app.subheader[-1].value
    assert len(app.info) == 1 and "cannot be read" in app.info[0].value


def test_every_optimizer_shows_an_equilibrium_or_theorys_reason() -> None:
    app = open_page("wd-equilibrium")
    for option in app.selectbox[0].options:
        app.selectbox[0].select(option).run()
        assert not app.exception and not app.error, option
        assert (len(app.metric) == 4) != (len(app.warning) == 1), option
        assert len(app.get("download_button")) == 3, option


@pytest.mark.parametrize(("page", "suite"), [("measurement", "effective-lr"), ("kfac", "kfac"),
                                             ("covariate-shift", "ics")])
def test_reference_report_is_shown_with_its_agreement(page: str, suite: str) -> None:
    app = open_page(page)
    reference = validation.reference(suite)
    assert reference.index["title"] in [e.value for e in app.subheader]
    assert len(app.tabs) == len(reference.index["sections"])
    assert any(len(frame.value) == len(reference.index["agreement"]) for frame in app.dataframe)


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
    optimizer = app.selectbox(key="effective-lr-optimizer")
    other = next(o for o in optimizer.options if o != optimizer.value)
    app = optimizer.set_value(other).run()
    assert outputs(app) != before

