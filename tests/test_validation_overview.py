"""What a reader sees first of a report, from its generic parts: the summary per experiment, the
curves compared, the typical curve, the headline with its spread over curves, and the optional
parts a suite may add (a measured curve's band, records' intervals over seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from scalewise.validation import overview
from scalewise.validation.report import load


def _write(folder: Path, records: list[dict], curves: pd.DataFrame, agreement: list[dict]) -> Path:
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"title": "t", "agreement": agreement}))
    (folder / "report.json").write_text(json.dumps(records))
    curves.to_csv(folder / "curves.csv.gz", index=False)
    return folder


def _curve(layer: str, source: str, values: np.ndarray, **extra) -> pd.DataFrame:
    return pd.DataFrame({"experiment": "e", "optimizer": "sgd", "layer": layer,
                         "quantity": "norm_sq", "source": source, "step": np.arange(len(values)),
                         "value": values, **extra})


def _report(tmp_path: Path):
    steps = np.arange(5.0)
    curves = pd.concat([
        _curve("a", "measured", 1 + steps, low=0.5 + steps, high=1.5 + steps),
        _curve("a", "predicted", 1 + steps),
        _curve("b", "measured", 2 * (1 + steps)),  # twice its prediction
        _curve("b", "predicted", 1 + steps),
        _curve("c", "measured", 1.5 * (1 + steps)),
        _curve("c", "predicted", 1 + steps),
    ], ignore_index=True)
    records = [{"experiment": "e", "optimizer": "sgd", "layer": "a", "quantity": "norm_sq",
                "predicted": 1.0, "measured": 1.1, "rel_error": 0.1, "low": 1.0, "high": 1.2,
                "seeds": 3}]
    agreement = [{"experiment": "e", "optimizer": "sgd", "quantity": "norm_sq",
                  "statistic": "max", "value": 0.1, "limit": 0.05, "holds": False}]
    return load(_write(tmp_path / "report", records, curves, agreement))


def test_summary_counts_bounds_records_and_curves(tmp_path: Path) -> None:
    summary = overview.summary(_report(tmp_path))
    row = summary.iloc[0]
    assert row["bounds held"] == "0 of 1" and row["records"] == 1 and row["curves"] == 3
    assert row["worst bound"] == 0.1 and row["its limit"] == 0.05


def test_the_typical_curve_is_shown_first(tmp_path: Path) -> None:
    table = overview.curve_table(_report(tmp_path), "e")
    assert table["compared"].all()
    assert dict(zip(table["layer"], table["median_miss"])) == {"a": 0.0, "b": 1.0, "c": 0.5}
    assert overview.default_curve(table)["layer"] == "c"  # the median miss, not the best


def test_headline_draws_the_measured_band_and_the_spread_over_curves(tmp_path: Path) -> None:
    comparison = overview.headline(_report(tmp_path), "e", "norm_sq", "sgd", "a")
    table = comparison.table
    measured = table[(table["panel"] == "norm_sq · sgd · a") & (table["role"] == "data")]
    assert np.allclose(measured["high"] - measured["low"], 1.0)
    spread = table[table["panel"].str.startswith("measured / predicted, 3 curves")]
    median = spread[spread["role"] == "data"]["value"]
    assert np.allclose(median, 1.5)  # the middle of the ratios 1, 1.5, 2
    assert comparison.final_ratios()["ratio"].iloc[0] == 1.0


def test_records_keep_the_fields_a_suite_adds(tmp_path: Path) -> None:
    report = _report(tmp_path)
    table = overview.records_table(report, "e")
    assert list(table.columns[-3:]) == ["low", "high", "seeds"]
    assert table[["low", "high", "seeds"]].iloc[0].tolist() == [1.0, 1.2, 3]


def test_records_without_extra_fields_have_the_required_columns(tmp_path: Path) -> None:
    folder = _write(tmp_path / "plain", [], pd.DataFrame(columns=list(_curve("a", "m", [1.0]))),
                    [])
    report = load(folder)
    assert list(report.records.columns) == ["experiment", "optimizer", "layer", "quantity",
                                            "predicted", "measured", "rel_error"]
    assert overview.summary(report).empty
