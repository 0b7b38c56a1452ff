"""Driven mode: measured gradient norms in, predicted weight norms out."""

from __future__ import annotations

import numpy as np
import pytest

from scalewise import sim


def _explicit_sgd(w0: np.ndarray, loss: sim.RayleighQuotient, lrs: np.ndarray,
                  weight_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """A plain loop of SGD with coupled weight decay on explicit vectors: the measured norms
    ``||w_k||^2`` (``steps + 1``) and gradient norms at unit weight norm (``steps``)."""
    w, norms_sq, grad_norms = w0.copy(), [w0 @ w0], []
    for lr in lrs:
        r = np.linalg.norm(w)
        unit_grad = loss(w / r)
        grad_norms.append(np.linalg.norm(unit_grad))
        w = w - lr * (unit_grad / r + weight_decay * w)
        norms_sq.append(w @ w)
    return np.array(norms_sq), np.array(grad_norms)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["no-wd", "wd"])
def test_drive_reproduces_a_known_sgd_trajectory_exactly(weight_decay: float) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((10, 10))
    loss = sim.RayleighQuotient(a + a.T)
    schedule = sim.WarmupCosine(warmup_steps=20)
    steps, lr, w0 = 400, 0.05, 2.0 * rng.standard_normal(10)
    measured, grad_norms = _explicit_sgd(w0, loss, lr * schedule.factors(steps), weight_decay)
    t = sim.drive(grad_norms, lr=lr, weight_decay=weight_decay, schedule=schedule,
                  init_norm=np.linalg.norm(w0))
    np.testing.assert_allclose(t.norm_sq, measured[:-1], rtol=1e-12)
    np.testing.assert_allclose(t.final_norm_sq, measured[-1], rtol=1e-12)
    np.testing.assert_allclose(t.effective_lr, lr * schedule.factors(steps) / measured[:-1],
                               rtol=1e-12)


def test_drive_per_layer_columns_are_independent_runs() -> None:
    rng = np.random.default_rng(1)
    g = rng.uniform(0.5, 2.0, size=(300, 3))
    lr, wd, init = np.array([0.1, 0.2, 0.3]), np.array([0.0, 0.01, 0.02]), np.array([1.0, 2.0, 0.5])
    layers = sim.drive(g, lr=lr, weight_decay=wd, init_norm=init, record_every=7)
    assert layers.norm_sq.shape == (43, 3)
    for j in range(3):
        one = sim.drive(g[:, j], lr=lr[j], weight_decay=wd[j], init_norm=init[j], record_every=7)
        np.testing.assert_array_equal(layers.norm_sq[:, j], one.norm_sq)


def test_drive_with_constant_norms_equals_simulate() -> None:
    kwargs = dict(lr=0.05, weight_decay=0.1, momentum=0.9, dim=16, runs=4, seed=2)
    driven = sim.drive(np.full(200, 0.7), optimizer="sgdm", **kwargs)
    simulated = sim.simulate("sgdm", steps=200, grad_norm=0.7, **kwargs)
    assert driven.engine == "sphere"
    np.testing.assert_array_equal(driven.norm_sq, simulated.norm_sq)
