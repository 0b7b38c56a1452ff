"""Sweeps on a real Ray cluster: a head node started here on 127.0.0.1 only, the command line
pointed at it with ``--address``, and the one-line answers when a cluster cannot be used.

Every process of the head node is started in a session of its own and stopped by its id at the
end; a process of that session still alive then fails the test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from loopback import LOOPBACK, free_port

from scalewise.models import override
from scalewise.models.presets import preset
from scalewise.models.store import RunStatus, RunStore
from scalewise.sweep import CONNECT_BOUND_S, ClusterError, expand, load_spec, run_trial
from scalewise.sweep.cluster import check_cluster, check_joined

pytest.importorskip("ray")

START_BOUND_S = 120.0  # a head node's start on 2 busy cores
STOP_BOUND_S = 30.0
# importing torch and Ray in a fresh interpreter, on top of the bound of the connection check
IMPORT_ALLOWANCE_S = 20.0
SPEC_YAML = """\
name: {name}
preset: teacher-mlp-sgd
base: {{steps: 4, model.width: 8, data.train_size: 64, data.test_size: 32,
       data.batch_size: 32, eval_every: 0, costly_probe_every: 0, probe_every: 0,
       checkpoint_every: 0, device: cpu{extra}}}
axes: {{optimizer.name: {optimizers}}}
seeds: {seeds}
"""


def spec_file(folder: Path, name: str = "one", *, optimizers: str = "[sgd]",
              seeds: str = "[0]", extra: str = "") -> Path:
    """A small sweep spec written to ``folder/name.yaml`` (one trial by default)."""
    path = folder / f"{name}.yaml"
    path.write_text(SPEC_YAML.format(name=name, optimizers=optimizers, seeds=seeds, extra=extra))
    return path


def ray_env(token: Path) -> dict[str, str]:
    """The environment of every Ray process here: loopback kept, the token at ``token``."""
    return {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_TOKEN_PATH": str(token)}


def session_members(session: int) -> set[int]:
    """The ids of the live processes of ``session`` (field 6 of ``/proc/PID/stat``)."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while listed
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.add(int(stat.parent.name))
    return members


@dataclass(frozen=True)
class Head:
    """A Ray head node started by this test: its ``address``, the token file it requires and
    the id of its ``ray start`` process, which leads a session of its own."""

    address: str
    token: Path
    pid: int
    folder: Path

    def env(self, **changes: str) -> dict[str, str]:
        return {**ray_env(self.token), **changes}


