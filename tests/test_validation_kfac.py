"""The K-FAC validation suite: its pieces against exact ground truth, and a smoke build."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from scalewise import models
from scalewise.validation import kfac
from scalewise.validation.kfac import (
    affine_invariance,
    classification,
    curvature_traces,
    effective_damping,
    gauss_newton_norm,
    normalized_update,
    rescaling_immunity,
    runs,
    tuned_decay,
)
from scalewise.validation.report import RECORD_FIELDS, Report, load, spread_steps
from scalewise.validation.suite import Settings, Size

pytestmark = pytest.mark.usefixtures("suite_ray")  # one Ray for the runs


@pytest.fixture(scope="module")
def smoke_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    store = tmp_path_factory.mktemp("store") / "runs.db"
    return Settings(size=Size.SMOKE, store=str(store), progress=False)


def test_labels_and_changes() -> None:
    assert runs.label("kfac-g", "none") == "kfac-g"
    assert runs.label("kfac-f", "l2") == "kfac-f+l2"
    changes = runs.optimizer_changes("kfac-f", "decoupled")
    assert changes["optimizer.kfac.curvature"] == "fisher"
    assert changes["optimizer.weight_decay"] == runs.WEIGHT_DECAY
    assert runs.optimizer_changes("sgd", "none")["optimizer.weight_decay"] == 0.0


@pytest.mark.parametrize("optimizer, mode", [("adam", "none"), ("sgd", "wd")])
def test_optimizer_changes_rejects_unknown(optimizer: str, mode: str) -> None:
    with pytest.raises(ValueError, match="allowed"):
        runs.optimizer_changes(optimizer, mode)


def test_each_experiment_declares_its_sizes(smoke_settings: Settings) -> None:
    for module in (runs, gauss_newton_norm, rescaling_immunity, affine_invariance):
        assert set(module.SCALES) == set(Size)
        assert smoke_settings.scale(module.SCALES) is module.SCALES[Size.SMOKE]
    reference = Settings(size=Size.REFERENCE)
    assert len(runs.family_configs(reference)) > len(runs.family_configs(smoke_settings))


def _bn_mlp() -> torch.nn.Module:
    config = models.override(models.TrainConfig(), {"model.width": 8, "model.depth": 2})
    return models.build_model(config.model, (8, 8), 10, seed=0).double()


def test_first_hidden_trace_is_at_the_normalized_weights_and_scales_with_the_output() -> None:
    """Float64: rescaling a unit of the first (batch-normalized) hidden layer leaves the trace
    as it is; doubling the output weights multiplies it by 4, and the downstream scales are
    every batch norm's scale and the output weights."""
    model = _bn_mlp()
    inputs = torch.randn(16, 8, 8, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    base = curvature_traces.first_hidden_gn_trace(model, inputs)
    with torch.no_grad():
        model.hidden1.layer.weight[0].mul_(3.0)
    assert curvature_traces.first_hidden_gn_trace(model, inputs) == pytest.approx(base,
                                                                               rel=1e-6)
    scales = curvature_traces.downstream_scales(model)
    assert [s.shape for s in scales] == [(8,), (8,), (10, 8)]
    assert scales[-1] is model.output.weight
    with torch.no_grad():
        model.output.weight.mul_(2.0)
    assert curvature_traces.first_hidden_gn_trace(model, inputs) == pytest.approx(4 * base,
                                                                               rel=1e-9)


def test_log_correlation() -> None:
    x = np.array([1.0, 3.0, 10.0, 40.0])
    assert gauss_newton_norm.log_correlation(x, 2.5 * x) == pytest.approx(1.0, abs=1e-12)
    assert gauss_newton_norm.log_correlation(x, 1 / x) == pytest.approx(-1.0, abs=1e-12)


def test_relative_difference() -> None:
    reference = np.arange(1.0, 7.0).reshape(2, 3)
    np.testing.assert_allclose(rescaling_immunity.relative_difference(reference, 1.5 * reference), [0.5, 0.5])


@dataclass(frozen=True)
class DrivenCase:
    decay: float
    radial: float  # fraction of each step along -w (0: the premise of the recurrence)
    seed: int


def _trajectory(case: DrivenCase, lr: float = 0.05, steps: int = 200, dim: int = 8):
    """Exact ``||w_k||^2`` and angular updates of ``w+ = (1 - lr decay) w - lr d`` with
    random tangent ``d`` (plus ``radial`` times ``||d||`` along ``w_hat``), float64."""
    rng = np.random.default_rng(case.seed)
    w = torch.from_numpy(rng.standard_normal(dim))
    norms, angles = [float(w @ w)], []
    for _ in range(steps):
        d = torch.from_numpy(rng.standard_normal(dim)) * rng.uniform(0.5, 2.0)
        w_hat = w / w.norm()
        d = d - (d @ w_hat) * w_hat
        d = d + case.radial * d.norm() * w_hat
        after = (1 - lr * case.decay) * w - lr * d
        u, v = w / w.norm(), after / after.norm()
        angles.append(float(2 * torch.atan2((u - v).norm(), (u + v).norm())))
        w = after
        norms.append(float(w @ w))
    return np.array(norms), np.array(angles), lr


@pytest.mark.parametrize("case", [DrivenCase(0.0, 0.0, 0), DrivenCase(0.5, 0.0, 1)],
                         ids=["no-decay", "decoupled"])
def test_driven_norms_exact_for_tangent_steps(case: DrivenCase) -> None:
    norms, angles, lr = _trajectory(case)
    driven = effective_damping.driven_norm_sq(norms, angles, lr=lr, decoupled_decay=case.decay)
    np.testing.assert_allclose(driven, norms[:-1], rtol=1e-10)


def test_driven_norms_miss_a_radial_part() -> None:
    norms, angles, lr = _trajectory(DrivenCase(0.0, 0.05, 2))
    driven = effective_damping.driven_norm_sq(norms, angles, lr=lr, decoupled_decay=0.0)
    assert np.max(np.abs(driven / norms[:-1] - 1)) > 0.05


def test_kfac_step_is_theory_normalized_step(smoke_settings: Settings) -> None:
    checks = normalized_update.kfac_step_check(smoke_settings, "kfac-g", width=4, batch=64)
    assert {key.split("/")[0] for key in checks} == {"hidden1", "hidden2"}
    for key, check in checks.items():
        limit = 1e-10 if key.endswith("held") else normalized_update.RESCALED_FACTORS_LIMIT
        assert check["mismatch"] < limit, key
        assert check["measured_norm"] > 0


def test_rescaling_changes_sgd_but_not_undamped_kfac(smoke_settings: Settings) -> None:
    def loss_gap(optimizer: str, damping: float) -> float:
        runs = [rescaling_immunity.rescaled_trajectory(smoke_settings, optimizer, damping, c, 8)
                for c in (1.0, rescaling_immunity.RESCALE)]
        return float(np.max(np.abs(runs[1]["loss"] / runs[0]["loss"] - 1)))

    near_zero = loss_gap("kfac-g", rescaling_immunity.NEAR_ZERO_DAMPING)
    assert near_zero < 1e-3
    assert loss_gap("kfac-g", runs.DAMPING) > 10 * near_zero
    assert loss_gap("sgd", runs.DAMPING) > 1e-2


def test_reparameterized_network_computes_the_same_function(smoke_settings: Settings) -> None:
    width = smoke_settings.scale(runs.SCALES).bn_width
    _, model, inputs, _ = runs.float64_setup(smoke_settings, "kfac-g", width=width,
                                             damping=runs.DAMPING,
                                             changes=affine_invariance.CHANGES)
    assert model.training  # batch norm normalizes with the batch's statistics
    linear = model.get_submodule(affine_invariance.LAYER).layer
    assert linear.bias is None  # the batch-normalized layer: no bias to carry a shift
    matrix = affine_invariance.linear_map(smoke_settings.seed, width)
    singular = torch.linalg.svdvals(matrix)
    assert float(singular[0] / singular[-1]) == pytest.approx(affine_invariance.CONDITION)
    original = model(inputs).detach()
    weight = linear.weight.detach().clone()
    with pytest.raises(ValueError, match="no bias"):
        affine_invariance.reparameterize(model, affine_invariance.LAYER, matrix,
                                         torch.ones(width, dtype=torch.float64))
    torch.testing.assert_close(linear.weight.detach(), weight, rtol=0, atol=0)  # untouched
    mapped = affine_invariance.reparameterize(model, affine_invariance.LAYER, matrix,
                                              matrix.new_zeros(width))
    assert mapped.get_submodule("map").matrix is matrix and linear.bias is None
    torch.testing.assert_close(linear.weight.detach(), weight @ torch.linalg.inv(matrix))
    outputs = mapped(inputs).detach()
    assert float((outputs - original).norm() / original.norm()) < 1e-12


def test_affine_invariance_holds_for_undamped_kfac_only(smoke_settings: Settings) -> None:
    report = Report("kfac", "smoke")
    affine_invariance.affine_invariance(report, smoke_settings)
    steps = smoke_settings.scale(affine_invariance.SCALES).steps
    checkpoints = spread_steps(0, steps - 1, runs.CHECKPOINTS)
    labels = [rescaling_immunity.immunity_label(o, d) for o, d in rescaling_immunity.IMMUNITY_RUNS]
    assert [(r.experiment, r.optimizer, r.quantity) for r in report.records] == [
        ("affine_invariance", name, f"loss@{k}") for name in labels for k in checkpoints]
    [result] = report.agreement()
    assert result.holds and result.count == len(checkpoints), result.value
    curves = pd.concat(report.curves)
    near_zero = curves[(curves["optimizer"] == labels[0]) & (curves["quantity"] == "loss")]
    for _, run in near_zero.groupby("source"):  # both runs train
        losses = run.sort_values("step")["value"].to_numpy()
        assert np.isfinite(losses).all() and losses[-1] < losses[0] and losses.max() <= losses[0]
    first = curves[(curves["quantity"] == "outputs_rel_difference") & (curves["step"] == 0)]
    assert len(first) == len(labels) and (first["value"] < 1e-12).all()
    assert len(report.sections) == 1 and len(report.sections[0].figures) == 1


def test_classification_claims_are_paired_intervals_above_one_test_image() -> None:
    """Synthetic accuracies of 4 seeds: decoupled decay gains 2-3 test images on every seed
    for SGD (holds), Adam's decay equals its L2 (fails), a failed run's seed drops out of its
    pair; K-FAC gains more without batch norm."""
    image = classification.MIN_GAIN
    base = np.array([0.95, 0.96, 0.94, 0.95])
    accuracy = {key: base.copy() for key in classification.keys()}
    accuracy["bn", "sgd", "decoupled"] = base + np.array([2, 3, 2, 3]) * image
    accuracy["bn", "adam", "decoupled"] = accuracy["bn", "adam", "l2"] = base + 5 * image
    for optimizer in classification.KFAC:
        accuracy["no-bn", optimizer, "decoupled"] = base + np.array([4, 5, 4, np.nan]) * image
    intervals = classification.paired(accuracy)
    assert intervals["wd_gain", "sgd", "bn"].mean == pytest.approx(2.5 * image)
    assert intervals["kfac_bn_boost", "kfac-g", "no-bn"].n == 3
    records = classification.records(accuracy)
    results = {(b.quantity, b.optimizer): b.check(records) for b in classification.BOUNDS}
    assert results["wd_gain", "sgd"].holds and results["wd_gain", "adam"].holds
    assert not results["wd_gain", "kfac-g"].holds  # no gain at all
    assert not results["wd_over_l2", "adam"].holds
    assert results["kfac_bn_boost", "kfac-g"].holds
    assert "| wd_gain | decoupled weight decay" in classification.text(
        Settings(size=Size.SMOKE), accuracy, "")


def test_tuned_decay_picks_the_lowest_held_out_loss_and_pairs_the_seeds() -> None:
    """Synthetic finals of 3 seeds: SGD's held-out loss is lowest at 0.01, K-FAC-G's at 0.1;
    K-FAC-G's tuned run halves the Jacobian norm, SGD's cuts it by a tenth: the paper's order
    holds; with the two swapped it does not."""
    rows = []
    for optimizer, best, cut in (("sgd", 0.01, 0.9), ("kfac-g", 0.1, 0.5)):
        for decay in (0.0, 0.01, 0.1):
            for seed in range(3):
                rows.append({"optimizer": optimizer, "decay": decay, "seed": seed,
                             "jacobian_sq_norm": (10.0 + seed) * (cut if decay == best else 1),
                             "test_loss": 0.1 if decay == best else 0.2})
    finals = pd.DataFrame(rows)
    tuned = tuned_decay.tuned_decays(finals)
    assert tuned == {"sgd": 0.01, "kfac-g": 0.1}
    ratios = tuned_decay.jacobian_ratios(finals, tuned)
    np.testing.assert_allclose(ratios["sgd"], 0.9)
    np.testing.assert_allclose(ratios["kfac-g"], 0.5)
    assert tuned_decay.BOUND.check(tuned_decay.records(ratios)).holds
    swapped = {"sgd": ratios["kfac-g"], "kfac-g": ratios["sgd"]}
    assert not tuned_decay.BOUND.check(tuned_decay.records(swapped)).holds
    said = tuned_decay.text(Settings(size=Size.SMOKE), finals, tuned, ratios)
    assert "shrinks more under K-FAC-G" in said  # the smoke grid is (0, 0.01, 0.1):
    assert "sgd (the smallest), kfac-g (the largest)." in said  # both tuned to an end


def test_digits_has_the_test_images_the_claims_count_in() -> None:
    data = models.load_dataset(models.TrainConfig().data, seed=0)
    assert len(data.test) == classification.TEST_IMAGES


def test_smoke_build(smoke_settings: Settings, tmp_path) -> None:
    report = kfac.build(smoke_settings)
    folder = report.write(tmp_path / "kfac")
    records = json.loads((folder / "report.json").read_text())
    assert records and all(set(r) == set(RECORD_FIELDS) for r in records)
    experiments = {r["experiment"] for r in records}
    assert experiments == {"gauss_newton_norm", "tuned_decay", "classification",
                           "effective_damping", "normalized_update", "curvature_traces",
                           "rescaling_immunity", "affine_invariance"}
    # the one-sided claims are about trained networks: not at the smoke size
    results = [r for r in report.agreement()
               if r.bound.experiment not in ("classification", "tuned_decay")]
    assert results and all(r.holds for r in results), [
        (r.bound.experiment, r.bound.quantity, r.value) for r in results if not r.holds]
    loaded = load(folder)
    figures = [f["file"] for s in loaded.index["sections"] for f in s["figures"]]
    assert len(figures) == 9 and all((folder / f).exists() for f in figures)
    assert set(loaded.curves["experiment"]) >= {"jacobian_norm_table", "curvature_traces"}
    assert loaded.index["runs"] and loaded.index["settings"]["size"] == "smoke"


def test_diverging_fisher_run_is_marked_failed(tmp_path) -> None:
    """A K-FAC-F run whose outputs blow up comes back failed (no targets can be sampled from
    non-finite outputs; the suite leaves such runs out) instead of raising."""
    config = models.override(models.TrainConfig(checkpoint_every=0), {
        "model.norm": "none", "model.depth": 1, "model.width": 8, "steps": 40,
        "probe_every": 0, "costly_probe_every": 0, "eval_every": 0,
        **runs.optimizer_changes("kfac-f", "none"), "optimizer.lr": 50.0,
        "optimizer.kfac.damping": 1e-6})
    with models.RunStore(tmp_path / "runs.db") as store:
        run = models.train(config, store=store, progress=False)
    assert run.status is models.RunStatus.FAILED
    assert not np.isfinite(run.metrics.query("name == 'loss'")["value"].iloc[-1])
