"""``models.train``: resume after an interrupt is bitwise identical, bad configs fail before
training, divergence, schedules, precision, what the run store holds, and the states of a run
read back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from scalewise.models.config import TrainConfig, override
from scalewise.models.data import DataNotFoundError
from scalewise.models.step import StepResult
from scalewise.models.store import RunStatus, RunStore, StoreError
from scalewise.models.training import (
    checkpoint_state,
    evaluate,
    initial_state,
    resolve_device,
    run_data,
    train,
)

TINY = {
    "model.width": 8, "data.batch_size": 32, "data.train_size": 256, "data.test_size": 64,
    "steps": 12, "checkpoint_every": 4, "eval_every": 5, "costly_probe_every": 6,
    "probe_every": 2, "unit_probe_every": 3, "device": "cpu",
}


def tiny(**changes: Any) -> TrainConfig:
    return override(TrainConfig(), {**TINY, **changes})


def interrupt_after(step: int, error: type[BaseException]) -> Callable[[int, StepResult], None]:
    """An ``on_step`` that raises ``error`` once step ``step`` is done, as Ctrl-C or a crash
    would between two checkpoints."""

    def on_step(k: int, result: StepResult) -> None:
        if k == step:
            raise error("stop here")

    return on_step


@dataclass(frozen=True)
class ResumeCase:
    id: str
    changes: dict[str, Any] = field(default_factory=dict)


RESUME_CASES = [
    ResumeCase("sgd-bn-l2-step-decay", {
        "optimizer.weight_decay": 5e-3, "optimizer.wd_mode": "l2",
        "optimizer.schedule": "step", "optimizer.milestones": (6,)}),
    # The costly probes are functions of the weights alone, which the per-step losses of the
    # case above already pin down; the cases below skip them but at the end, to stay fast.
    ResumeCase("adamw-ln-decoupled-warmup-cosine", {
        "model.norm": "layer", "optimizer.name": "adamw", "optimizer.lr": 1e-2,
        "optimizer.weight_decay": 1e-2, "optimizer.wd_mode": "decoupled",
        "optimizer.schedule": "warmup-cosine", "optimizer.warmup_steps": 3,
        "costly_probe_every": 0}),
    ResumeCase("sgdm-wn-renormalize", {
        "model.norm": "weight", "optimizer.name": "sgdm", "optimizer.renormalize": True,
        "costly_probe_every": 0}),
    ResumeCase("kfac-fisher-bn-sampled-targets", {
        "optimizer.name": "kfac", "optimizer.lr": 1e-2, "optimizer.kfac.curvature": "fisher",
        "optimizer.kfac.inverse_interval": 3, "costly_probe_every": 0}),
    # AdaGraft: two optimizers' states in one checkpoint, decoupled decay as the graft's hook.
    ResumeCase("adagraft-sgdm-magnitude-adam-direction", {
        "optimizer.name": "sgdm", "optimizer.graft_direction": "adam",
        "optimizer.weight_decay": 1e-2, "optimizer.wd_mode": "decoupled",
        "costly_probe_every": 0}),
    # The knock-out's per-batch draws and the input statistics of the quasi-diagonal
    # preconditioner live in the checkpoint too; both in float64.
    ResumeCase("knockout-float64", {
        "model.knockout_spread": 0.5, "model.knockout_shift": 0.3, "precision": "float64",
        "costly_probe_every": 0}),
    ResumeCase("quasi-diagonal-shifted-inputs-float64", {
        "model.norm": "none", "model.input_shift": 3.0, "optimizer.name": "quasi-diagonal",
        "optimizer.lr": 0.03, "optimizer.statistics.damping": 1e-3, "precision": "float64",
        "costly_probe_every": 0}),
    ResumeCase("vgg-bn-sgdm", {
        "model.arch": "vgg", "model.width": 4, "optimizer.name": "sgdm", "optimizer.lr": 0.05,
        "costly_probe_every": 0}),
]


def resume_cases() -> list[Any]:
    """Every case stopped by Ctrl-C; the first also by a crash (the same resume path, from the
    status ``failed`` instead of ``interrupted``)."""
    ctrl_c = [pytest.param(case, KeyboardInterrupt, id=f"ctrl-c-{case.id}")
              for case in RESUME_CASES]
    return ctrl_c + [pytest.param(RESUME_CASES[0], RuntimeError, id=f"crash-{RESUME_CASES[0].id}")]


@pytest.mark.parametrize("case, stop", resume_cases())
def test_resumed_run_equals_uninterrupted_run_bitwise(
        tmp_path: Path, case: ResumeCase, stop: type[BaseException]) -> None:
    config = tiny(**case.changes)
    with RunStore(tmp_path / "whole.sqlite") as store:
        whole = train(config, store=store, progress=False)
        whole_units = store.unit_stats(whole.id).frame()
    with RunStore(tmp_path / "parts.sqlite") as store:
        with pytest.raises(stop, match="stop here"):
            train(config, store=store, progress=False, on_step=interrupt_after(9, stop))
        stopped = store[config.run_id()]
        expected_status = RunStatus.INTERRUPTED if stop is KeyboardInterrupt else RunStatus.FAILED
        assert stopped.status is expected_status
        assert stopped.metrics["step"].max() == 9  # written up to the stop, past the checkpoint
        resumed = train(config, store=store, progress=False)
        resumed_units = store.unit_stats(resumed.id).frame()
    assert whole.status is resumed.status is RunStatus.COMPLETED
    assert "resumed from the checkpoint at step 8" in resumed.log
    assert len(whole.metrics) > 12 * 3
    pd.testing.assert_frame_equal(resumed.metrics, whole.metrics, check_exact=True)
    assert sorted(set(whole_units["step"])) == [0, 3, 6, 9]
    pd.testing.assert_frame_equal(resumed_units, whole_units, check_exact=True)


KILL_AT_STEP_9 = """
import os, signal, sys
import torch
from scalewise.models.config import TrainConfig
from scalewise.models.store import RunStore
from scalewise.models.training import train

