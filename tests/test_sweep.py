"""Sweeps: spec parsing and grid expansion, trials and their records, status and summary (no Ray
needed); then small sweeps on a local Ray of 2 CPUs: a full grid through the CLI, resume after
an interrupted sweep, a failing trial among good ones."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scalewise.cli import sweep as sweep_command
from scalewise.models.config import Optimizer
from scalewise.models.presets import preset
from scalewise.models.store import RunStatus, RunStore
from scalewise.sweep import (
    RAY_MISSING,
    Trial,
    TrialResult,
    expand,
    load_spec,
    parse_spec,
    record,
    run_sweep,
    run_trial,
    summarize,
    sweep_status,
)

TINY = {"steps": 6, "model.width": 8, "data.train_size": 128, "data.test_size": 64,
        "data.batch_size": 32, "eval_every": 0, "costly_probe_every": 0, "probe_every": 0,
        "checkpoint_every": 0, "optimizer.wd_mode": "l2", "device": "cpu"}
GRID = {"name": "grid", "preset": "teacher-mlp-sgd", "base": TINY,
        "axes": {"optimizer.name": ["sgd", "adam"], "optimizer.weight_decay": [0.0, 1e-3]},
        "seeds": [0, 1], "resources": {"num_cpus": 1}}

GRID_YAML = """\
name: grid
preset: teacher-mlp-sgd
base: {steps: 6, model.width: 8, data.train_size: 128, data.test_size: 64,
       data.batch_size: 32, eval_every: 0, costly_probe_every: 0, probe_every: 0,
       checkpoint_every: 0, optimizer.wd_mode: l2, device: cpu}
axes:
  optimizer.name: [sgd, adam]
  optimizer.weight_decay: [0.0, 1.0e-3]
