"""Fault injection against outputs and inputs, by family: exports, figures and reports into
folders that cannot be written, malformed sweep specs, simulations too large to fit, messages
that must name the argument at fault, and planted CIFAR-10 batch files. Each must be answered
in one line (exit status 2 or 3 from the CLI, a ``ValueError`` naming the argument from the
API) before anything is written."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from scalewise import sim
from scalewise.cli import main
from scalewise.cli.exits import BAD_INPUT, FAULT
from scalewise.models.config import DataConfig, TrainConfig, override
from scalewise.models.data import CIFAR10_FOLDER, CIFAR10_TEST, CIFAR10_TRAIN, load_dataset
from scalewise.models.store import RunStatus, RunStore


def answer(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The exit status and stderr of ``scalewise ARGV`` run in this process."""
    code = main(argv)
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, status: int, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and all(word in lines[0] for word in words), err


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("x")
    return path


# ---------------------------------------------------------------- 2. unwritable outputs

@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with one completed run ``r1``."""
    path = tmp_path / "s.sqlite"
    with RunStore(path) as opened:
        opened.begin("r1", override(TrainConfig(), {"steps": 3}), fresh=True, message="started")
        opened.add_metrics("r1", [(k, "", "loss", 1.0 / (k + 1)) for k in range(3)])
        opened.set_status("r1", RunStatus.COMPLETED, "completed")
    return path


EXPORT_TARGETS = {
    "missing-folder": lambda tmp: tmp / "no" / "such" / "folder" / "x.csv",
    "a-folder": lambda tmp: _folder(tmp / "x.csv"),
    "under-a-file": lambda tmp: a_file(tmp) / "x.csv",
    "proc": lambda tmp: Path("/proc/x.csv"),
}


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("target", list(EXPORT_TARGETS))
def test_export_to_an_unwritable_place_is_one_line(
        tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    out = EXPORT_TARGETS[target](tmp_path)
    code, err = answer(["runs", "export", "r1", "--out", str(out), "--store", str(store)], capsys)
    assert_one_line_error(code, err, FAULT, "cannot write", str(out))
    assert not list(out.parent.glob(".x.csv.*.tmp")) if out.parent.is_dir() else True


def test_export_in_an_unknown_format_is_bad_input(tmp_path: Path, store: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, err = answer(["runs", "export", "r1", "--out", str(tmp_path / "x.xlsx"), "--store",
                        str(store)], capsys)
    assert_one_line_error(code, err, BAD_INPUT, "x.xlsx")


@pytest.mark.parametrize("target", ["under-a-file", "proc"])
def test_figures_into_an_unwritable_folder_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    out = a_file(tmp_path) / "figs" if target == "under-a-file" else Path("/proc/figs")
    start = time.perf_counter()
    code, err = answer(["figures", "--out", str(out)], capsys)
    assert_one_line_error(code, err, FAULT)
    assert time.perf_counter() - start < 10  # refused before any figure is drawn


@pytest.mark.parametrize("dpi", ["-5", "0"])
def test_figures_with_a_bad_dpi_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            dpi: str) -> None:
    code, err = answer(["figures", "--out", str(tmp_path / "figs"), "--dpi", dpi], capsys)
    assert_one_line_error(code, err, BAD_INPUT, f"dpi = {dpi}")
    assert not (tmp_path / "figs").exists()


def test_validate_into_an_unwritable_report_folder_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = a_file(tmp_path) / "report"
    code, err = answer(["validate", "kfac", "--size", "smoke", "--no-progress", "--out",
                        str(out)], capsys)
    assert_one_line_error(code, err, FAULT)


def test_docs_into_an_unwritable_place_is_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err = answer(["docs", "--out", str(a_file(tmp_path) / "identities.md")], capsys)
    assert_one_line_error(code, err, FAULT)


# ---------------------------------------------------------------- 3. malformed sweep specs

MALFORMED = {
    "yaml-syntax.yaml": ("name: grid\naxes: {optimizer.name: [sgd, adam\n", "line"),
    "yaml-tabs.yaml": ("name: grid\naxes:\n\toptimizer.name: [sgd]\n", "tabs"),
    "yaml-list.yaml": ("- just\n- a list\n", "a mapping"),
    "yaml-empty.yaml": ("", "a mapping"),
    "toml-syntax.toml": ("name = grid\n", "TOML"),
    "not-utf8.yaml": (b"name: \xff\xfe grid\n", "UTF-8"),
    "unknown-key.yaml": ("name: grid\npreset: teacher-mlp-sgd\ncolour: blue\n", "colour"),
    "spec.json": ("{}", ".yaml"),
    "missing.yaml": (None, "an existing spec file"),
    "a-folder.yaml": ("folder", "an existing spec file"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("status", [True, False], ids=["status", "run"])
def test_malformed_spec_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    name: str, status: bool) -> None:
    content, words = MALFORMED[name]
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    store = tmp_path / "s.sqlite"
    argv = ["sweep", *(["status"] if status else []), str(path), "--store", str(store)]
    code, err = answer(argv, capsys)
    assert_one_line_error(code, err, BAD_INPUT, words)
    assert not store.exists()  # refused before the store is touched


# ---------------------------------------------------------------- 8. simulations too large

@pytest.mark.parametrize("steps", [10**9, 10**12, 2**63], ids=["1e9", "1e12", "2^63"])
def test_huge_simulation_is_refused_before_allocating(steps: int) -> None:
    start = time.perf_counter()
    with pytest.raises(MemoryError, match=r"steps = \d+ is invalid; allowed: an integer <="):
        sim.simulate("sgd", lr=0.1, steps=steps)
    assert time.perf_counter() - start < 1.0


def test_huge_grid_of_settings_is_refused_before_allocating() -> None:
    with pytest.raises(MemoryError, match="memory_limit"):
        sim.simulate("sgd", lr=np.full(10**5, 0.1), weight_decay=np.full((10**4, 1), 1e-3),
                     steps=10**4)


# ---------------------------------------------------------------- 9. messages naming the argument

WRONG = {
    "drive-empty": (lambda: sim.drive([], lr=0.1), "grad_norms = []"),
    "equilibrium-string-lr": (lambda: sim.equilibrium("sgd", lr="fast", weight_decay=1e-3),
                              "lr = 'fast'"),
    "equilibrium-shapes": (lambda: sim.equilibrium("sgd", lr=[0.1, 0.2], weight_decay=[1, 2, 3]),
                           "lr (2,), weight_decay (3,)"),
    "simulate-shapes": (lambda: sim.simulate("sgd", lr=[0.1, 0.2], weight_decay=[1e-3] * 3,
                                             steps=5), "lr (2,), weight_decay (3,)"),
    "simulate-string-steps": (lambda: sim.simulate("sgd", lr=0.1, steps="10"), "steps = '10'"),
    "simulate-unknown-optimizer": (lambda: sim.simulate("sgdx", lr=0.1, steps=5), "sgdx"),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_the_message_names_the_argument_at_fault(case: str) -> None:
    call, words = WRONG[case]
    with pytest.raises(ValueError) as raised:
        call()
    message = str(raised.value)
    assert words in message and "is invalid; allowed:" in message and "\n" not in message
    assert "could not convert" not in message and "broadcast" not in message.split(";")[0]


# ---------------------------------------------------------------- 10. planted CIFAR-10 batches

class Planted:
    """Unpickled by ``pickle.load``, it would write a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran"))


