"""The validation suites train through the sweeps' trial runner: on an in-process Ray by
default, one after another with ``workers=1``, on a cluster with ``address``; completed runs are
reused, failed runs recorded and reported, runs that cannot start raise once the others finished.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scalewise.cli import main as cli
from scalewise.models import override
from scalewise.models.config import TrainConfig
from scalewise.models.presets import preset
from scalewise.models.store import RunStatus, RunStore
from scalewise.validation.suite import Settings, Size, train_runs

TINY = {"steps": 4, "model.width": 8, "data.train_size": 64, "data.test_size": 32,
        "data.batch_size": 32, "eval_every": 2, "costly_probe_every": 0, "probe_every": 0,
        "checkpoint_every": 0, "device": "cpu"}


def tiny(**changes: Any) -> TrainConfig:
    return override(preset("teacher-mlp-sgd"), {**TINY, **changes})


def settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(size=Size.SMOKE, store=tmp_path / "runs.sqlite", progress=False, **changes)


def test_ray_and_sequential_train_the_same_runs(ray_local: Any, tmp_path: Path) -> None:
    configs = [tiny(seed=0), tiny(seed=1), tiny(**{"optimizer.name": "adam"})]
    on_ray = train_runs(configs, settings(tmp_path / "ray"), desc="ray")
    one_by_one = train_runs(configs, settings(tmp_path / "seq", workers=1), desc="seq")
    assert [r.id for r in on_ray] == [c.run_id() for c in configs] == [r.id for r in one_by_one]
    for a, b in zip(on_ray, one_by_one, strict=True):
        assert a.status is b.status is RunStatus.COMPLETED
        pd.testing.assert_frame_equal(a.metrics, b.metrics)
    assert f"trained on {socket.gethostname()}" in on_ray[0].log


def test_completed_runs_are_reused_and_failed_runs_reported_and_retried(
        ray_local: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tiny(), tiny(**{"optimizer.lr": 1e30})
    first = train_runs([good, bad, good], settings(tmp_path), desc="first")
    assert [r.status for r in first] == [RunStatus.COMPLETED, RunStatus.FAILED,
                                         RunStatus.COMPLETED]
    assert "diverged" in first[1].log
    err = capsys.readouterr().err
    assert f"first: run {bad.run_id()} failed: " in err and good.run_id() not in err
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.set_status(good.run_id(), RunStatus.COMPLETED, "marked by the test: reused")
    again = train_runs([good, bad], settings(tmp_path), desc="again")
    assert again[0].log.endswith("marked by the test: reused\n")  # not trained again
    assert again[1].status is RunStatus.FAILED and "diverged" in again[1].log
    assert f"again: run {bad.run_id()} failed" in capsys.readouterr().err


def test_a_run_that_cannot_start_raises_after_the_others_finish(ray_local: Any,
                                                                tmp_path: Path) -> None:
    good = tiny()
    missing = tiny(**{"data.name": "cifar10", "data.root": str(tmp_path / "gone")})
    with pytest.raises(ValueError, match=rf"run {missing.run_id()} could not start on "
                                         rf"{socket.gethostname()}: .*data.root = "):
        train_runs([missing, good], settings(tmp_path), desc="data")
    with RunStore(tmp_path / "runs.sqlite") as store:
        assert store[good.run_id()].status is RunStatus.COMPLETED
        assert store[missing.run_id()].status is RunStatus.FAILED


@pytest.mark.parametrize("changes, message", [
    ({"workers": 0}, "workers = 0 is invalid"),
    ({"address": "nowhere"}, "address = 'nowhere' is invalid; allowed: HOST:PORT"),
    ({"address": "127.0.0.1:6379", "workers": 2}, "num_cpus = 2 is invalid"),
    ({"workers": 2, "device": "cuda:1"}, "device = 'cuda:1' is invalid"),
])
def test_bad_worker_settings_are_refused(tmp_path: Path, changes: dict[str, Any],
                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(tmp_path, **changes)


def test_validate_against_no_cluster_is_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    argv = ["validate", "effective-lr", "--size", "smoke", "--no-progress", "--address", address,
            "--store", str(tmp_path / "runs.sqlite"), "--out", str(tmp_path / "report")]
    assert cli(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"error: no Ray cluster at {address} ")