seeds: [0, 1]
resources: {num_cpus: 1}
"""
GRID_TOML = """\
name = "grid"
preset = "teacher-mlp-sgd"
seeds = [0, 1]
resources = { num_cpus = 1 }
[base]
steps = 6
"model.width" = 8
"data.train_size" = 128
"data.test_size" = 64
"data.batch_size" = 32
eval_every = 0
costly_probe_every = 0
probe_every = 0
checkpoint_every = 0
"optimizer.wd_mode" = "l2"
device = "cpu"
[axes]
"optimizer.name" = ["sgd", "adam"]
"optimizer.weight_decay" = [0.0, 1.0e-3]
"""


def spec_with(**changes: Any) -> dict[str, Any]:
    return {**GRID, **changes}


# ------------------------------------------------------------------------------ spec and grid

def test_grid_is_the_product_of_the_axes_times_the_seeds() -> None:
    trials = expand(parse_spec(GRID))
    points = [(t.config.optimizer.name, t.config.optimizer.weight_decay, t.config.seed)
              for t in trials]
    assert points == [(Optimizer(o), wd, s) for o in ("sgd", "adam")
                      for wd in (0.0, 1e-3) for s in (0, 1)]
    assert len({t.run_id for t in trials}) == 8
    first = trials[0].config
    assert first.name == "grid" and first.steps == 6 and first.model.width == 8
    assert first.optimizer.lr == preset("teacher-mlp-sgd").optimizer.lr  # from the preset


@pytest.mark.parametrize("suffix,text", [(".yaml", GRID_YAML), (".toml", GRID_TOML)],
                         ids=["yaml", "toml"])
def test_spec_files_parse_to_the_same_trials(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"spec{suffix}"
    path.write_text(text)
    spec = load_spec(path)
    assert [t.run_id for t in expand(spec)] == [t.run_id for t in expand(parse_spec(GRID))]


def test_spec_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-sweep.yaml"
    path.write_text("base: {steps: 3}\n")
    spec = load_spec(path)
    assert spec.name == "my-sweep" and spec.seeds == (0,) and len(expand(spec)) == 1


@dataclass(frozen=True)
class BadSpec:
    id: str
    data: Mapping[str, Any]
    message: str


BAD_SPECS = [
    BadSpec("unknown-key", spec_with(grid={}), "grid = {} is invalid; allowed: the spec keys"),
    BadSpec("unknown-preset", spec_with(preset="nope"), "preset = 'nope' is invalid"),
    BadSpec("unknown-field", spec_with(base={"optimizer.learning_rate": 1}),
            "optimizer.learning_rate = 1 is invalid"),
    BadSpec("axis-not-a-list", spec_with(axes={"optimizer.lr": 0.1}),
            "axes.optimizer.lr = 0.1 is invalid; allowed: a non-empty list"),
    BadSpec("empty-axis", spec_with(axes={"optimizer.lr": []}), "axes.optimizer.lr = []"),
    BadSpec("seed-axis", spec_with(axes={"seed": [0, 1]}), "axes.seed"),
    BadSpec("negative-seed", spec_with(seeds=[-1]), "seeds = [-1] is invalid"),
    BadSpec("repeated-seed", spec_with(seeds=[1, 1]), "seeds = [1, 1] is invalid"),
    BadSpec("bad-resource", spec_with(resources={"num_cpus": -1}), "resources.num_cpus = -1"),
    BadSpec("unknown-resource", spec_with(resources={"memory": 1}), "resources.memory = 1"),
    BadSpec("bad-goal", spec_with(goal="best"), "goal = 'best' is invalid; allowed: max or min"),
    BadSpec("repeated-point", spec_with(axes={"optimizer.lr": [0.1, 0.1]}),
            "axes whose points differ (the point optimizer.lr=0.1 gives a config"),
    BadSpec("bad-grid-point", spec_with(axes={"optimizer.name": ["sgd", "adamw"]}),
            "the grid point optimizer.name=adamw (seed 0): optimizer.wd_mode = 'l2'"),
]


@pytest.mark.parametrize("case", BAD_SPECS, ids=[c.id for c in BAD_SPECS])
def test_bad_specs_are_refused_naming_the_key(case: BadSpec) -> None:
    with pytest.raises(ValueError, match=re.escape(case.message)):
        parse_spec(case.data)


@pytest.mark.parametrize("name", ["spec.json", "missing.yaml"], ids=["suffix", "missing"])
def test_bad_spec_files_are_refused(tmp_path: Path, name: str) -> None:
    if name.endswith(".json"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(ValueError, match="spec = .* is invalid"):
        load_spec(tmp_path / name)


# ------------------------------------------------------------------------------ trials, no Ray

def recorded(spec_data: Mapping[str, Any], store: RunStore) -> list[Trial]:
    """The trials of a spec run one after another in this process and recorded in ``store``."""
    trials = expand(parse_spec(spec_data))
    for trial in trials:
        record(store, trial, run_trial(trial.config.to_json(), trial.run_id))
    return trials


def test_recorded_trial_equals_a_direct_run(tmp_path: Path) -> None:
    from scalewise.models.training import train

    trial = expand(parse_spec(spec_with(axes={}, seeds=[3])))[0]
    with RunStore(tmp_path / "sweep.sqlite") as store, RunStore(tmp_path / "direct.sqlite") as d:
        record(store, trial, run_trial(trial.config.to_json(), trial.run_id))
        swept, direct = store[trial.run_id], train(trial.config, store=d, progress=False)
    assert swept.status is RunStatus.COMPLETED and swept.config == trial.config
    pd.testing.assert_frame_equal(swept.metrics, direct.metrics, rtol=0, atol=0)
    assert "worker log" in swept.log and "completed 6 steps" in swept.log


@dataclass(frozen=True)
class Failing:
    id: str
    changes: Mapping[str, Any]
    log: str


FAILING = [
    Failing("diverging-lr", {"optimizer.lr": 1e30}, "diverged"),
    Failing("missing-data", {"data.name": "cifar10", "data.root": "/nonexistent/cifar"},
            "failed before training"),
]


@pytest.mark.parametrize("case", FAILING, ids=[c.id for c in FAILING])
def test_failing_trial_is_a_failed_result_not_an_exception(case: Failing) -> None:
    spec = parse_spec(spec_with(base={**TINY, **case.changes}, axes={}))
    trial = expand(spec)[0]
    result = run_trial(trial.config.to_json(), trial.run_id)
    assert result.status is RunStatus.FAILED and case.log in result.log


def test_status_and_summary_match_the_stored_finals(tmp_path: Path) -> None:
    data = spec_with(base={**TINY, "eval_every": 3},
                     axes={"optimizer.name": ["sgd", "adam"]}, seeds=[0, 1, 2])
    spec = parse_spec(data)
    with RunStore(tmp_path / "s.sqlite") as store:
        assert set(sweep_status(spec, store)["status"]) == {"pending"}
        assert summarize(spec, store).empty
        trials = recorded(data, store)
        status, summary = sweep_status(spec, store), summarize(spec, store)
        finals = {t.run_id: store.metrics(t.run_id).query("name == 'test_accuracy'")
                  ["value"].iloc[-1] for t in trials}
    assert (status["status"] == "completed").all()
    assert dict(zip(status["run"], status["final"])) == finals
    for optimizer, row in summary.set_index("optimizer").iterrows():
        values = [finals[t.run_id] for t in trials if t.config.optimizer.name.value == optimizer]
        np.testing.assert_allclose([row["mean"], row["std"]],
                                   [np.mean(values), np.std(values, ddof=1)], rtol=1e-12)
        assert row["seeds"] == 3 and row["best"]  # the only point of its optimizer


def test_best_marks_the_best_mean_of_each_optimizer(tmp_path: Path) -> None:
    """The ``best`` rule on a store whose finals are written directly (goal max and min)."""
    spec_data = spec_with(axes={"optimizer.name": ["sgd", "adam"],
                                "optimizer.weight_decay": [0.0, 1e-3]}, seeds=[0])
    finals = {("sgd", 0.0): 0.5, ("sgd", 1e-3): 0.7, ("adam", 0.0): 0.9, ("adam", 1e-3): 0.8}
    for goal, best in (("max", {("sgd", 1e-3), ("adam", 0.0)}),
                       ("min", {("sgd", 0.0), ("adam", 1e-3)})):
        spec = parse_spec({**spec_data, "goal": goal})
        with RunStore(tmp_path / f"{goal}.sqlite") as store:
            for trial in expand(spec):
                key = (trial.config.optimizer.name.value, trial.config.optimizer.weight_decay)
                store.begin(trial.run_id, trial.config, fresh=True, message="written")
                store.add_metrics(trial.run_id, [(6, "", "test_accuracy", finals[key])])
                store.set_status(trial.run_id, RunStatus.COMPLETED, "done")
            summary = summarize(spec, store)
        chosen = {(o, wd) for o, wd, b in zip(summary["optimizer"],
                                               summary["optimizer.weight_decay"],
                                               summary["best"]) if b}
        assert chosen == best, goal


def test_without_ray_a_sweep_says_how_to_install_it(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(ModuleNotFoundError, match=r"pip install 'scalewise\[sweep\]'"):
            run_sweep(parse_spec(GRID), store)
        done = spec_with(axes={}, seeds=[0])
        recorded(done, store)
        report = run_sweep(parse_spec(done), store)  # nothing left to run: Ray not needed
    assert not report.executed and len(report.skipped) == 1
    assert "pip install 'scalewise[sweep]'" in RAY_MISSING


# ------------------------------------------------------------------------------ on Ray

def cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scalewise")
    subparsers = parser.add_subparsers(dest="command", required=True)
    sweep_command.register(subparsers)
    subparsers.choices["sweep"].set_defaults(run=sweep_command.run)
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_cli_without_ray_exits_2_with_the_install_hint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    (tmp_path / "grid.yaml").write_text(GRID_YAML)
    assert cli(["sweep", str(tmp_path / "grid.yaml"), "--store", str(tmp_path / "s.db")]) == 2
    assert "pip install 'scalewise[sweep]'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """One in-process Ray of 2 CPUs for the module (sweeps use an initialized Ray as it is)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_small_sweep_through_the_cli(ray_local: Any, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "grid.yaml").write_text(GRID_YAML)
    store, csv = str(tmp_path / "s.sqlite"), tmp_path / "summary.csv"
    argv = ["sweep", str(tmp_path / "grid.yaml"), "--store", store]
    assert cli([*argv, "--summary-csv", str(csv)]) == 0
    assert "8 trials run (0 not completed), 0 already completed" in capsys.readouterr().out
    summary = pd.read_csv(csv)
    assert len(summary) == 4 and (summary["seeds"] == 2).all()
    assert summary.groupby("optimizer")["best"].sum().ge(1).all()

    assert cli(argv) == 0  # again: nothing left to run
    assert "0 trials run (0 not completed), 8 already completed" in capsys.readouterr().out
    for status_argv in (["sweep", "status", *argv[1:]], [*argv, "--status"]):
        assert cli(status_argv) == 0
        assert "8 completed" in capsys.readouterr().out


