"""Norm grafting from the run config (004 Sec. 4.1, Fig. 4): a run without weight decay whose
normalized layers are rescaled, step by step, to the per-layer norms of a run with weight decay
has that run's ``norm_sq`` at every step; bad sources are refused before training; a grafted run
resumes bitwise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scalewise.models.config import TrainConfig, override
from scalewise.models.store import RunStatus, RunStore
from scalewise.models.training import train

STEPS = 12
TINY = {
    "model.width": 8, "data.batch_size": 32, "data.train_size": 256, "data.test_size": 64,
    "steps": STEPS, "checkpoint_every": 4, "eval_every": 0, "costly_probe_every": 0,
    "probe_every": 1, "device": "cpu",
}
NO_DECAY = {"optimizer.weight_decay": 0.0, "optimizer.wd_mode": "none"}


def config(**changes: Any) -> TrainConfig:
    return override(TrainConfig(), {**TINY, **changes})


def norm_sq(run_metrics: pd.DataFrame, layers: list[str]) -> np.ndarray:
    """(steps + 1, layers): the logged per-unit mean squared norm of each layer at each step."""
    rows = run_metrics[run_metrics["name"] == "norm_sq"]
    return rows.pivot(index="step", columns="layer", values="value")[layers].to_numpy()


@dataclass(frozen=True)
class GraftCase:
    """A source run with weight decay on its normalized layers; ``layers`` are those layers."""

    id: str
    source: dict[str, Any]
    layers: tuple[str, ...] = ("hidden1", "hidden2")


GRAFT_CASES = [
    GraftCase("sgd-bn-l2", {"optimizer.weight_decay": 0.5, "optimizer.wd_mode": "l2",
                            "optimizer.wd_placement": "normalized"}),
    GraftCase("sgdm-ln-l2-per-layer", {
        "model.norm": "layer", "optimizer.name": "sgdm", "optimizer.weight_decay": 0.5,
        "optimizer.wd_mode": "l2"}),
    GraftCase("adam-wn-decoupled", {
        "model.norm": "weight", "optimizer.name": "adam", "optimizer.lr": 1e-2,
        "optimizer.weight_decay": 5.0, "optimizer.wd_mode": "decoupled"}),
]


@pytest.mark.parametrize("case", GRAFT_CASES, ids=lambda case: case.id)
def test_grafted_run_has_the_source_runs_norms_at_every_step(tmp_path: Path,
                                                             case: GraftCase) -> None:
    source_config = config(**case.source)
    layers = list(case.layers)
    with RunStore(tmp_path / "s.sqlite") as store:
        source = train(source_config, store=store, progress=False)
        grafted = train(override(source_config, {**NO_DECAY,
                                                 "optimizer.graft_norms_from": source.id}),
                        store=store, progress=False)
        free = train(override(source_config, NO_DECAY), store=store, progress=False)
    assert source.status is grafted.status is RunStatus.COMPLETED
    expected = norm_sq(source.metrics, layers)  # (steps + 1, layers)
    assert expected.shape == (STEPS + 1, len(layers))
    # float32 weights: a rescale and the probe's sum each round to a few ulp
    np.testing.assert_allclose(norm_sq(grafted.metrics, layers), expected, rtol=1e-5, atol=0)
    # the control: without grafting the norms part from the decayed run's
    drift = np.abs(norm_sq(free.metrics, layers)[-1] / expected[-1] - 1)
    assert (drift > 0.05).all(), drift


def test_grafted_run_resumes_bitwise(tmp_path: Path) -> None:
    source_config = config(**GRAFT_CASES[0].source)

    def stop_after_9(k: int, _: object) -> None:
        if k == 9:
            raise KeyboardInterrupt("stop here")

    with RunStore(tmp_path / "s.sqlite") as store:
        source = train(source_config, store=store, progress=False)
        grafted = override(source_config, {**NO_DECAY, "optimizer.graft_norms_from": source.id})
        whole = train(grafted, store=store, run_id="whole", progress=False)
        with pytest.raises(KeyboardInterrupt, match="stop here"):
            train(grafted, store=store, run_id="parts", progress=False, on_step=stop_after_9)
        resumed = train(grafted, store=store, run_id="parts", progress=False)
    assert "resumed from the checkpoint at step 8" in resumed.log
    pd.testing.assert_frame_equal(resumed.metrics, whole.metrics, check_exact=True)


@dataclass(frozen=True)
class BadSource:
    """A run ``source`` trained with ``source`` changes (None: no such run), and the error of a
    run of ``STEPS`` steps grafted to it and stored under ``run_id`` (None: its config's id)."""

    id: str
    source: dict[str, Any] | None
    message: str
    run_id: str | None = None


BAD_SOURCES = [
    BadSource("missing", None, r"the id of another run in .* \(no run 'source'\)"),
    BadSource("itself", None, r"\(it is this run\)", run_id="source"),
    BadSource("fewer-steps", {"steps": 6},
              r"source: norm_sq is missing or not finite at step 7 of the steps 1..12"),
    BadSource("sparse-probes", {"probe_every": 2},
              r"source: norm_sq is missing or not finite at step 1 of the steps 1..12"),
    BadSource("no-probes", {"probe_every": 0}, r"source: no norm_sq of the layers hidden1, "
              r"hidden2"),
    BadSource("other-model", {"model.width": 16},
              r"a run of the same model \(source has \{.*\"width\": 16\}, this run .*8"),
]


@pytest.mark.parametrize("bad", BAD_SOURCES, ids=lambda bad: bad.id)
def test_bad_source_is_refused_before_training(tmp_path: Path, bad: BadSource) -> None:
    with RunStore(tmp_path / "s.sqlite") as store:
        if bad.source is not None:
            train(config(**bad.source), store=store, run_id="source", progress=False)
        grafted = config(**{"optimizer.graft_norms_from": "source"})
        with pytest.raises(ValueError, match="optimizer.graft_norms_from = 'source' is "
                                             "invalid; allowed: .*" + bad.message):
            train(grafted, store=store, run_id=bad.run_id, progress=False)
        assert store.get(bad.run_id or grafted.run_id()) is None
