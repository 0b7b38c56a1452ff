"""Fault injection against the run store, by family: store paths that cannot be opened, damage
inside the data pages and 0-byte files, unreadable checkpoints, concurrent writers, a full disk
(through a file-size limit), ``kill -9`` at several points, and every store state in the
explorer. Each fault must get a one-line answer (exit status 3 from the CLI, a message in the
explorer), nothing may be written into a store that failed its check, and nothing may be lost
from one that passed."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from scalewise.cli import main
from scalewise.cli.exits import FAULT, OK
from scalewise.models import store_file
from scalewise.models.config import TrainConfig, override
from scalewise.models.store import STORE_ENV, RunBusy, RunStatus, RunStore, StoreFault
from scalewise.models.training import CheckpointWarning, train

POSIX = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

TINY = {"data.name": "teacher", "model.width": 8, "data.batch_size": 32,
        "data.train_size": 256, "data.test_size": 64, "steps": 12, "checkpoint_every": 4,
        "eval_every": 5, "costly_probe_every": 0, "probe_every": 2, "device": "cpu"}
CONFIG = override(TrainConfig(), TINY)
TRAIN_FLAGS = ["--dataset", "teacher", "--width", "8", "--batch-size", "32", "--train-size",
               "256", "--test-size", "64", "--steps", "12", "--checkpoint-every", "4",
               "--eval-every", "5", "--costly-probe-every", "0", "--probe-every", "2",
               "--device", "cpu", "--no-progress"]


def answer(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The exit status, stdout and stderr of ``scalewise ARGV`` run in this process."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, status: int = FAULT, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and all(word in lines[0] for word in words), err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored_run(path: Path, rows: int = 4000) -> str:
    """A store at ``path`` with one completed run of ``rows`` metric rows (many pages)."""
    with RunStore(path) as store:
        store.begin("r1", CONFIG, fresh=True, message="started")
        store.add_metrics("r1", [(k, "", f"m{k % 7}", k / 3) for k in range(rows)])
        store.set_status("r1", RunStatus.COMPLETED, "completed")
    return "r1"


def damage_pages(path: Path) -> None:
    """Overwrite one b-tree page in the middle of the file, keeping its header (page 1) and its
    size: damage that only a check of the pages finds."""
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    middle = (len(data) // page) // 2
    data[middle * page:(middle + 1) * page] = b"\xa5" * page
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- 1. paths that cannot be opened

def unopenable(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return {"folder": tmp_path, "under-a-file": a_file / "s.sqlite",
            "proc": Path("/proc/scalewise-test/s.sqlite")}


COMMANDS = {
    "train": ["train", *TRAIN_FLAGS, "--store"],
    "runs-ls": ["runs", "ls", "--store"],
    "runs-show": ["runs", "show", "r1", "--store"],
    "runs-export": ["runs", "export", "r1", "--out", "x.csv", "--store"],
    "sweep-status": ["sweep", "status", "SPEC", "--store"],
}
CREATING = ("train", "sweep-status")  # the commands that make a store where none is
SPEC = "name: grid\npreset: teacher-mlp-sgd\nbase: {steps: 3}\nseeds: [0, 1]\n"


def command_line(command: str, store: Path, tmp_path: Path) -> list[str]:
    """``scalewise COMMAND ... --store STORE``, a sweep's spec written to ``tmp_path``."""
    (tmp_path / "grid.yaml").write_text(SPEC)
    return [str(tmp_path / "grid.yaml") if word == "SPEC" else word
            for word in COMMANDS[command]] + [str(store)]


