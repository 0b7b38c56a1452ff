"""validation.effective_lr: the helpers on exact ground truth, the mean-field comparison of
validation.comparison, and a smoke run of the driven, equilibrium, norm-growth and step-decay
experiments (digits, plus a tiny fake CIFAR-10 folder for the ResNet path) written as a report
whose every bound holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_models_data import write_cifar

from scalewise import models
from scalewise.models.store import RunStore
from scalewise.theory import equilibrium as eq
from scalewise.validation import comparison
from scalewise.validation.effective_lr import driven, equilibrium, norm_growth, runs, step_decay
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import RECORD_FIELDS, Report, load, spread_steps
from scalewise.validation.suite import Settings, Size

MODULES = (driven, equilibrium, norm_growth, step_decay)
EXPERIMENTS = (driven.driven, equilibrium.equilibrium, norm_growth.norm_growth,
               step_decay.step_decay)


def test_fit_growth_k0_recovers_the_sqrt_law_exactly() -> None:
    k0, x0, steps = 437.0, 0.3, 2000
    x = eq.growth_norm_sq(np.arange(steps), x0, 1.0, np.sqrt(x0**2 / (2 * k0)))
    assert norm_growth.fit_growth_k0(x) == pytest.approx(k0, rel=1e-10)


def test_fit_growth_k0_matches_theory_on_the_exact_recurrence() -> None:
    # the discrete recurrence grows x^2 a little faster than the continuous law (identity
    # norm_growth_discrete_lower_bound): the fitted k0 is below theory's by < 1% here
    lr, g, x0 = 0.1, 0.5, 1.0
    x = [x0]
    for _ in range(3000):
        x.append(float(eq.norm_sq_step(x[-1], lr, 0.0, g)))
    fitted = norm_growth.fit_growth_k0(np.array(x))
    assert fitted <= eq.growth_k0(x0, lr, g)
    assert fitted == pytest.approx(eq.growth_k0(x0, lr, g), rel=1e-2)


def test_settling_step_of_an_exponential_approach() -> None:
    # x_k = 1 + 3 r^k settles (within 10% of its tail mean ~1) at the first k with 3 r^k <= 0.1
    r = 0.9
    x = 1 + 3 * r ** np.arange(400)
    expected = int(np.ceil(np.log(0.1 / 3) / np.log(r)))
    assert equilibrium.settling_step(x) in (expected - 1, expected, expected + 1)
    assert equilibrium.settling_step(np.ones(10)) == 0


def test_records_of_a_curve_span_the_run() -> None:
    table = pd.DataFrame({"step": np.arange(1200), "layer": "h", "quantity": "norm_sq",
                          "source": "measured", "value": np.linspace(1.0, 2.0, 1200)})
    curve = runs.series(table, "h", "norm_sq", "measured")
    steps = spread_steps(0, 1199, runs.RECORD_POINTS)
    records = runs.curve_records("driven", "sgd", "mlp/h", "norm_sq", curve * 1.01, curve, steps)
    assert [r.quantity for r in records][::11] == ["norm_sq@0", "norm_sq@1199"]
    assert len(records) == runs.RECORD_POINTS
    assert all(r.rel_error == pytest.approx(0.01) for r in records)


def test_markdown_table_has_one_row_per_frame_row() -> None:
    text = markdown_table(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}), index=False)
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 | y |"]


def test_mean_field_comparison_needs_the_unit_dimensions(tmp_path: Path) -> None:
    config = runs.config(runs.NETWORKS["mlp"], runs.SETTINGS[3], True, 20, 0)
    with RunStore(tmp_path / "store.sqlite") as store:
        run = models.train(config, store=store, progress=False)
    with pytest.raises(ValueError, match="plain SGD only"):
        comparison.compare_run(run)
    with pytest.raises(ValueError, match="dims lacks the layers"):
        comparison.compare_run(run, mean_field=True)
    dims = comparison.unit_dims(config)
    assert dims == {"hidden1": 64, "hidden2": 64, "output": 64}
    table = comparison.compare_run(run, mean_field=True, dims=dims)
    assert set(table["source"]) == {"measured", "driven", "equilibrium"}
    assert np.isfinite(table["value"]).all()


def test_smoke_report_holds_its_bounds(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar", per_batch=30, rng=np.random.default_rng(0))
    settings = Settings(size=Size.SMOKE, store=tmp_path / "runs.sqlite",
                        data_root=tmp_path / "cifar", progress=False)
    report = Report("effective-lr", "smoke")
    for experiment in EXPERIMENTS:
        experiment(report, settings)
    loaded = load(report.write(tmp_path / "report"))
    assert list(loaded.records.columns) == list(RECORD_FIELDS)
    assert set(loaded.records["experiment"]) == {m.EXPERIMENT for m in MODULES}
    assert loaded.records["layer"].str.startswith("resnet/").any()
    assert len(loaded.index["sections"]) == 4 and loaded.index["runs"]
    failed = [r for r in report.agreement() if not r.holds]
    assert report.bounds and not failed, failed
    assert json.loads((tmp_path / "report" / "index.json").read_text())["agreement"]
