"""``scalewise train`` and ``scalewise runs ls|show|export`` end to end on tiny runs."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalewise.cli import runs as runs_command
from scalewise.cli import train as train_command
from scalewise.models.config import DISK_DATASETS, Optimizer, override
from scalewise.models.presets import PRESETS, preset
from scalewise.models.store import RunStatus, RunStore

TINY_FLAGS = ["--width", "8", "--batch-size", "32", "--train-size", "128", "--test-size", "64",
              "--steps", "6", "--eval-every", "3", "--costly-probe-every", "0",
              "--checkpoint-every", "3", "--device", "cpu", "--no-progress"]


def cli(argv: Sequence[str]) -> int:
    """The two commands registered as ``scalewise.cli.main`` registers every command."""
    parser = argparse.ArgumentParser(prog="scalewise")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module in (("train", train_command), ("runs", runs_command)):
        module.register(subparsers)
        subparsers.choices[name].set_defaults(run=module.run)
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_train_then_ls_show_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "s.sqlite")
    argv = ["train", "--preset", "digits-bn-sgd", *TINY_FLAGS, "--store", store]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    run_id = out.split()[1]
    assert f"run {run_id} (digits-bn-sgd): completed" in out and "test_accuracy" in out
    with RunStore(store) as opened:
        stored = opened[run_id]
    assert stored.config.optimizer.weight_decay == preset("digits-bn-sgd").optimizer.weight_decay
    assert stored.config.steps == 6 and stored.config.model.width == 8

    assert cli(argv) == 0  # the same command again shows the completed run
    assert f"run {run_id} (digits-bn-sgd): completed" in capsys.readouterr().out

    assert cli(["runs", "ls", "--store", store]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "completed" in listing
    assert cli(["runs", "ls", "--store", store, "--status", "failed"]) == 0
    assert "no runs" in capsys.readouterr().out

    assert cli(["runs", "show", run_id[:5], "--store", store]) == 0
    shown = capsys.readouterr().out
    assert f"run {run_id} (digits-bn-sgd): completed" in shown
    assert '"weight_decay": 0.005' in shown and "completed 6 steps" in shown

    for suffix, read in ((".csv", pd.read_csv), (".parquet", pd.read_parquet)):
        out_file = tmp_path / f"metrics{suffix}"
        assert cli(["runs", "export", run_id, "-o", str(out_file), "--store", store]) == 0
        exported = read(out_file)
        assert len(exported) == len(stored.metrics) and set(exported["run"]) == {run_id}
        np.testing.assert_array_equal(exported["value"], stored.metrics["value"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--lr", "-1"], "error: optimizer.lr = -1.0 is invalid"),
        (["train", "--rmsprop-alpha", "0"], "error: optimizer.rmsprop_alpha = 0.0 is invalid"),
        (["train", "--graft-norms-from", "feed", "--no-progress"],
         ("error: optimizer.graft_norms_from = 'feed' is invalid; allowed: the id of another "
          "run in {tmp}/s.sqlite (no run 'feed')")),
        (["train", "--optimizer", "kfac", "--norm", "weight"], "error: model.norm = 'weight'"),
        (["train", "--dataset", "mnist", "--data-root", "{tmp}/none", "--no-progress"],
         "error: data.root = '{tmp}/none': the MNIST files are missing"),
        (["runs", "show", "feed", "--store", "{tmp}/s.sqlite"], "error: run id 'feed': no run"),
        (["runs", "ls", "--store", "{tmp}/absent.sqlite"], "error: no run store at"),
        (["runs", "export", "feed", "-o", "{tmp}/x.xlsx", "--store", "{tmp}/s.sqlite"],
         "error: path = '{tmp}/x.xlsx' is invalid"),
    ],
    ids=["negative-lr", "rmsprop-alpha-zero", "graft-from-missing-run", "kfac-weight-norm", "missing-data", "unknown-run", "no-store",
         "bad-export-format"],
)
def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], message: str) -> None:
    RunStore(tmp_path / "s.sqlite").close()
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    store = ["--store", str(tmp_path / "s.sqlite")] if argv[0] == "train" else []
    assert cli([*argv, *store]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_unknown_choice_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli(["train", "--optimizer", "lbfgs"])
    assert exit_.value.code == 2 and "invalid choice: 'lbfgs'" in capsys.readouterr().err


def test_every_config_field_has_a_flag() -> None:
    subparsers = argparse.ArgumentParser().add_subparsers()
    train_command.register(subparsers)
    dests = {action.dest for action in subparsers.choices["train"]._actions}
    paths = [path for path, _, _ in train_command.config_fields()]
    assert {"name", "optimizer.name", "data.root", "optimizer.kfac.damping"} <= set(paths)
    assert set(paths) <= dests
    flags = [train_command.flag_name(path) for path in paths]
    assert len(set(flags)) == len(flags)


def test_flags_override_the_preset() -> None:
    parser = argparse.ArgumentParser()
    train_command.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--preset", "digits-bn-adamw", "--lr", "0.003",
                              "--betas", "0.8", "0.99", "--kfac-damping", "0.1",
                              "--milestones", "5", "9", "--renormalize", "--data-root", "d",
                              "--rmsprop-alpha", "0.9", "--graft-direction", "sgdm"])
    expected = override(preset("digits-bn-adamw"), {
        "optimizer.lr": 0.003, "optimizer.betas": (0.8, 0.99), "optimizer.kfac.damping": 0.1,
        "optimizer.milestones": (5, 9), "optimizer.renormalize": True, "data.root": "d",
        "optimizer.rmsprop_alpha": 0.9, "optimizer.graft_direction": "sgdm"})
    assert train_command.config_from_args(args) == expected


def test_grafting_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--graft-norms-from RUN`` grafts a run to a stored one; ``--graft-direction adam``
    makes it AdaGraft; both reach the stored config."""
    store = str(tmp_path / "s.sqlite")
    source = ["train", "--preset", "digits-bn-sgd", *TINY_FLAGS, "--probe-every", "1",
              "--store", store, "--run-id", "decayed"]
    assert cli(source) == 0
    grafted = ["train", *TINY_FLAGS, "--store", store, "--run-id", "grafted",
               "--graft-norms-from", "decayed", "--graft-direction", "adam"]
    assert cli(grafted) == 0, capsys.readouterr().err
    with RunStore(store) as opened:
        optimizer = opened["grafted"].config.optimizer
    assert optimizer.graft_norms_from == "decayed"
    assert optimizer.graft_direction is Optimizer.ADAM