@pytest.mark.parametrize("where", ["folder", "under-a-file", "proc"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_unopenable_store_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           where: str, command: str) -> None:
    path = unopenable(tmp_path)[where]
    if command not in CREATING and not path.exists():
        expected = 2  # nothing to list: the same answer as for any missing store
    else:
        expected = FAULT
    code, _, err = answer(command_line(command, path, tmp_path), capsys)
    assert_one_line_error(code, err, expected, str(path))


@pytest.mark.parametrize("where", ["folder", "under-a-file", "proc"])
def test_unopenable_store_path_raises_store_fault(tmp_path: Path, where: str) -> None:
    with pytest.raises(StoreFault, match="run store"):
        RunStore(unopenable(tmp_path)[where])


def test_validate_with_a_folder_as_store_is_one_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = answer(["validate", "effective-lr", "--size", "smoke", "--no-progress",
                           "--out", str(tmp_path / "report"), "--store", str(tmp_path)], capsys)
    assert_one_line_error(code, err, FAULT, "is a folder")


# ---------------------------------------------------------------- 4. damaged pages, 0-byte files

@pytest.mark.parametrize("command", list(COMMANDS))
def test_damaged_pages_are_refused_and_left_untouched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    path = tmp_path / "s.sqlite"
    stored_run(path)
    damage_pages(path)
    before = digest(path)
    monkey_cwd = os.getcwd()
    os.chdir(tmp_path)  # the export's relative output lands in tmp_path
    try:
        code, _, err = answer(command_line(command, path, tmp_path), capsys)
    finally:
        os.chdir(monkey_cwd)
    assert_one_line_error(code, err, FAULT, "damaged")
    assert digest(path) == before and not (tmp_path / "x.csv").exists()


def test_damaged_pages_are_refused_by_the_api(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    stored_run(path)
    damage_pages(path)
    with pytest.raises(StoreFault, match="damaged inside its data pages"):
        RunStore(path)


def test_pages_are_checked_once_per_state_of_the_file(tmp_path: Path) -> None:
    """Reading leaves the file as it was checked, so the next open skips the page check (the
    empty write-ahead log SQLite makes and removes at every open is no change); damage after
    that is still found."""
    path = tmp_path / "s.sqlite"
    stored_run(path)
    for _ in range(2):
        with RunStore(path) as store:
            store["r1"]
        assert store_file._state(path) in store_file._checked
    damage_pages(path)
    with pytest.raises(StoreFault, match="damaged inside its data pages"):
        RunStore(path)


def test_a_changed_value_is_caught_by_the_runs_digest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Damage that keeps every page sound (one value changed behind the store's back)."""
    path = tmp_path / "s.sqlite"
    stored_run(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE metrics SET value = 99 WHERE rowid = 17")
    code, _, err = answer(["runs", "show", "r1", "--store", str(path)], capsys)
    assert_one_line_error(code, err, FAULT, "digest")
    code, out, _ = answer(["runs", "ls", "--store", str(path)], capsys)
    assert code == OK and "r1" in out  # listing reads no metrics: the run is still listed


@pytest.mark.parametrize("command", list(COMMANDS))
def test_zero_byte_store_is_refused_not_taken_for_new(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"")
    code, _, err = answer(command_line(command, path, tmp_path), capsys)
    assert_one_line_error(code, err, FAULT, "0-byte")
    assert path.stat().st_size == 0


def test_a_store_that_passed_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    stored_run(path)
    with RunStore(path) as store:
        frame = store["r1"].metrics
    assert len(frame) == 4000 and frame["value"].iloc[-1] == 3999 / 3


# ---------------------------------------------------------------- 5. unreadable checkpoints

class Planted:
    """Unpickled by an unsafe load, it would write a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran"))


def damage_checkpoint(path: Path, how: str, tmp_path: Path) -> None:
    if how == "garbage":
        path.write_bytes(os.urandom(2048))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "planted":
        torch.save({"config": CONFIG.to_json(), "model": Planted(tmp_path / "ran")}, path)
    elif how == "other-config":
        payload = torch.load(path, weights_only=True)
        torch.save({**payload, "config": override(CONFIG, {"seed": 9}).to_json()}, path)


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "planted", "other-config"])
def test_unreadable_checkpoint_restarts_from_step_0_with_a_warning(tmp_path: Path,
                                                                   how: str) -> None:
    with RunStore(tmp_path / "whole.sqlite") as store:
        whole = train(CONFIG, store=store, progress=False)
    with RunStore(tmp_path / "parts.sqlite") as store:
        def stop(k: int, result: object) -> None:
            if k == 9:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train(CONFIG, store=store, progress=False, on_step=stop)
        damage_checkpoint(store.checkpoint_path(CONFIG.run_id()), how, tmp_path)
        with pytest.warns(CheckpointWarning, match="cannot be read.*restarts from step 0") as seen:
            resumed = train(CONFIG, store=store, progress=False)
    assert "weights_only" not in str(seen[0].message)  # never the advice to load unsafely
    assert not (tmp_path / "ran").exists()
    assert resumed.status is RunStatus.COMPLETED and "restarted from step 0" in resumed.log
    pd.testing.assert_frame_equal(resumed.metrics, whole.metrics, check_exact=True)


def test_unreadable_checkpoint_is_one_warning_line_from_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.sqlite"
    argv = ["train", *TRAIN_FLAGS, "--store", str(store)]
    with RunStore(store) as opened:
        opened.acquire(CONFIG.run_id(), CONFIG, resume=True)
        opened.set_status(CONFIG.run_id(), RunStatus.INTERRUPTED, "stopped")
        opened.checkpoint_path(CONFIG.run_id()).parent.mkdir(parents=True)
        opened.checkpoint_path(CONFIG.run_id()).write_bytes(b"PK\x03\x04 not a checkpoint")
    code, out, err = answer(argv, capsys)
    assert code == OK and "completed" in out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: checkpoint"), err
    assert "weights_only" not in err


def test_unwritable_checkpoint_folder_is_one_line_and_the_run_resumes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.sqlite"
    (tmp_path / "checkpoints").write_text("a file where the checkpoint folder goes")
    argv = ["train", *TRAIN_FLAGS, "--store", str(store)]
    code, _, err = answer(argv, capsys)
    assert_one_line_error(code, err, FAULT, "checkpoint", "could not be written")
    with RunStore(store) as opened:
        assert opened.status(CONFIG.run_id())[1] is RunStatus.INTERRUPTED
    (tmp_path / "checkpoints").unlink()
    code, out, _ = answer(argv, capsys)
    assert code == OK and "completed" in out
    with RunStore(store) as opened:
        pd.testing.assert_frame_equal(opened[CONFIG.run_id()].metrics, whole_run(tmp_path),
                                      check_exact=True)


# ---------------------------------------------------------------- 6. concurrent writers

HELD_TRAIN = """
import sys, time
from pathlib import Path
import torch
from scalewise.models.config import TrainConfig
from scalewise.models.store import RunStore
from scalewise.models.training import train

torch.set_num_threads(1)
config, path, go = TrainConfig.from_json(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

def hold(k, result):  # each step waits for the test to say go
    for _ in range(2400):
        if go.exists():
            return
        time.sleep(0.05)

with RunStore(path) as store:
    run = train(config, store=store, progress=False, on_step=hold)
    print(f"final: {run.id} {run.status.value} {len(run.metrics)}")
"""


def start_training(config: TrainConfig, path: Path, go: Path) -> subprocess.Popen[str]:
    """A process training ``config`` into ``path``, each step held until ``go`` exists."""
    return subprocess.Popen([sys.executable, "-c", HELD_TRAIN, config.to_json(), str(path),
                             str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_until_running(path: Path, run_id: str, process: subprocess.Popen[str]) -> None:
    for _ in range(1200):
        if path.exists():
            with RunStore(path) as store:
                found = store.status(run_id)
            if found is not None and found[1] is RunStatus.RUNNING:
                return
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    raise AssertionError("the first process never started its run")


def whole_run(tmp_path: Path, config: TrainConfig = CONFIG) -> pd.DataFrame:
    with RunStore(tmp_path / "whole.sqlite") as store:
        return train(config, store=store, progress=False).metrics


@POSIX
def test_two_processes_training_the_same_run_write_it_once(tmp_path: Path) -> None:
    path, go = tmp_path / "s.sqlite", tmp_path / "go"
    first = start_training(CONFIG, path, go)
    wait_until_running(path, CONFIG.run_id(), first)
    second = subprocess.Popen(  # the command line, as a user would start it again
        [sys.executable, "-c", CLI_UNDER_LIMIT, str(2**40), "train", *TRAIN_FLAGS, "--store",
         str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiting = second.stderr.readline()  # blocks until the second says it waits
    go.touch()
    (first_out, _), (second_out, second_err) = [process.communicate(timeout=300)
                                                for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], second_err
    assert waiting.startswith("warning: run") and "is being trained by process" in waiting
    assert not second_err.strip()  # the one warning line, nothing more
    assert first_out.count("final: ") == 1 and "completed" in first_out
    assert second_out.count(f"run {CONFIG.run_id()} (unnamed): completed") == 1, second_out
    with RunStore(path) as store:
        stored = store[CONFIG.run_id()]
    assert stored.log.count("started") == 1  # trained once, joined once
    pd.testing.assert_frame_equal(stored.metrics, whole_run(tmp_path), check_exact=True)


@POSIX
def test_a_second_process_that_will_not_wait_is_refused(tmp_path: Path) -> None:
    path, go = tmp_path / "s.sqlite", tmp_path / "go"
    first = start_training(CONFIG, path, go)
    wait_until_running(path, CONFIG.run_id(), first)
    try:
        with RunStore(path) as store, pytest.raises(RunBusy, match="is being trained by"):
            train(CONFIG, store=store, progress=False, wait=False)
    finally:
        go.touch()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    with RunStore(path) as store:
        stored = store[CONFIG.run_id()].metrics
    pd.testing.assert_frame_equal(stored, whole_run(tmp_path), check_exact=True)


@POSIX
def test_processes_training_different_runs_share_a_store(tmp_path: Path) -> None:
    path, go = tmp_path / "s.sqlite", tmp_path / "go"
    go.touch()
    configs = [override(CONFIG, {"seed": seed}) for seed in (1, 2, 3)]
    processes = [start_training(config, path, go) for config in configs]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    with RunStore(path) as store:
        for config in configs:
            run = store[config.run_id()]
            assert run.status is RunStatus.COMPLETED
            assert len(run.metrics) == len(run.metrics.drop_duplicates(["step", "layer", "name"]))


def test_the_cli_refuses_a_held_run_with_no_wait(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.sqlite"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with RunStore(path) as store:
            store.acquire(CONFIG.run_id(), CONFIG, resume=True)
            with sqlite3.connect(path) as connection:  # the lease as that live process holds it
                connection.execute("UPDATE runs SET owner_pid = ?, owner_started = ?, "
                                   "owner_token = 'other'", (holder.pid, _started(holder.pid)))
            store._held.pop(CONFIG.run_id()).stop()
        code, _, err = answer(["train", *TRAIN_FLAGS, "--store", str(path), "--no-wait"], capsys)
        assert_one_line_error(code, err, FAULT, "is being trained by process")
        with RunStore(path) as store:
            assert store.status(CONFIG.run_id())[1] is RunStatus.RUNNING
    finally:
        holder.kill()
        holder.wait()
    with RunStore(path) as store:  # its owner gone, the run shows as interrupted
        assert store.status(CONFIG.run_id())[1] is RunStatus.INTERRUPTED


def _started(pid: int) -> str:
    from scalewise.models.lease import process_started

    return process_started(pid)


# ---------------------------------------------------------------- 7. full disk, kill -9

CLI_UNDER_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
import torch
torch.set_num_threads(1)  # bitwise the run of the test's own process
from scalewise.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits")
@pytest.mark.parametrize("limit_kb, existing", [(16, False), (20, True), (48, False)],
                         ids=["store-creation", "store-opening", "metrics-mid-run"])
def test_full_disk_is_one_line_and_the_run_resumes(tmp_path: Path, limit_kb: int,
                                                   existing: bool) -> None:
    """A file-size limit stands in for a full disk; the first write past it fails: the new
    store (16 KB), the 32 KB shared-memory file of an existing store (20 KB), or a batch of
    metrics into the write-ahead log mid-run (48 KB). The run is then ``interrupted`` (nothing is
    written to a store that could not be opened), and the same command without the limit
    completes it as if nothing had happened."""
    path = tmp_path / "s.sqlite"
    if existing:
        RunStore(path).close()
        before = digest(path)
    argv = ["train", *TRAIN_FLAGS, "--store", str(path)]
    limited = subprocess.run([sys.executable, "-c", CLI_UNDER_LIMIT, str(limit_kb * 1024),
                              *argv], capture_output=True, text=True, timeout=300)
    assert_one_line_error(limited.returncode, limited.stderr, FAULT)
    if existing:
        assert digest(path) == before
    elif limit_kb == 16:
        assert not path.exists()  # no half-made store is left
    else:
        with RunStore(path) as store:
            assert store.status(CONFIG.run_id())[1] is RunStatus.INTERRUPTED
    again = subprocess.run([sys.executable, "-c", CLI_UNDER_LIMIT, str(2**40), *argv],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == OK, again.stderr
    with RunStore(path) as store:
        resumed = store[CONFIG.run_id()]
    pd.testing.assert_frame_equal(resumed.metrics, whole_run(tmp_path), check_exact=True)


KILL_AT = """
import os, signal, sys
import torch
from scalewise.models.config import TrainConfig
from scalewise.models.store import RunStore
from scalewise.models.training import train

torch.set_num_threads(1)
at = int(sys.argv[3])

def kill(k, result):
    if k == at:
        os.kill(os.getpid(), signal.SIGKILL)

with RunStore(sys.argv[2]) as store:
    train(TrainConfig.from_json(sys.argv[1]), store=store, progress=False, on_step=kill)
"""


@POSIX
@pytest.mark.parametrize("step", [0, 4, 11])
def test_kill_9_shows_interrupted_and_resumes_to_the_whole_run(tmp_path: Path,
                                                                step: int) -> None:
    """Killed before the first checkpoint, right after one, and after the last step."""
    path = tmp_path / "s.sqlite"
    killed = subprocess.run([sys.executable, "-c", KILL_AT, CONFIG.to_json(), str(path),
                             str(step)], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with RunStore(path) as store:
        assert store.status(CONFIG.run_id())[1] is RunStatus.INTERRUPTED
        listed = store.runs()
        assert listed["status"].tolist() == ["interrupted"]
        resumed = train(CONFIG, store=store, progress=False)
    assert "taking over from process" in resumed.log
    pd.testing.assert_frame_equal(resumed.metrics, whole_run(tmp_path), check_exact=True)


# ---------------------------------------------------------------- every store state, explorer

def store_state(state: str, path: Path) -> sqlite3.Connection | None:
    """Put the store at ``path`` in ``state``; a connection holding a lock for ``locked``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if state == "empty":
        RunStore(path).close()
    elif state == "zero-byte":
        path.write_bytes(b"")
    elif state == "corrupt-header":
        path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    elif state == "corrupt-pages":
        stored_run(path)
        damage_pages(path)
    elif state == "directory":
        path.mkdir()
    elif state == "locked":  # another program's exclusive lock on a store in rollback mode
        stored_run(path, rows=10)
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("BEGIN EXCLUSIVE")
        return connection
    return None


STORE_STATES = ["missing", "empty", "zero-byte", "corrupt-header", "corrupt-pages", "locked",
                "directory"]


@pytest.mark.parametrize("page", ["measurement", "kfac"])
@pytest.mark.parametrize("state", STORE_STATES)
def test_explorer_shows_every_store_state_without_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str, page: str) -> None:
    from streamlit.testing.v1 import AppTest

    from explorer import computations

    path = tmp_path / "runs" / "store.sqlite"
    monkeypatch.setenv(STORE_ENV, str(path))
    monkeypatch.setattr(computations, "STORE_TIMEOUT", 0.5)
    lock = store_state(state, path)
    try:
        app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                                default_timeout=120)
        app.query_params["page"] = page
        app.run()
        if page == "measurement":  # the user's runs, behind their view of the page
            app.radio[0].set_value("Your runs").run()
    finally:
        if lock is not None:
            lock.close()
    assert not app.exception, [e.value for e in app.exception]
    if page == "measurement" and state not in ("missing", "empty"):
        assert "run store cannot be read" in app.error[0].value
        assert "Traceback" not in app.error[0].value


def test_a_locked_store_is_one_line_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    lock = store_state("locked", path)
    try:
        with pytest.raises(StoreFault, match="stayed locked by another process"):
            RunStore(path, timeout=0.2)
    finally:
        lock.close()
    with RunStore(path) as store:  # the lock gone, the store is whole
        assert len(store["r1"].metrics) == 10

