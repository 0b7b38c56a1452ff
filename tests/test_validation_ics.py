"""validation.ics: the pieces of the ICS suite against exact ground truth, its runs trained by
models.train into the store, and a smoke build."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch

from scalewise import models
from scalewise.models.data import whitened_inputs
from scalewise.models.grafting import AdaGraft
from scalewise.models.store import RunStatus, RunStore
from scalewise.theory import kronecker
from scalewise.validation import Size, ics
from scalewise.validation.estimators import interval
from scalewise.validation.ics import (
    curvature,
    dead_units,
    grafting,
    knock_out,
    outlier_eigenvalues,
    runs,
    stochastic_regularization,
)
from scalewise.validation.ics import quasi_diagonal as qd
from scalewise.validation.report import RECORD_FIELDS
from scalewise.validation.suite import Settings

pytestmark = pytest.mark.usefixtures("suite_ray")  # one Ray for the runs


def test_gauss_newton_block_of_a_linear_model_is_the_kronecker_form() -> None:
    """For logits ``W x`` the GN block is ``(1/N) sum_n x_n x_n^T (x) H_n`` exactly."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    w = torch.randn(2 * 3, generator=generator, dtype=torch.float64)  # W (2, 3) row-major
    block = curvature.gauss_newton_block(lambda theta: x @ theta.reshape(2, 3).T, w)
    p = (x @ w.reshape(2, 3).T).softmax(1)
    expected = sum(torch.kron(torch.diag(q) - torch.outer(q, q), torch.outer(a, a))
                   for a, q in zip(x, p)) / 6  # row-major vec: H (x) x x^T
    torch.testing.assert_close(block, expected, rtol=1e-12, atol=1e-12)


def _first_layer_block(variant: str, mean_norm: float, base: torch.Tensor) -> torch.Tensor:
    model = outlier_eigenvalues.tiny_network(outlier_eigenvalues.VARIANTS[variant], mean_norm,
                                             seed=0)
    return curvature.gauss_newton_block(curvature.first_layer_logits(model, base, variant),
                                        curvature.first_layer_theta(model, base, variant))


@pytest.mark.parametrize("variant", ["center", "bn", "quasi-diagonal"])
def test_centering_makes_the_gn_block_shift_invariant(variant: str) -> None:
    base = whitened_inputs(32, 16, torch.Generator().manual_seed(1), centered=True)
    blocks = [_first_layer_block(variant, mean_norm, base) for mean_norm in (0.0, 12.0)]
    torch.testing.assert_close(blocks[0], blocks[1], rtol=1e-9, atol=1e-12)


def test_plain_gn_block_grows_with_the_shift() -> None:
    base = whitened_inputs(32, 16, torch.Generator().manual_seed(1), centered=True)
    tops = [float(torch.linalg.eigvalsh(_first_layer_block("none", mean_norm, base))[-1])
            for mean_norm in (0.0, 8.0)]
    assert tops[1] > 10 * tops[0]  # ||m||^2 = 64: the outlier factor nu ~ 66


def test_tiny_network_computes_one_function_at_every_shift() -> None:
    base = whitened_inputs(32, 16, torch.Generator().manual_seed(2), centered=True)
    outputs = [outlier_eigenvalues.tiny_network("none", mean_norm, seed=0)(base)
               for mean_norm in (0.0, 8.0)]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)
    shifted = outlier_eigenvalues.tiny_network("none", 8.0, seed=0)
    a = curvature.linear_inputs(shifted, base)[curvature.first_linear(shifted)[0]]
    assert float(a.mean(0).norm()) == pytest.approx(8.0, rel=1e-12)


def test_range_condition_ignores_null_directions() -> None:
    assert curvature.range_condition(torch.tensor([0.0, 1e-14, 2.0, 8.0])) == pytest.approx(4.0)


def test_smoothed_is_a_trailing_mean() -> None:
    values = np.arange(10.0)
    out = runs.smoothed(values, window=3)
    np.testing.assert_allclose(out, [0, 0.5, 1, 2, 3, 4, 5, 6, 7, 8])
    assert math.isnan(runs.smoothed(np.array([1.0, np.nan, 1.0]), window=2)[1])


def test_steps_to() -> None:
    assert runs.steps_to(np.array([3.0, 2.0, 1.0]), 2.0) == 1
    assert math.isnan(runs.steps_to(np.array([3.0, 2.0]), 0.5))


def test_factor_prediction_is_exact_for_isotropic_activations() -> None:
    """``sigma^2 (1 + ||m||^2 / sigma^2)`` is the top eigenvalue of ``sigma^2 I + m m^T``."""
    mean, sigma_sq = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64), 0.3
    second = sigma_sq * torch.eye(3, dtype=torch.float64) + torch.outer(mean, mean)
    predicted = sigma_sq * float(kronecker.outlier_eigenvalue(float(mean @ mean) / sigma_sq))
    assert float(torch.linalg.eigvalsh(second)[-1]) == pytest.approx(predicted, rel=1e-12)


