"""models.comparison: a run whose metrics follow 001 Eq. (23) exactly is predicted exactly, a
real digits run closely, and runs outside the recurrence's premises are refused."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from scalewise import models
from scalewise.models.store import Run, RunStatus, RunStore
from scalewise.theory import equilibrium as eq
from scalewise.validation import comparison


def synthetic_run(grad_norms: np.ndarray, *, init_norm_sq: float, cos: float = 0.0) -> Run:
    """A stored-run stand-in for the preset digits-bn-sgd whose one layer obeys 001 Eq. (23)
    exactly with the given per-step gradient norms (steps,)."""
    config = models.preset("digits-bn-sgd")
    lr, wd = config.optimizer.lr, config.optimizer.weight_decay
    x = [init_norm_sq]
    for g in grad_norms:
        x.append(float(eq.norm_sq_step(x[-1], lr, wd, g)))
    x = np.array(x)  # (steps + 1,)
    steps = np.arange(len(grad_norms))
    per_step = {
        "grad_norm_unit": grad_norms,
        "effective_lr": eq.effective_lr(x[:-1], lr),
        "angular_update": eq.angular_update(x[:-1], lr, wd, grad_norms),
        "cos_w_grad": np.full(len(steps), cos),
    }
    frames = [pd.DataFrame({"step": np.arange(len(x)), "layer": "hidden", "name": "norm_sq",
                            "value": x})]
    frames += [pd.DataFrame({"step": steps, "layer": "hidden", "name": name, "value": values})
               for name, values in per_step.items()]
    metrics = pd.concat(frames, ignore_index=True)
    return Run("synthetic", config.name, config, RunStatus.COMPLETED, "", "", "", "", metrics)


def test_exact_recurrence_is_predicted_exactly() -> None:
    grads = np.random.default_rng(0).uniform(0.5, 2.0, size=400)
    table = comparison.compare_run(synthetic_run(grads, init_norm_sq=1.7))
    for quantity in comparison.QUANTITIES:
        rows = table[table["quantity"] == quantity]
        measured = rows[rows["source"] == "measured"]["value"].to_numpy()
        driven = rows[rows["source"] == "driven"]["value"].to_numpy()
        np.testing.assert_allclose(driven, measured, rtol=1e-12, atol=0)


def test_equilibrium_is_reached_by_a_long_constant_gradient_run() -> None:
    # lr * wd = 5e-4: deviations shrink by ~1 - 2e-3 per step, e^-9 in 4500 steps
    run = synthetic_run(np.full(4500, 1.3), init_norm_sq=3.0)
    errors = comparison.relative_errors(comparison.compare_run(run),
                                        comparison.invariant_layers(run.metrics))
    assert errors["scale_invariant"].all()
    assert (errors["equilibrium"] < 1e-3).all(), errors
    assert (errors["driven_median"] < 1e-12).all(), errors


def test_a_layer_not_orthogonal_to_its_gradient_is_flagged() -> None:
    run = synthetic_run(np.ones(10), init_norm_sq=1.0, cos=0.3)
    assert comparison.invariant_layers(run.metrics) == {"hidden": False}


@dataclass(frozen=True)
class Refused:
    id: str
    changes: dict
    message: str


REFUSED = [
    Refused("adamw", {"optimizer.name": "adamw", "optimizer.lr": 1e-3,
                      "optimizer.wd_mode": "decoupled"}, "plain SGD only"),
    Refused("decoupled", {"optimizer.wd_mode": "decoupled"}, "wd_mode 'decoupled'"),
    Refused("renormalized", {"optimizer.renormalize": True, "optimizer.weight_decay": 0.0,
                             "optimizer.wd_mode": "none"}, "renormalization"),
]


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.id)
def test_runs_outside_the_recurrence_are_refused(case: Refused) -> None:
    config = models.override(models.preset("digits-bn-sgd"), case.changes)
    run = Run("r", config.name, config, RunStatus.COMPLETED, "", "", "", "",
              synthetic_run(np.ones(5), init_norm_sq=1.0).metrics)
    with pytest.raises(ValueError, match=case.message):
        comparison.compare_run(run)


def test_a_real_digits_run_follows_its_driven_recurrence(tmp_path) -> None:
    config = models.override(models.preset("digits-bn-sgd"), {"steps": 60, "device": "cpu"})
    with RunStore(tmp_path / "store.sqlite") as store:
        run = models.train(config, store=store, progress=False)
    invariant = comparison.invariant_layers(run.metrics)
    errors = comparison.relative_errors(comparison.compare_run(run), invariant)
    normalized = errors[errors["scale_invariant"] & (errors["quantity"] == "norm_sq")]
    assert len(normalized) >= 1 and not all(invariant.values())
    # per-unit norms differ, the recurrence is driven by their layer mean: percent-level at most
    assert (normalized["driven_median"] < 0.02).all(), normalized


def test_a_run_not_probed_at_every_step_is_refused() -> None:
    run = synthetic_run(np.ones(6), init_norm_sq=1.0)
    sparse = run.metrics[run.metrics["step"] % 2 == 0]
    thinned = Run(run.id, run.name, run.config, run.status, "", "", "", "", sparse)
    with pytest.raises(ValueError, match="probe_every = 1"):
        comparison.compare_run(thinned)


def test_seeds_of_matches_all_but_seed_and_device() -> None:
    base = models.preset("digits-bn-sgd")
    configs = {"a": base, "b": models.override(base, {"seed": 3, "device": "cpu"}),
               "c": models.override(base, {"steps": base.steps + 1})}
    assert comparison.seeds_of(base, configs) == ["a", "b"]


def _units(ratio_last: float) -> pd.DataFrame:
    """Two steps of three units; at the last step measured / predicted is ``ratio_last`` for
    the median unit."""
    return pd.DataFrame({"step": [0, 0, 0, 1, 1, 1], "unit": [0, 1, 2] * 2,
                         "measured": [1.0, 1.0, 1.0, 1.0, 2.0, 9.0],
                         "predicted": [1.0, 1.0, 1.0, 1.0 / 0.5, 2.0 / ratio_last, 9.0 / 5]})


def test_seed_interval_pools_the_median_unit_ratio_at_the_last_step() -> None:
    assert comparison.last_unit_ratio(_units(1.2)) == pytest.approx(1.2)
    found = comparison.seed_interval([_units(0.9), _units(1.0), _units(1.1)])
    assert found.n == 3 and found.mean == pytest.approx(1.0)
    assert found.low < 0.9 and found.high > 1.1
    single = comparison.seed_interval([_units(1.0)])
    assert single.n == 1 and np.isnan(single.low)
