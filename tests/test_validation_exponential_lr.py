"""Weight decay as an exponentially growing LR on a real BN network (Li and Arora 2020, 001
Sec. 4.3): the float64 network is exactly scale invariant in what it trains, the two runs point
the same way to rounding while torch's empty momentum buffer breaks it, and the smoke experiment
writes a report whose bounds hold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalewise.models import load_dataset
from scalewise.models.networks import scale_invariant_params
from scalewise.validation.effective_lr import exponential_lr as exp_lr
from scalewise.validation.report import RECORD_FIELDS, Report, load, spread_steps
from scalewise.validation.suite import Settings

STEPS = 40


@pytest.fixture(scope="module")
def data():
    return load_dataset(exp_lr.DATA, seed=0)


def test_only_scale_invariant_weights_train_and_the_loss_ignores_their_scale(data) -> None:
    model = exp_lr.scale_invariant_network(data, seed=0)
    invariants = scale_invariant_params(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert [id(p) for p in trainable] == [id(i.param) for i in invariants]
    inputs, targets = data.train.inputs[:128].double(), data.train.targets[:128]
    before = F.cross_entropy(model(inputs), targets)
    grad = torch.autograd.grad(before, invariants[0].param)[0].clone()  # (units, fan_in)
    with torch.no_grad():
        invariants[0].param[3].mul_(7.0)  # one unit rescaled
    after = F.cross_entropy(model(inputs), targets)
    rescaled_grad = torch.autograd.grad(after, invariants[0].param)[0]
    torch.testing.assert_close(after, before, rtol=1e-14, atol=0)
    # 001 Eq. (18): the gradient of that unit is homogeneous of degree -1
    torch.testing.assert_close(rescaled_grad[3], grad[3] / 7.0, rtol=1e-10, atol=1e-18)


@pytest.mark.parametrize("case", exp_lr.CASES, ids=lambda case: case.label)
def test_directions_agree_to_rounding_only_with_theorys_buffer(data, case) -> None:
    pair = exp_lr.run_pair(case, data, STEPS, seed=0)
    assert pair.mismatch.shape == pair.measured_norm.shape == (STEPS + 1, 2)
    assert pair.mismatch[0].max() == 0
    if case.matched_buffer:
        assert pair.mismatch.max() < 1e-12
        np.testing.assert_allclose(pair.measured_norm, pair.predicted_norm, rtol=1e-12)
    else:  # torch's empty buffer: the control misses macroscopically
        assert pair.mismatch[-1].max() > 1e-3


def test_records_are_at_checkpoints_spanning_the_run(data) -> None:
    pair = exp_lr.run_pair(exp_lr.CASES[0], data, 3 * exp_lr.CHECKPOINTS, seed=0)
    steps = spread_steps(1, 3 * exp_lr.CHECKPOINTS, exp_lr.CHECKPOINTS)
    records = exp_lr._records(pair, steps)
    at = sorted({int(r.quantity.split("@")[1]) for r in records})
    assert at[0] == 1 and at[-1] == 3 * exp_lr.CHECKPOINTS and len(at) == exp_lr.CHECKPOINTS
    assert len(records) == 2 * len(pair.layers) * len(at)


def test_smoke_report_meets_its_bounds(tmp_path: Path) -> None:
    report = Report("effective-lr", "exponential LR")
    exp_lr.equivalence(report, Settings(size="smoke", progress=False))
    results = report.agreement()
    assert len(results) == 4 and all(r.holds for r in results), results
    labels = {r.optimizer for r in report.records}
    assert labels == {case.label for case in exp_lr.CASES}
    control = [r.rel_error for r in report.records if r.optimizer == "sgdm:empty-buffer"]
    assert max(control) > 1e-3
    loaded = load(report.write(tmp_path / "report"))
    assert tuple(loaded.records.columns) == RECORD_FIELDS
    assert len(loaded.records) == len(report.records)
    assert json.loads((tmp_path / "report" / "report.json").read_text())[0].keys() == {
        f.name for f in dataclasses.fields(report.records[0])}
    assert (tmp_path / "report" / "figures" / "exponential-lr-directions.png").exists()
    assert set(loaded.curves["quantity"]) == {"direction_mismatch", "norm"}