def write_batches(root: Path, planted: object = None, protocol: int = 2) -> None:
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in CIFAR10_TRAIN + CIFAR10_TEST:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, 4).tolist(),
                 b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8)}
        if name == "data_batch_3" and planted is not None:
            batch[b"data"] = planted
        with open(folder / name, "wb") as file:
            pickle.dump(batch, file, protocol=protocol)


def test_a_planted_batch_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    write_batches(tmp_path, planted=Planted(marker))
    with pytest.raises(ValueError, match=r"data_batch_3 is not a CIFAR-10 batch: .*nothing was run"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    assert not marker.exists()


def test_a_planted_batch_is_one_line_from_the_cli(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    write_batches(tmp_path, planted=Planted(marker))
    code, err = answer(["train", "--dataset", "cifar10", "--data-root", str(tmp_path),
                        "--steps", "1", "--device", "cpu", "--no-progress", "--store",
                        str(tmp_path / "s.sqlite")], capsys)
    assert_one_line_error(code, err, BAD_INPUT, "not a CIFAR-10 batch")
    assert not marker.exists()
    with RunStore(tmp_path / "s.sqlite") as opened:
        assert opened.runs().empty


@pytest.mark.parametrize("payload", ["system", "truncated", "garbage"])
def test_other_unreadable_batches_are_refused(tmp_path: Path, payload: str) -> None:
    write_batches(tmp_path)
    path = tmp_path / CIFAR10_FOLDER / "test_batch"
    if payload == "system":  # protocol 0, by hand: os.system("true")
        path.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    elif payload == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_bytes(os.urandom(500))
    with pytest.raises(ValueError, match="test_batch is not a CIFAR-10 batch"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_batches_still_load(tmp_path: Path, protocol: int) -> None:
    write_batches(tmp_path, protocol=protocol)
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    assert tuple(data.train.inputs.shape) == (20, 3, 32, 32)
