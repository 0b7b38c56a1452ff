"""The SQLite run store: round trips, several writer processes at once, corrupt files, export."""

from __future__ import annotations

import importlib.util
import math
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from scalewise.models.config import TrainConfig, override
from scalewise.models.store import DEFAULT_STORE, STORE_ENV, RunStatus, RunStore, StoreError

CONFIG = override(TrainConfig(), {"steps": 7, "name": "store-test"})


def test_run_and_metrics_round_trip(tmp_path: Path) -> None:
    rows = [(0, "", "loss", 2.5), (0, "hidden1", "norm_sq", 1.0), (1, "", "loss", math.nan),
            (1, "hidden1", "norm_sq", math.inf)]
    with RunStore(tmp_path / "s.sqlite") as store:
        store.begin("abc", CONFIG, fresh=True, message="started")
        store.add_metrics("abc", rows)
        store.set_status("abc", RunStatus.COMPLETED, "completed")
        run = store["abc"]
    assert (run.id, run.name, run.status) == ("abc", "store-test", RunStatus.COMPLETED)
    assert run.config == CONFIG
    assert run.log.splitlines()[0].endswith(" started") and run.log.endswith(" completed\n")
    assert run.code_version.startswith("0.")
    assert list(run.metrics.columns) == ["step", "layer", "name", "value"]
    assert [str(t) for t in run.metrics.dtypes] == ["int64", "str", "str", "float64"]
    expected = pd.DataFrame(rows, columns=["step", "layer", "name", "value"]).astype(
        {"layer": str, "name": str})
    pd.testing.assert_frame_equal(run.metrics, expected, check_exact=True)  # NaN comes back NaN


def test_begin_keeps_or_forgets_history(tmp_path: Path) -> None:
    with RunStore(tmp_path / "s.sqlite") as store:
        store.begin("r", CONFIG, fresh=True, message="first")
        store.add_metrics("r", [(s, "", "loss", float(s)) for s in range(5)])
        store.delete_metrics("r", from_step=3)
        store.begin("r", CONFIG, fresh=False, message="second")
        kept = store["r"]
        store.begin("r", CONFIG, fresh=True, message="third")
        fresh = store["r"]
    assert kept.metrics["step"].tolist() == [0, 1, 2]
    assert "first" in kept.log and "second" in kept.log and kept.status is RunStatus.RUNNING
    assert fresh.metrics.empty and "first" not in fresh.log


def test_ids_resolve_by_unique_prefix(tmp_path: Path) -> None:
    with RunStore(tmp_path / "s.sqlite") as store:
        for run_id in ("a1b2", "a1c3", "ff00", "ff001"):
            store.begin(run_id, CONFIG, fresh=True, message="started")
        assert store.resolve("ff00") == "ff00" and store["a1c"].id == "a1c3"  # exact id wins
        with pytest.raises(StoreError, match="'a1': 2 runs"):
            store.resolve("a1")
        with pytest.raises(StoreError, match="'zz': no run"):
            store.resolve("zz")
        assert store.get("zz") is None and store.status("zz") is None
        assert store.status("ff00") == (CONFIG, RunStatus.RUNNING)
        assert store.runs()["id"].tolist() == sorted(["a1b2", "a1c3", "ff00", "ff001"])


def test_path_comes_from_argument_env_or_default(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STORE_ENV, raising=False)
    with RunStore() as store:
        assert store.path == tmp_path / DEFAULT_STORE and store.path.is_file()
        assert store.checkpoint_path("x") == tmp_path / "runs" / "checkpoints" / "x.pt"
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "env" / "e.sqlite"))
    with RunStore() as store:
        assert store.path == tmp_path / "env" / "e.sqlite"
    with RunStore(tmp_path / "arg.sqlite") as store:
        assert store.path == tmp_path / "arg.sqlite"


@pytest.mark.parametrize(
    "content",
    [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["text-file", "damaged-header"],
)
def test_corrupt_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=r"broken.sqlite is not a readable scalewise run store"):
        RunStore(path)


def test_another_sqlite_file_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE runs (id TEXT, colour TEXT)")
    with pytest.raises(StoreError, match="not a readable scalewise run store"):
        RunStore(path)


WRITERS, BATCHES, ROWS = 4, 15, 40


def _write_concurrently(path: str, writer: int) -> None:
    """One writer process: its own run, and rows in a run shared by every writer."""
    with RunStore(path) as store:
        store.begin(f"w{writer}", CONFIG, fresh=True, message="started")
        for batch in range(BATCHES):
            rows = [(batch, f"w{writer}", "x", float(i)) for i in range(ROWS)]
            store.add_metrics(f"w{writer}", rows)
            store.add_metrics("shared", rows)
            store.set_status(f"w{writer}", RunStatus.RUNNING, f"batch {batch}")
        store.set_status(f"w{writer}", RunStatus.COMPLETED, "completed")


def test_several_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with RunStore(path) as store:
        store.begin("shared", CONFIG, fresh=True, message="started")
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    processes = [context.Process(target=_write_concurrently, args=(str(path), w))
                 for w in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * WRITERS
    with RunStore(path) as store:
        shared = store["shared"].metrics
        for writer in range(WRITERS):
            run = store[f"w{writer}"]
            assert run.status is RunStatus.COMPLETED and len(run.metrics) == BATCHES * ROWS
            assert run.log.count("batch ") == BATCHES
    assert len(shared) == WRITERS * BATCHES * ROWS
    counts = shared.groupby("layer").size()
    assert counts.tolist() == [BATCHES * ROWS] * WRITERS


def _stored_two_runs(path: Path) -> RunStore:
    store = RunStore(path)
    for run_id, offset in (("aa11", 0.0), ("bb22", 10.0)):
        store.begin(run_id, CONFIG, fresh=True, message="started")
        store.add_metrics(run_id, [(s, "", "loss", offset + s) for s in range(3)])
    return store


@pytest.mark.parametrize("suffix", [".csv", ".parquet"], ids=["csv", "parquet"])
def test_export_writes_long_form_with_the_run(tmp_path: Path, suffix: str) -> None:
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        pytest.skip("pyarrow is not installed")
    with _stored_two_runs(tmp_path / "s.sqlite") as store:
        path = store.export(tmp_path / f"out{suffix}", ["aa", "bb22"])
    frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert list(frame.columns) == ["run", "step", "layer", "name", "value"]
    assert frame["run"].tolist() == ["aa11"] * 3 + ["bb22"] * 3
    assert frame["value"].tolist() == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]


def test_export_refuses_unknown_format(tmp_path: Path) -> None:
    with _stored_two_runs(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match=r"path = '.*out.xlsx' is invalid; allowed: .*\.csv"):
            store.export(tmp_path / "out.xlsx", ["aa11"])


def test_parquet_without_pyarrow_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with _stored_two_runs(tmp_path / "s.sqlite") as store:
        with pytest.raises(ModuleNotFoundError, match="needs pyarrow"):
            store.export(tmp_path / "out.parquet", ["aa11"])