def test_losses_of_a_diverged_run_are_nan_from_the_divergence() -> None:
    config = runs.config(0, 6, {"optimizer.lr": 0.1})
    metrics = pd.DataFrame({"step": [0, 1, 2, 3], "layer": "", "name": "loss",
                            "value": [2.0, 1.5, math.inf, 1.0]})
    run = models.Run("r", "", config, RunStatus.FAILED, "", "", "", "diverged", metrics)
    np.testing.assert_array_equal(runs.losses(run), [2.0, 1.5] + [np.nan] * 4)
    assert math.isnan(runs.final(run, "train_loss"))


def test_grafted_step_check_holds_on_adagraft_and_fails_on_a_direction_step() -> None:
    """The check sees AdaGraft's identity; a step along the direction optimizer's own step
    (the magnitude not grafted) misses the magnitude."""
    config = runs.config(0, 4, grafting.GRAFT_RUNS["graft:adam>sgd"])
    state = models.training.initial_state(config)
    train = models.training.run_data(config).train
    rows = pd.DataFrame(grafting.check_steps(state, train.inputs, train.targets))
    assert len(rows) == grafting.CHECKS * len(list(state.model.parameters()))
    np.testing.assert_allclose(rows["grafted_norm"], rows["magnitude_norm"], rtol=1e-10)
    np.testing.assert_allclose(rows["cosine"], 1.0, atol=1e-12)
    ungrafted = AdaGraft(state.optimizer.magnitude, state.optimizer.direction)
    ungrafted.step = ungrafted.direction.step  # the direction's step, its own magnitude
    batch = state.sampler.next()
    control = pd.DataFrame(grafting.check_step(state.model, ungrafted, train.inputs[batch],
                                               train.targets[batch], state.step))
    np.testing.assert_allclose(control["cosine"], 1.0, atol=1e-12)
    assert not np.allclose(control["grafted_norm"], control["magnitude_norm"], rtol=1e-3)


def test_positive_counts_counts_the_examples_each_unit_fires_on() -> None:
    """Hand-set weights: unit 0 fires on the examples with a positive first input, unit 1 on
    none (bias far below 0: dead), unit 2 on all; then a batch norm whose running mean is set,
    counted before its scale and shift (a shift of -100 kills every unit after it)."""
    first = torch.nn.Linear(2, 3)
    norm = torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        first.bias.copy_(torch.tensor([0.0, -100.0, 1.0]))
        norm.running_mean.copy_(torch.tensor([0.5, -0.5]))
        norm.bias.fill_(-100.0)
    second = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        second.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]))
    model = torch.nn.Sequential(first, torch.nn.ReLU(), second, norm, torch.nn.ReLU()).train()
    inputs = torch.tensor([[1.0, 2.0], [-1.0, 3.0], [2.0, -5.0], [0.0, 0.0]])
    relu, normalized = dead_units.positive_counts(model, inputs)
    # second layer's inputs: (1, 0, 2, 0) and (-1, -1, -1, -1) against running means 0.5, -0.5
    assert [c.tolist() for c in relu] == [[2, 0, 4], [0, 0]]
    assert [c.tolist() for c in normalized] == [[2, 0]]
    assert model.training  # the mode it had is restored
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_dead_unit_records_leave_diverged_runs_out_and_the_bound_needs_zero() -> None:
    alive, dead = dead_units.Activity(0, 64, 0, 0), dead_units.Activity(2, 64, 1, 1)
    activities = {("bn", 0.1): [alive, dead], ("none", 0.1): [dead, None]}
    records = dead_units.records(activities)
    assert [(r.optimizer, r.layer, r.quantity, r.measured) for r in records] == [
        ("sgd+bn", "lr0.1 seed0", "dead_fraction", 0.0),
        ("sgd+bn", "lr0.1 seed0", "normalized_dead_fraction", 0.0),
        ("sgd+bn", "lr0.1 seed1", "dead_fraction", 2 / 64),
        ("sgd+bn", "lr0.1 seed1", "normalized_dead_fraction", 1 / 64),
        ("sgd+none", "lr0.1 seed0", "dead_fraction", 2 / 64)]
    assert not dead_units.BOUND.check(records).holds
    assert dead_units.BOUND.check(dead_units.records({("bn", 0.1): [alive, alive]})).holds


def test_knock_out_takes_each_variants_best_rate_and_pairs_the_seeds() -> None:
    """Synthetic steps to the threshold over 3 seeds: BN is fastest at 0.1, the mild knock-out
    at 0.3 (1.1x BN's steps, seed by seed: within the margin), BN after the ReLU at 0.1 and
    faster than BN before (BN before / after = 1.25: over its margin); a rate where a seed never
    reaches the threshold is not a candidate."""
    never = np.nan
    base = np.array([100.0, 120.0, 80.0])
    steps = {(v, lr): base * 3 for v in knock_out.VARIANTS for lr in knock_out.LEARNING_RATES}
    steps["bn", 0.1] = base
    steps["knockout", 0.3] = base * 1.1
    steps["knockout", 0.03] = np.array([10.0, never, 10.0])
    steps["bn-after", 0.1] = base / 1.25
    best = knock_out.best_rates(steps)
    assert (best["bn"], best["knockout"], best["bn-after"]) == (0.1, 0.3, 0.1)
    ratios = knock_out.paired_ratios({v: steps[v, best[v]] for v in knock_out.VARIANTS})
    assert ratios["knockout"].mean == pytest.approx(1.1) and ratios["knockout"].n == 3
    results = {b.quantity: b.check(knock_out.ratio_records(ratios)) for b in knock_out.BOUNDS}
    assert results["steps_ratio"].holds
    assert not results["before_after_ratio"].holds