def test_resume_runs_only_the_missing_and_interrupted_trials(ray_local: Any,
                                                             tmp_path: Path) -> None:
    spec = parse_spec(GRID)
    all_ids = {t.run_id for t in expand(spec)}
    first: list[str] = []

    def interrupt_after_two(trial: Trial, result: TrialResult) -> None:
        first.append(trial.run_id)
        if len(first) == 2:
            raise KeyboardInterrupt

    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(spec, store, on_result=interrupt_after_two)
        stored = store.runs()
        assert sorted(stored["id"]) == sorted(first)  # only what finished was written
        assert (stored["status"] == "completed").all()
        store.set_status(first[0], RunStatus.INTERRUPTED, "marked interrupted by the test")
        report = run_sweep(spec, store)
        assert report.skipped == (first[1],)
        assert set(report.executed) == all_ids - {first[1]}
        assert set(report.executed.values()) == {RunStatus.COMPLETED}
        assert (sweep_status(spec, store)["status"] == "completed").all()


def test_a_trial_bigger_than_the_cluster_is_refused(ray_local: Any, tmp_path: Path) -> None:
    spec = parse_spec(spec_with(resources={"num_cpus": 1, "num_gpus": 1}))
    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match=r"resources.num_gpus = 1.0 is invalid; allowed: "
                                             r"at most 0, the GPUs of the Ray cluster"):
            run_sweep(spec, store)
        assert store.runs().empty


def test_failing_trial_is_recorded_and_the_others_finish(ray_local: Any,
                                                         tmp_path: Path) -> None:
    spec = parse_spec(spec_with(axes={"optimizer.lr": [0.05, 1e30]}, seeds=[0]))
    good, bad = expand(spec)
    with RunStore(tmp_path / "s.sqlite") as store:
        report = run_sweep(spec, store)
        assert report.executed == {good.run_id: RunStatus.COMPLETED,
                                   bad.run_id: RunStatus.FAILED}
        failed = store[bad.run_id]
        assert "diverged" in failed.log and failed.status is RunStatus.FAILED
        assert summarize(spec, store)["seeds"].tolist() == [1]  # only the completed point


def test_the_readme_spec_parses_to_eight_trials(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    (tmp_path / "wd-grid.yaml").write_text(block)
    spec = load_spec(tmp_path / "wd-grid.yaml")
    assert spec.name == "wd-grid" and spec.num_cpus == 1 and len(expand(spec)) == 8