torch.set_num_threads(1)

def kill(k, result):
    if k == 9:
        os.kill(os.getpid(), signal.SIGKILL)

with RunStore(sys.argv[2]) as store:
    train(TrainConfig.from_json(sys.argv[1]), store=store, progress=False, on_step=kill)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_killed_process_resumes_to_the_uninterrupted_run(tmp_path: Path) -> None:
    """A real kill: no handler runs, the metrics since the last checkpoint are lost, and the
    run, its owner gone, shows as ``interrupted``; resuming takes it over and recomputes them.
    (The teacher task and no costly probes keep the child process's start short.)"""
    config = tiny(**{**RESUME_CASES[0].changes, "data.name": "teacher", "costly_probe_every": 0})
    with RunStore(tmp_path / "whole.sqlite") as store:
        whole = train(config, store=store, progress=False)
    path = tmp_path / "killed.sqlite"
    killed = subprocess.run([sys.executable, "-c", KILL_AT_STEP_9, config.to_json(), str(path)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with RunStore(path) as store:
        stopped = store[config.run_id()]
        assert stopped.status is RunStatus.INTERRUPTED and stopped.metrics["step"].max() == 7
        resumed = train(config, store=store, progress=False)
    assert "resumed from the checkpoint at step 8, taking over from process" in resumed.log
    pd.testing.assert_frame_equal(resumed.metrics, whole.metrics, check_exact=True)


def test_interrupt_is_logged_with_the_checkpoint_kept(tmp_path: Path) -> None:
    config = tiny()
    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            train(config, store=store, progress=False,
                  on_step=interrupt_after(5, KeyboardInterrupt))
        run = store[config.run_id()]
        checkpoints = sorted(p.name for p in store.checkpoint_dir.iterdir())
    assert run.status is RunStatus.INTERRUPTED
    assert "interrupted at step 6; checkpoint kept: step 4" in run.log
    assert checkpoints == [f"{config.run_id()}.pt"]  # no temporary file is left behind


def test_crash_keeps_the_traceback_in_the_log(tmp_path: Path) -> None:
    config = tiny()
    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(RuntimeError):
            train(config, store=store, progress=False, on_step=interrupt_after(2, RuntimeError))
        run = store[config.run_id()]
    assert run.status is RunStatus.FAILED
    assert "error at step 3" in run.log and "RuntimeError: stop here" in run.log


def test_completed_run_is_returned_as_stored(tmp_path: Path) -> None:
    config = tiny(steps=4)
    with RunStore(tmp_path / "s.sqlite") as store:
        first = train(config, store=store, progress=False)
        again = train(config, store=store, progress=False,
                      on_step=interrupt_after(0, AssertionError))  # would fail if it trained
        restarted = train(config, store=store, progress=False, resume=False)
    pd.testing.assert_frame_equal(again.metrics, first.metrics, check_exact=True)
    pd.testing.assert_frame_equal(restarted.metrics, first.metrics, check_exact=True)
    assert again.log == first.log and restarted.log.count("started") == 1


def test_another_config_under_the_same_id_is_refused(tmp_path: Path) -> None:
    with RunStore(tmp_path / "s.sqlite") as store:
        train(tiny(steps=2), store=store, run_id="mine", progress=False)
        with pytest.raises(StoreError, match="run mine .* holds another config"):
            train(tiny(steps=3), store=store, run_id="mine", progress=False)


def test_diverging_run_fails_with_its_log_kept(tmp_path: Path) -> None:
    config = tiny(**{"model.norm": "none", "optimizer.lr": 1e30, "steps": 8})
    with RunStore(tmp_path / "s.sqlite") as store:
        run = train(config, store=store, progress=False)
    assert run.status is RunStatus.FAILED
    assert "diverged at step" in run.log
    loss = run.metrics.query("layer == '' and name == 'loss'")["value"]
    assert loss.iloc[0] == pytest.approx(2.3, abs=0.3)  # finite at first: log(10) for random
    assert not torch.isfinite(torch.tensor(loss.iloc[-1])) and len(loss) < 8


def test_metrics_follow_the_schedule_and_the_measurement_steps(tmp_path: Path) -> None:
    config = tiny(**{"optimizer.lr": 0.1, "optimizer.schedule": "step",
                     "optimizer.milestones": (3, 7), "optimizer.gamma": 0.5})
    with RunStore(tmp_path / "s.sqlite") as store:
        run = train(config, store=store, progress=False)
        checkpoint = torch.load(store.checkpoint_path(run.id), weights_only=True)
    network = run.metrics[run.metrics["layer"] == ""]
    lr = network[network["name"] == "lr"].set_index("step")["value"]
    expected = [0.1] * 3 + [0.05] * 4 + [0.025] * 5  # exact: halving is exact in binary
    assert lr.tolist() == expected and lr.index.tolist() == list(range(12))
    assert [g["lr"] for g in checkpoint["optimizer"]["param_groups"]] == [0.025]
    for name, steps in (("test_accuracy", [0, 5, 10, 12]), ("jacobian_sq_norm", [0, 6, 12]),
                        ("loss", list(range(12)))):
        assert network[network["name"] == name]["step"].tolist() == steps, name
    probed = run.metrics.query("layer == 'hidden1' and name == 'norm_sq'")["step"]
    assert probed.tolist() == [0, 2, 4, 6, 8, 10, 12]  # and the trained network's
    assert checkpoint["step"] == 12


def test_training_restores_the_deterministic_setting(tmp_path: Path) -> None:
    before = torch.are_deterministic_algorithms_enabled()
    with RunStore(tmp_path / "s.sqlite") as store:
        train(tiny(steps=2), store=store, progress=False)
    assert torch.are_deterministic_algorithms_enabled() == before


@dataclass(frozen=True)
class BadConfig:
    id: str
    changes: dict[str, Any]
    message: str


BAD_CONFIGS = [
    BadConfig("unknown-optimizer", {"optimizer.name": "lbfgs"},
              r"optimizer.name = 'lbfgs' is invalid; allowed: one of sgd, sgdm"),
    BadConfig("negative-lr", {"optimizer.lr": -0.1}, r"optimizer.lr = -0.1 is invalid"),
    BadConfig("zero-lr", {"optimizer.lr": 0.0}, r"optimizer.lr = 0.0 is invalid"),
    BadConfig("kfac-on-weight-norm", {"optimizer.name": "kfac", "model.norm": "weight"},
              r"model.norm = 'weight' is invalid; allowed: none, batch or layer with "
              r"optimizer.name = 'kfac'"),
    BadConfig("decay-without-mode", {"optimizer.weight_decay": 1e-3},
              r"optimizer.wd_mode = 'none' is invalid"),
    BadConfig("shrink-factor-not-positive", {"optimizer.weight_decay": 20.0,
                                             "optimizer.wd_mode": "decoupled"},
              r"optimizer.weight_decay = 20.0 is invalid; allowed: lr \* weight_decay < 1"),
    BadConfig("adamw-with-l2", {"optimizer.name": "adamw", "optimizer.weight_decay": 1e-3,
                                "optimizer.wd_mode": "l2"}, r"optimizer.wd_mode = 'l2'"),
    BadConfig("cnn-on-vectors", {"data.name": "teacher", "model.arch": "resnet"},
              r"model.arch = 'resnet' is invalid"),
    BadConfig("cifar-without-root", {"data.name": "cifar10"}, r"data.root = None is invalid"),
    BadConfig("warmup-past-the-end", {"optimizer.schedule": "warmup-cosine",
                                      "optimizer.warmup_steps": 12},
              r"optimizer.warmup_steps = 12 is invalid"),
    BadConfig("exponential-overflow", {"optimizer.schedule": "exponential",
                                       "optimizer.gamma": 1e3, "steps": 1000},
              r"optimizer.gamma = 1000.0 is invalid"),
    BadConfig("unknown-field", {"optimizer.learning_rate": 0.1},
              r"optimizer.learning_rate = 0.1 is invalid; allowed: one of the fields"),
    BadConfig("bad-device", {"device": "gpu"}, r"device = 'gpu' is invalid"),
    BadConfig("momentum-one", {"optimizer.momentum": 1.0}, r"optimizer.momentum = 1.0"),
    BadConfig("zero-steps", {"steps": 0}, r"steps = 0 is invalid; allowed: an integer >= 1"),
    BadConfig("rmsprop-alpha-one", {"optimizer.rmsprop_alpha": 1.0},
              r"optimizer.rmsprop_alpha = 1.0 is invalid; allowed: a finite number in \(0, 1\)"),
    BadConfig("graft-direction-kfac", {"optimizer.graft_direction": "kfac"},
              r"optimizer.graft_direction = 'kfac' is invalid; allowed: an optimizer other "
              r"than kfac"),
    BadConfig("graft-onto-kfac", {"optimizer.name": "kfac", "optimizer.graft_direction": "adam"},
              r"optimizer.graft_direction = 'adam' is invalid; .* \(K-FAC is not grafted\)"),
    BadConfig("graft-onto-itself", {"optimizer.graft_direction": "sgd"},
              r"optimizer.graft_direction = 'sgd' is invalid; allowed: an optimizer other than "
              r"optimizer.name = 'sgd'"),
    BadConfig("graft-direction-unknown", {"optimizer.graft_direction": "lion"},
              r"optimizer.graft_direction = 'lion' is invalid; allowed: one of sgd, .* or None"),
    BadConfig("graft-direction-adamw-with-l2", {
        "optimizer.graft_direction": "adamw", "optimizer.weight_decay": 1e-3,
        "optimizer.wd_mode": "l2"}, r"optimizer.wd_mode = 'l2' is invalid"),
    BadConfig("graft-norms-from-bad-id", {"optimizer.graft_norms_from": "../run"},
              r"optimizer.graft_norms_from = '../run' is invalid; allowed: a run id"),
    BadConfig("graft-norms-and-renormalize", {"optimizer.graft_norms_from": "abc",
                                              "optimizer.renormalize": True},
              r"optimizer.graft_norms_from = 'abc' is invalid; allowed: None with "
              r"optimizer.renormalize"),
    BadConfig("knockout-without-batch-norm", {"model.norm": "layer",
                                              "model.knockout_shift": 0.3},
              r"model.knockout_shift = 0.3 is invalid; allowed: 0 unless model.norm = 'batch'"),
    BadConfig("knockout-spread-one", {"model.knockout_spread": 1.0},
              r"model.knockout_spread = 1.0 is invalid; allowed: a finite number in \[0, 1\)"),
    BadConfig("weight-norm-after-the-activation", {"model.norm": "weight",
                                                   "model.norm_position": "after"},
              r"model.norm_position = 'after' is invalid; allowed: before with model.norm = "
              r"'weight'"),
    BadConfig("norm-position-of-a-cnn", {"model.arch": "vgg", "model.norm_position": "after"},
              r"model.norm_position = 'after' is invalid; allowed: before with model.arch = "
              r"'vgg' \(an option of the mlp\)"),
    BadConfig("input-shift-of-a-resnet", {"model.arch": "resnet", "model.input_shift": 1.0},
              r"model.input_shift = 1.0 is invalid; allowed: 0.0 with model.arch = 'resnet'"),
    BadConfig("quasi-diagonal-with-batch-norm", {"optimizer.name": "quasi-diagonal"},
              r"optimizer.name = 'quasi-diagonal' is invalid; allowed: an optimizer other than "
              r"quasi-diagonal and diagonal unless model.arch = 'mlp' and model.norm = 'none'"),
    BadConfig("diagonal-with-weight-decay", {"model.norm": "none", "optimizer.name": "diagonal",
                                             "optimizer.weight_decay": 1e-3,
                                             "optimizer.wd_mode": "l2"},
              r"optimizer.wd_mode = 'l2' is invalid; allowed: none with optimizer.name = "
              r"'diagonal'"),
    BadConfig("graft-direction-quasi-diagonal", {"optimizer.graft_direction": "quasi-diagonal"},
              r"optimizer.graft_direction = 'quasi-diagonal' is invalid; allowed: None with "
              r"quasi-diagonal"),
    BadConfig("statistics-decay-one", {"optimizer.statistics.decay": 1.0},
              r"optimizer.statistics.decay = 1.0 is invalid"),
    BadConfig("half-precision", {"precision": "float16"},
              r"precision = 'float16' is invalid; allowed: one of float32, float64"),
    BadConfig("graft-norms-without-normalization", {"optimizer.graft_norms_from": "abc",
                                                    "model.norm": "none"},
              r"optimizer.graft_norms_from = 'abc' is invalid; allowed: None with "
              r"model.norm = 'none'"),
]


@pytest.mark.parametrize("bad", BAD_CONFIGS, ids=lambda bad: bad.id)
def test_bad_config_is_refused_on_construction(bad: BadConfig) -> None:
    with pytest.raises(ValueError, match=bad.message):
        tiny(**bad.changes)


@dataclass(frozen=True)
class BadAtStart:
    id: str
    changes: dict[str, Any]
    error: type[Exception]
    message: str


BAD_AT_START = [
    BadAtStart("missing-data-folder", {"data.name": "mnist", "data.root": "nowhere"},
               DataNotFoundError, r"data.root = '.*nowhere': the MNIST files are missing"),
    BadAtStart("batch-larger-than-data", {"data.train_size": 16}, ValueError,
               r"data.batch_size = 32 is invalid; allowed: at most the training set size 16"),
]


@pytest.mark.parametrize("bad", BAD_AT_START, ids=lambda bad: bad.id)
def test_bad_run_fails_before_training_starts(tmp_path: Path, bad: BadAtStart) -> None:
    changes = {key: str(tmp_path / value) if key == "data.root" else value
               for key, value in bad.changes.items()}
    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(bad.error, match=bad.message):
            train(tiny(**changes), store=store, progress=False)
        assert store.runs().empty and not store.checkpoint_dir.exists()


@pytest.mark.parametrize("run_id", ["../escape", "", "a b", "-x"], ids=repr)
def test_run_id_must_be_a_plain_name(tmp_path: Path, run_id: str) -> None:
    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match="run_id = .* is invalid; allowed: letters"):
            train(tiny(), store=store, run_id=run_id, progress=False)
        assert store.runs().empty


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_device_is_refused() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="device = 'cuda' is invalid; allowed: auto or cpu"):
        resolve_device("cuda")