def test_stochastic_regularization_takes_the_difference_in_differences_per_seed() -> None:
    """Synthetic gaps of 3 seeds: batch norm's grows by 0.1 from the small batch to the large
    one, layer norm's by 0.02 to 0.04: the claim holds; with the networks swapped it does not."""
    small, large = stochastic_regularization.BATCH_SIZES
    gaps = {("bn", small): np.array([0.2, 0.3, 0.25]), ("bn", large): np.array([0.3, 0.4, 0.35]),
            ("ln", small): np.array([0.2, 0.2, 0.2]), ("ln", large): np.array([0.22, 0.23, 0.24])}
    difference = stochastic_regularization.gap_difference(gaps)
    np.testing.assert_allclose(difference, [0.08, 0.07, 0.06])
    bound = stochastic_regularization.BOUND
    holds = stochastic_regularization.records(gaps, interval(difference))
    assert bound.check(holds).holds
    swapped = {(("ln" if n == "bn" else "bn"), b): g for (n, b), g in gaps.items()}
    fails = stochastic_regularization.records(
        swapped, interval(stochastic_regularization.gap_difference(swapped)))
    assert not bound.check(fails).holds


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, object, Settings]]:
    """The smoke build and its written folder. Module scope sets up before the per-test
    one-thread fixture, so it keeps torch at one thread itself and restores the setting."""
    folder = tmp_path_factory.mktemp("ics")
    settings = Settings(size=Size.SMOKE, store=str(folder / "runs.sqlite"), progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = ics.build(settings)
    finally:
        torch.set_num_threads(threads)
    report.write(folder / "report")
    yield report, folder / "report", settings


def test_smoke_build_writes_records_with_the_schema(smoke) -> None:
    report, folder, _ = smoke
    records = json.loads((folder / "report.json").read_text())
    assert records and all(tuple(r) == RECORD_FIELDS for r in records)
    experiments = {r["experiment"] for r in records}
    assert experiments == {"outlier", "dead_units", "stochastic_regularization", "knock-out",
                           "quasi-diagonal", "grafting"}
    assert all(r["optimizer"] and isinstance(r["predicted"], float) for r in records)
    index = json.loads((folder / "index.json").read_text())
    assert len(index["sections"]) == 6 and index["settings"]["size"] == "smoke"
    for section in index["sections"]:
        for figure in section["figures"]:
            assert (folder / figure["file"]).stat().st_size > 0


def test_smoke_build_meets_every_bound(smoke) -> None:
    report, _, _ = smoke
    results = report.agreement()
    assert {r.bound.experiment for r in results} == {
        "outlier", "dead_units", "stochastic_regularization", "knock-out", "quasi-diagonal",
        "grafting"}
    # the claims about trained networks (speed, generalization) hold or miss at the reference size
    speed = ("steps_ratio", "before_after_ratio", "gap_difference")
    failing = [(r.bound.experiment, r.bound.optimizer, r.bound.quantity, r.value)
               for r in results if not r.holds and r.bound.quantity not in speed]
    assert not failing


def test_smoke_runs_are_stored_trained_by_models_and_reused(smoke) -> None:
    report, _, settings = smoke
    scale = settings.scale(knock_out.SCALES)
    with RunStore(settings.store) as store:
        stored = store.runs()
        assert set(report.runs) <= set(stored["id"])
        assert all(store[run_id].config.precision is models.Precision.FLOAT64
                   for run_id in stored["id"])
    expected = (1 + len(knock_out.VARIANTS) * len(knock_out.LEARNING_RATES) * scale.seeds
                + len(dead_units.NORMS) * len(dead_units.LEARNING_RATES)
                * settings.scale(dead_units.SCALES).seeds
                + len(stochastic_regularization.NORMS) * len(stochastic_regularization.BATCH_SIZES)
                * settings.scale(stochastic_regularization.SCALES).seeds
                + len(qd.PRECONDITIONERS) * (settings.scale(qd.SCALES).lr_grid + 1)
                + sum(len(grafting.LEARNING_RATES[changes["optimizer.name"]])
                      for changes in grafting.GRAFT_RUNS.values())
                * settings.scale(grafting.SCALES).seeds)
    assert len(stored) == expected
    before = stored.sort_values("id")["updated"].tolist()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        knock_out.variant_runs(settings)  # finished runs come back from the store
    finally:
        torch.set_num_threads(threads)
    with RunStore(settings.store) as store:
        assert store.runs().sort_values("id")["updated"].tolist() == before