def start_head(folder: Path) -> tuple[subprocess.Popen, Head]:
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    port = free_port()
    command = [shutil.which("ray") or "ray", "start", "--head", "--block",
               f"--node-ip-address={LOOPBACK}", f"--port={port}", "--num-cpus=2",
               "--include-dashboard=false", f"--dashboard-port={free_port()}",
               f"--temp-dir={folder / 'ray'}", "--disable-usage-stats"]
    log = (folder / "head.log").open("w")
    process = subprocess.Popen(command, env={**ray_env(token), "RAY_AUTH_MODE": "token"},
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(f"{LOOPBACK}:{port}", token, process.pid, folder)
    deadline = time.monotonic() + START_BOUND_S
    while "Ray runtime started" not in (folder / "head.log").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_head(process, head)
            pytest.fail(f"the Ray head did not start:\n{(folder / 'head.log').read_text()}")
        time.sleep(0.5)
    return process, head


def stop_head(process: subprocess.Popen, head: Head) -> None:
    """Stop the head's ``ray start`` (it stops the processes it started), then any process of
    its session left over, each by its id; fail if one survives."""
    started = session_members(head.pid) | {head.pid}
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    deadline = time.monotonic() + STOP_BOUND_S
    while (left := session_members(head.pid) & started) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"Ray processes left running after the head stopped: {sorted(left)}"


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    # short: Ray's socket paths under the temp dir must fit in 107 characters
    folder = Path(tempfile.mkdtemp(prefix="sw-head-", dir="/tmp"))
    process, started = start_head(folder)
    try:
        yield started
    finally:
        stop_head(process, started)
        shutil.rmtree(folder, ignore_errors=True)


def scalewise(argv: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The command line in a fresh interpreter, as a user runs it."""
    main = "import sys; from scalewise.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", main, *argv], env=dict(env),
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def test_a_sweep_runs_on_a_local_cluster_and_is_stored(head: Head, tmp_path: Path) -> None:
    grid = spec_file(tmp_path, "grid", optimizers="[sgd, adam]", seeds="[0, 1]")
    argv = ["sweep", str(grid), "--store", str(tmp_path / "s.sqlite"), "--address", head.address]
    done = scalewise(argv, head.env(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "4 trials run (0 not completed), 0 already completed" in done.stdout
    trials = {t.run_id for t in expand(load_spec(grid))}
    with RunStore(tmp_path / "s.sqlite") as store:
        runs = store.runs()
        assert set(runs["id"]) == trials and (runs["status"] == "completed").all()
        for run_id in trials:
            run = store[run_id]
            assert run.metrics["step"].max() == 4
            assert f"trained on {socket.gethostname()}" in run.log
            assert "completed 4 steps" in run.log
    again = scalewise(argv, head.env(), tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 trials run (0 not completed), 4 already completed" in again.stdout


def test_missing_data_fails_the_trial_on_the_worker_naming_the_folder(
        head: Head, tmp_path: Path) -> None:
    missing = tmp_path / "no-cifar"
    cifar = spec_file(tmp_path, "cifar", extra=f", data.name: cifar10, data.root: {missing}")
    store = tmp_path / "s.sqlite"
    done = scalewise(["sweep", str(cifar), "--store", str(store), "--address", head.address],
                     head.env(), tmp_path)
    assert done.returncode == 1, done.stderr  # a trial did not complete
    assert "1 trials run (1 not completed)" in done.stdout
    (line,) = [x for x in done.stdout.splitlines() if " failed " in x]
    assert f"could not start on {socket.gethostname()}" in line
    assert f"data.root = {str(missing)!r}" in line and "CIFAR-10 files are missing" in line
    with RunStore(store) as runs:
        assert (runs.runs()["status"] == RunStatus.FAILED.value).all()


def one_line_error(done: subprocess.CompletedProcess, elapsed: float) -> str:
    """The one line a refused cluster gives: exit status 2, no traceback, in bounded time."""
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert elapsed < CONNECT_BOUND_S + IMPORT_ALLOWANCE_S
    return lines[0]


@pytest.mark.parametrize("token", ["another", "none"])
def test_a_cluster_refusing_the_token_is_one_line(head: Head, tmp_path: Path,
                                                  token: str) -> None:
    spec_file(tmp_path)
    other = tmp_path / "other_token"
    other.write_text(secrets.token_hex(32))
    env = (head.env(RAY_AUTH_TOKEN_PATH=str(other)) if token == "another"
           else head.env(RAY_AUTH_MODE="disabled"))
    began = time.monotonic()
    done = scalewise(["sweep", "one.yaml", "--store", str(tmp_path / "s.sqlite"),
                      "--address", head.address], env, tmp_path)
    line = one_line_error(done, time.monotonic() - began)
    assert f"the Ray cluster at {head.address} refused this machine's authentication" in line
    assert "ray get-auth-token" in line
    assert not (tmp_path / "s.sqlite").exists() or RunStore(tmp_path / "s.sqlite").runs().empty


def test_no_cluster_at_the_address_is_one_line_in_bounded_time(tmp_path: Path) -> None:
    address = f"{LOOPBACK}:{free_port()}"  # nothing listens there
    began = time.monotonic()
    with pytest.raises(ClusterError, match=rf"^no Ray cluster at {address} \(Connection "
                                           rf"refused\): start a head node there"):
        check_cluster(address)
    assert time.monotonic() - began < CONNECT_BOUND_S
    spec_file(tmp_path)
    began = time.monotonic()
    done = scalewise(["sweep", "one.yaml", "--store", str(tmp_path / "s.sqlite"),
                      "--address", address], ray_env(tmp_path / "unused"), tmp_path)
    assert "no Ray cluster at" in one_line_error(done, time.monotonic() - began)


def test_a_port_without_a_ray_head_is_one_line_in_bounded_time(tmp_path: Path) -> None:
    with socket.socket() as server:  # accepts connections, never answers
        server.bind((LOOPBACK, 0))
        server.listen()
        address = f"{LOOPBACK}:{server.getsockname()[1]}"
        spec_file(tmp_path)
        began = time.monotonic()
        done = scalewise(["sweep", "one.yaml", "--store", str(tmp_path / "s.sqlite"),
                          "--address", address], ray_env(tmp_path / "unused"), tmp_path)
    line = one_line_error(done, time.monotonic() - began)
    assert f"{address} accepts connections but no Ray head node answered" in line


def test_in_process_ray_ignores_a_remembered_dead_cluster(tmp_path: Path) -> None:
    # RAY_ADDRESS stands for Ray's record of a cluster whose head is gone: ray.init() without
    # an address would try to join it; the in-process runner asks for a local instance
    spec_file(tmp_path)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_ADDRESS": f"{LOOPBACK}:{free_port()}"}
    done = scalewise(["sweep", "one.yaml", "--store", str(tmp_path / "s.sqlite"),
                      "--num-cpus", "1"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 trials run (0 not completed)" in done.stdout


def test_missing_data_is_a_failed_trial_naming_folder_and_host(tmp_path: Path) -> None:
    changes = {"data.name": "cifar10", "data.root": str(tmp_path / "gone"), "device": "cpu"}
    config = override(preset("teacher-mlp-sgd"), changes)
    result = run_trial(config.to_json(), config.run_id())
    assert result.status is RunStatus.FAILED and not result.started
    assert result.reason.startswith(f"could not start on {socket.gethostname()}: ")
    assert str(tmp_path / "gone") in result.reason and len(result.reason.splitlines()) == 1


def test_ray_joined_to_another_cluster_is_refused() -> None:
    joined = SimpleNamespace(get_runtime_context=lambda: SimpleNamespace(
        gcs_address=f"{LOOPBACK}:6390"))
    check_joined(joined, "localhost:6390")  # the same cluster, named otherwise
    check_joined(joined, None)
    with pytest.raises(ClusterError, match=rf"already joined to {LOOPBACK}:6390, not "
                                           rf"{LOOPBACK}:6391"):
        check_joined(joined, f"{LOOPBACK}:6391")


def test_token_mode_set_after_ray_was_imported_reaches_ray(tmp_path: Path) -> None:
    # Ray loaded before the runner set RAY_AUTH_MODE (here: while Ray looked missing) must still
    # see token mode, or its in-process head requires a token that its own driver never sends
    code = """if True:
        import sys
        import ray
        from ray._raylet import AuthenticationMode, get_authentication_mode
        from scalewise.sweep import cluster
        sys.modules["ray"] = None
        try:
            cluster.import_ray()
        except ModuleNotFoundError:
            pass
        sys.modules["ray"] = ray
        cluster.import_ray()
        print(get_authentication_mode() == AuthenticationMode.TOKEN)
    """
    env = {k: v for k, v in ray_env(tmp_path / "token").items() if k != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "True", done.stderr