def test_json_leaves_later_fields_out_at_their_defaults() -> None:
    """Fields added since runs were first stored do not enter the JSON (and the run id) at
    their defaults, so stored configs keep their ids; set, they do, and load back."""
    default = json.loads(TrainConfig().to_json())
    assert "precision" not in default and "statistics" not in default["optimizer"]
    assert not {"norm_position", "knockout_spread", "knockout_shift", "input_shift"} & set(
        default["model"])
    changed = tiny(**{"precision": "float64", "model.input_shift": 1.5,
                      "optimizer.statistics.damping": 1e-3})
    data = json.loads(changed.to_json())
    assert data["precision"] == "float64" and data["model"]["input_shift"] == 1.5
    assert data["optimizer"]["statistics"] == {"damping": 1e-3, "decay": 0.95}
    assert TrainConfig.from_json(changed.to_json()) == changed
    assert changed.run_id() != tiny().run_id()
    assert TrainConfig.from_json(json.dumps(default)) == TrainConfig()


def test_float64_run_trains_in_float64(tmp_path: Path) -> None:
    config = tiny(precision="float64", checkpoint_every=0)
    with RunStore(tmp_path / "s.sqlite") as store:
        run = train(config, store=store, progress=False)
        state = checkpoint_state(run.config, store)
    assert run.status is RunStatus.COMPLETED
    assert {p.dtype for p in state.model.parameters()} == {torch.float64}
    assert initial_state(config).model.hidden1.layer.weight.dtype is torch.float64


def test_initial_and_checkpoint_states_are_the_runs(tmp_path: Path) -> None:
    """Evaluated, the states read back give the train losses the run logged at its first and
    last steps; a run without a checkpoint has no state to read."""
    config = tiny(checkpoint_every=0)
    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(StoreError, match="has no checkpoint"):
            checkpoint_state(config, store)
        run = train(config, store=store, progress=False)
        last = checkpoint_state(run.config, store)
    first = initial_state(config)
    logged = run.metrics.query("name == 'train_loss'").set_index("step")["value"]
    train_split = run_data(config).train
    assert last.step == config.steps and first.step == 0
    assert evaluate(first.model, train_split)[0] == pytest.approx(logged[0], rel=1e-6)
    assert evaluate(last.model, train_split)[0] == pytest.approx(logged[config.steps], rel=1e-6)