def test_dry_run_prints_config_and_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["train", "--preset", "teacher-mlp-sgd", "--steps", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    expected = override(preset("teacher-mlp-sgd"), {"steps": 3})
    assert f"run id: {expected.run_id()}" in out and '"name": "teacher"' in out


BUNDLED_PRESETS = [n for n, c in PRESETS.items() if c.data.name not in DISK_DATASETS]


@pytest.mark.parametrize("name", BUNDLED_PRESETS)
def test_every_bundled_preset_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     name: str) -> None:
    argv = ["train", "--preset", name, *TINY_FLAGS, "--steps", "2",
            "--store", str(tmp_path / "s.sqlite")]
    assert cli(argv) == 0, capsys.readouterr().err
    with RunStore(tmp_path / "s.sqlite") as store:
        assert store.runs()["status"].tolist() == [RunStatus.COMPLETED.value]


def test_list_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["train", "--list-presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS)


def test_diverging_run_exits_1_with_the_reason(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", *TINY_FLAGS, "--norm", "none", "--lr", "1e30",
            "--store", str(tmp_path / "s.sqlite")]
    assert cli(argv) == 1
    out = capsys.readouterr().out
    assert ": failed" in out and "diverged at step" in out


def test_ctrl_c_exits_130_and_says_how_to_resume(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_command, "train", interrupted)
    assert cli(["train", *TINY_FLAGS, "--store", str(tmp_path / "s.sqlite")]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
