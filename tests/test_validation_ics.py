"""validation.ics: the pieces of the ICS suite against exact ground truth, and a smoke build."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from scalewise.theory import kronecker
from scalewise.validation import Size, ics
from scalewise.validation.report import RECORD_FIELDS
from scalewise.validation.suite import Settings


def test_whitened_gaussian_has_exact_moments() -> None:
    x = ics.whitened_gaussian(64, 5, seed=0)
    torch.testing.assert_close(x.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(x.T @ x / 64, torch.eye(5, dtype=torch.float64), atol=1e-12,
                               rtol=0)


def test_gauss_newton_block_of_a_linear_model_is_the_kronecker_form() -> None:
    """For logits ``W x`` the GN block is ``(1/N) sum_n x_n x_n^T (x) H_n`` exactly."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    w = torch.randn(2 * 3, generator=generator, dtype=torch.float64)  # W (2, 3) row-major
    block = ics.gauss_newton_block(lambda theta: x @ theta.reshape(2, 3).T, w)
    p = (x @ w.reshape(2, 3).T).softmax(1)
    expected = sum(torch.kron(torch.diag(q) - torch.outer(q, q), torch.outer(a, a))
                   for a, q in zip(x, p)) / 6  # row-major vec: H (x) x x^T
    torch.testing.assert_close(block, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["center", "bn", "quasi-diagonal"])
def test_centering_makes_the_gn_block_shift_invariant(variant: str) -> None:
    base = ics.whitened_gaussian(32, 16, seed=1)
    blocks = []
    for shift in (0.0, 3.0):
        model = ics.mlp((16, 8, 4), "none" if variant == "quasi-diagonal" else variant, seed=0)
        with torch.no_grad():
            model[0].bias.sub_(model[0].weight.sum(1) * shift)
        inputs = base + shift
        blocks.append(ics.gauss_newton_block(ics.first_layer_logits(model, inputs, variant),
                                             ics.first_layer_theta(model, inputs, variant)))
    torch.testing.assert_close(blocks[0], blocks[1], rtol=1e-9, atol=1e-12)


def test_plain_gn_block_grows_with_the_shift() -> None:
    base = ics.whitened_gaussian(32, 16, seed=1)
    tops = []
    for shift in (0.0, 2.0):
        model = ics.mlp((16, 8, 4), "none", seed=0)
        with torch.no_grad():
            model[0].bias.sub_(model[0].weight.sum(1) * shift)
        inputs = base + shift
        block = ics.gauss_newton_block(ics.first_layer_logits(model, inputs, "none"),
                                       ics.first_layer_theta(model, inputs, "none"))
        tops.append(float(torch.linalg.eigvalsh(block)[-1]))
    assert tops[1] > 10 * tops[0]  # ||m||^2 = 64: the outlier factor nu ~ 66


def test_range_condition_ignores_null_directions() -> None:
    assert ics.range_condition(torch.tensor([0.0, 1e-14, 2.0, 8.0])) == pytest.approx(4.0)


def test_smoothed_is_a_trailing_mean() -> None:
    values = np.arange(10.0)
    out = ics.smoothed(values, window=3)
    np.testing.assert_allclose(out, [0, 0.5, 1, 2, 3, 4, 5, 6, 7, 8])
    assert math.isnan(ics.smoothed(np.array([1.0, np.nan, 1.0]), window=2)[1])


def test_steps_to_and_check_steps() -> None:
    assert ics.steps_to(np.array([3.0, 2.0, 1.0]), 2.0) == 1
    assert math.isnan(ics.steps_to(np.array([3.0, 2.0]), 0.5))
    steps = ics.check_steps(1000)
    assert len(steps) == 12 and steps[-1] == 999 and steps == sorted(steps)


def test_batch_center_and_knockout() -> None:
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ics.BatchCenter()(x).mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    knock = ics.KnockOut(seed=0)
    first, second = knock(x), knock(x)
    assert not torch.allclose(first, second)  # fresh statistics every batch
    slope = (first[1] - first[0]) / (x[1] - x[0])  # per unit: gamma
    assert bool(((slope > 0.5 - 1e-5) & (slope < 1.5 + 1e-5)).all())
    torch.testing.assert_close(knock.eval()(x), x)
    with pytest.raises(ValueError, match="spread"):
        ics.KnockOut(spread=1.0)


def test_mlp_refuses_an_unknown_norm() -> None:
    with pytest.raises(ValueError, match="norm"):
        ics.mlp((4, 4, 2), "group", seed=0)
    model = ics.mlp((4, 5, 2), "knockout", seed=0)
    assert [type(m) for m in model] == [nn.Linear, nn.BatchNorm1d, ics.KnockOut, nn.ReLU,
                                        nn.Linear]


def test_factor_prediction_is_exact_for_isotropic_activations() -> None:
    """``sigma^2 (1 + ||m||^2 / sigma^2)`` is the top eigenvalue of ``sigma^2 I + m m^T``."""
    mean, sigma_sq = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64), 0.3
    second = sigma_sq * torch.eye(3, dtype=torch.float64) + torch.outer(mean, mean)
    predicted = sigma_sq * float(kronecker.outlier_eigenvalue(float(mean @ mean) / sigma_sq))
    assert float(torch.linalg.eigvalsh(second)[-1]) == pytest.approx(predicted, rel=1e-12)


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("ics")
    settings = Settings(size=Size.SMOKE, store=str(folder / "runs.sqlite"), progress=False)
    report = ics.build(settings)
    report.write(folder / "report")
    return report, folder / "report"


def test_smoke_build_writes_records_with_the_schema(smoke_report) -> None:
    report, folder = smoke_report
    records = json.loads((folder / "report.json").read_text())
    assert records and all(tuple(r) == RECORD_FIELDS for r in records)
    experiments = {r["experiment"] for r in records}
    assert experiments == {"outlier", "knock-out", "quasi-diagonal", "grafting"}
    assert all(r["optimizer"] and isinstance(r["predicted"], float) for r in records)
    index = json.loads((folder / "index.json").read_text())
    assert len(index["sections"]) == 4 and index["settings"]["size"] == "smoke"
    for section in index["sections"]:
        for figure in section["figures"]:
            assert (folder / figure["file"]).stat().st_size > 0


def test_smoke_build_meets_every_bound(smoke_report) -> None:
    report, _ = smoke_report
    results = report.agreement()
    assert {r.bound.experiment for r in results} == {"outlier", "quasi-diagonal", "grafting"}
    failing = [(r.bound.experiment, r.bound.optimizer, r.bound.quantity, r.value)
               for r in results if not r.holds]
    assert not failing
