"""The report folder: records and their relative errors, agreement bounds, writing and reading
back, thinning of curves, and the ``scalewise validate`` command's errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from scalewise import validation
from scalewise.cli import build_parser
from scalewise.validation import Size
from scalewise.validation.markdown import listing, markdown_table
from scalewise.validation.report import (
    CURVE_COLUMNS,
    RECORD_FIELDS,
    Bound,
    Report,
    agreement_table,
    base_quantity,
    curve_frame,
    load,
    record,
    relative_error,
    thin,
)
from scalewise.validation.suite import Settings


def test_relative_error_edge_cases() -> None:
    assert relative_error(1.1, 1.0) == pytest.approx(0.1)
    assert relative_error(-1.0, 1.0) == 2.0
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(1.0, 0.0) == math.inf
    assert math.isnan(relative_error(math.nan, 1.0))


def test_base_quantity_strips_the_step() -> None:
    assert base_quantity("norm_sq@1000") == "norm_sq"
    assert base_quantity("effective_lr") == "effective_lr"


def _records() -> list:
    return [record("driven", "sgd", "a", f"norm_sq@{k}", predicted=1.0 + e, measured=1.0)
            for k, e in enumerate((0.0, 0.001, 0.002, 0.5))] + [
        record("driven", "sgd", "b", "norm_sq@0", predicted=1.004, measured=1.0),
        record("driven", "adam", "a", "norm_sq@0", predicted=2.0, measured=1.0),
        record("equilibrium", "sgd", "a", "angular_update", predicted=1.0, measured=1.0)]


def test_bound_statistics_filters_and_grouping() -> None:
    records = _records()
    per_layer = Bound("driven", "norm_sq", 0.01, "sgd", "median", per_layer=True).check(records)
    # layer a: median of (0, .001, .002, .5) = .0015; layer b: .004 -> worst .004
    assert per_layer.value == pytest.approx(0.004) and per_layer.holds and per_layer.count == 5
    pooled_max = Bound("driven", "norm_sq", 0.01, "sgd").check(records)
    assert pooled_max.value == pytest.approx(0.5) and not pooled_max.holds
    every_optimizer = Bound("driven", "norm_sq", 2.0, statistic="max").check(records)
    assert every_optimizer.value == pytest.approx(1.0) and every_optimizer.count == 6
    assert not Bound("missing", "norm_sq", 1.0).check(records).holds  # no records: no claim


def test_one_sided_bounds_count_only_the_shortfall_or_the_excess() -> None:
    """A claim that the measured value is at least (at most) the predicted one: records on the
    claimed side count 0, the others their relative error; a lower end of an interval against
    0 holds when positive and fails with error 1 when not."""
    above = record("gain", "sgd", "a", "q", predicted=1.0, measured=1.5)
    below = record("gain", "sgd", "b", "q", predicted=1.0, measured=0.8)
    at_least = Bound("gain", "q", 0.01, side="at least").check([above, below])
    assert at_least.value == pytest.approx(0.25) and not at_least.holds
    assert Bound("gain", "q", 0.01, side="at least").check([above]).value == 0.0
    at_most = Bound("gain", "q", 0.01, side="at most").check([above, below])
    assert at_most.value == pytest.approx(1 / 3) and not at_most.holds
    assert Bound("gain", "q", 0.01, side="at most").check([below]).holds
    positive = record("gain", "sgd", "", "low", predicted=0.0, measured=0.002)
    negative = record("gain", "sgd", "", "low", predicted=0.0, measured=-0.002)
    claim = Bound("gain", "low", 0.5, side="at least")
    assert claim.check([positive]).holds and claim.check([negative]).value == 1.0
    assert claim.statistic_label == "max, one-sided: measured at least predicted"
    assert "one-sided: measured at least predicted" in agreement_table([claim.check([positive])])


def test_bound_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="side = 'above' is invalid"):
        Bound("e", "q", 0.1, side="above")
    with pytest.raises(ValueError, match="statistic"):
        Bound("e", "q", 0.1, statistic="mode")
    with pytest.raises(ValueError, match="limit"):
        Bound("e", "q", 0.0)


def test_nan_never_satisfies_a_bound() -> None:
    nan = record("e", "sgd", "a", "q", predicted=math.nan, measured=1.0)
    assert not Bound("e", "q", 1.0).check([nan]).holds


def test_thin_keeps_ends_and_caps_points() -> None:
    steps = np.arange(1001)
    curves = pd.DataFrame({"experiment": "e", "optimizer": "sgd", "layer": "a",
                           "quantity": "q", "source": "measured", "step": steps,
                           "value": steps * 2.0})
    short = curves.iloc[:10].assign(layer="b")
    thinned = thin(pd.concat([curves, short]), points=50)
    long_part = thinned[thinned["layer"] == "a"]
    assert len(long_part) == 50 and long_part["step"].iloc[[0, -1]].tolist() == [0, 1000]
    assert len(thinned[thinned["layer"] == "b"]) == 10
    np.testing.assert_array_equal(long_part["value"], long_part["step"] * 2.0)


def _report() -> Report:
    report = Report("demo", "Demo report", "An intro.")
    report.add(*_records())
    report.bounds.append(Bound("driven", "norm_sq", 0.01, "sgd", "median", True, "exact"))
    section = report.section("Driven", "Predicted beside measured.")
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 2])
    section.figure("driven_norms", fig, "norms")
    report.add_curves(pd.DataFrame({"experiment": "driven", "optimizer": "sgd", "layer": "a",
                                    "quantity": "norm_sq", "source": "measured",
                                    "step": range(5), "value": 1.0}))
    report.settings = {"size": "smoke"}
    report.runs = {"abc": {"steps": 5}}
    return report


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    folder = _report().write(tmp_path / "r")
    records = json.loads((folder / "report.json").read_text())
    assert len(records) == 7 and all(list(r) == list(RECORD_FIELDS) for r in records)
    assert (folder / "figures" / "driven_norms.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (folder / "report.md").read_text()
    assert "# Demo report" in markdown and "figures/driven_norms.png" in markdown
    assert "| driven | sgd | norm_sq | median per layer, worst | 0.004 | 0.01 | 5 | yes" in markdown
    loaded = load(folder)
    assert loaded.index["runs"] == {"abc": {"steps": 5}}
    assert loaded.index["agreement"][0]["holds"] is True
    assert list(loaded.curves.columns) == list(CURVE_COLUMNS) and len(loaded.curves) == 5
    assert loaded.records["rel_error"].iloc[3] == pytest.approx(0.5)
    assert not list(folder.glob(".*.tmp"))  # every file was renamed into place


def test_a_failed_write_keeps_the_previous_report(tmp_path: Path) -> None:
    folder = _report().write(tmp_path / "r")
    before = (folder / "report.json").read_text()
    broken = _report()
    broken.records[0] = record("driven", "sgd", "a", "norm_sq@0", predicted=9.0, measured=1.0)
    broken.sections[0].figures[0].figure = "not a figure"  # type: ignore[assignment]
    with pytest.raises(AttributeError):
        broken.write(folder)
    assert (folder / "report.json").read_text() == before
    load(folder)


def test_add_curves_names_missing_columns() -> None:
    with pytest.raises(ValueError, match="source"):
        Report("d", "D").add_curves(pd.DataFrame({"step": [0], "value": [1.0]}))


def test_load_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a readable validation report"):
        load(tmp_path)


def test_settings_and_suite_names() -> None:
    with pytest.raises(ValueError, match="size"):
        Settings(size="huge")
    assert Settings(size="smoke").smoke
    with pytest.raises(ValueError, match="suite"):
        validation.build("nope", Settings())
    with pytest.raises(ValueError, match="suite"):
        validation.reference("nope")
    assert sorted(validation.SUITES) == ["effective-lr", "ics", "kfac"]


def test_cli_rejects_an_unknown_suite(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["validate", "nope"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(("limit", "code"), [(0.01, 0), (0.001, 1)])
def test_cli_writes_the_report_and_exits_on_the_bounds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        limit: float, code: int) -> None:
    seen = {}

    def fake_build(name: str, settings: Settings) -> Report:
        seen.update(name=name, settings=settings)
        report = _report()
        report.bounds = [Bound("driven", "norm_sq", limit, "sgd", "median", True)]
        return report

    monkeypatch.setattr(validation, "build", fake_build)
    out = tmp_path / "out"
    args = build_parser().parse_args(["validate", "kfac", "--out", str(out), "--size", "smoke",
                                      "--no-progress"])
    assert args.run(args) == code
    assert seen["name"] == "kfac" and seen["settings"].smoke
    assert seen["settings"].store == str(out / "runs" / "runs.sqlite")
    assert (out / "report.json").exists() and "wrote" in capsys.readouterr().out


def test_cli_interrupt_and_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(name: str, settings: Settings) -> Report:
        raise KeyboardInterrupt

    monkeypatch.setattr(validation, "build", interrupted)
    args = build_parser().parse_args(["validate", "ics", "--out", str(tmp_path)])
    assert args.run(args) == 130
    assert "resume" in capsys.readouterr().err

    def bad(name: str, settings: Settings) -> Report:
        raise ValueError("device = 'tpu' is invalid")

    monkeypatch.setattr(validation, "build", bad)
    assert args.run(args) == 2
    assert "device = 'tpu'" in capsys.readouterr().err


def test_settings_scale_picks_the_entry_of_the_size() -> None:
    scales = {Size.SMOKE: "short", Size.REFERENCE: "long"}
    assert Settings(size="smoke").scale(scales) == "short"
    assert Settings(size="reference").scale(scales) == "long"
    with pytest.raises(ValueError, match="size = 'reference' has no scale; allowed: smoke"):
        Settings(size="reference").scale({Size.SMOKE: "short"})


def test_curve_frame_broadcasts_one_value_per_column() -> None:
    frame = curve_frame("e", pd.Series(["a", "b"], index=[7, 9]), "layer", "q", "measured",
                        np.array([0, 5]), [1, 2])
    assert tuple(frame.columns) == CURVE_COLUMNS
    assert frame["optimizer"].tolist() == ["a", "b"] and frame["layer"].tolist() == ["layer"] * 2
    assert frame["value"].dtype == np.float64 and frame["step"].tolist() == [0, 5]


def test_markdown_listing_and_table() -> None:
    assert listing({"a": 0.5, "b": 1 / 3}, "{:.2f}") == "a: 0.50, b: 0.33"
    table = markdown_table(pd.DataFrame({"x": ["1.0e-3"], "y": [2]}), index=False)
    assert table.splitlines() == ["| x | y |", "|---|---|", "| 1.0e-3 | 2 |"]
