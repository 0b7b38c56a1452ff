"""The sphere engine: SGD on explicit vectors follows the exact recurrence; gradients are tangent
with the prescribed norm; losses, renormalisation, seeds and the array layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from scalewise import sim
from scalewise.sim.sphere import noise_gradient, random_unit_vectors


@dataclass(frozen=True)
class SgdCase:
    name: str
    weight_decay: float
    schedule: object
    loss: bool


SGD_CASES = [
    SgdCase("noise", 0.05, None, False),
    SgdCase("noise-step-decay", 0.05, sim.StepDecay((100,), 0.1), False),
    SgdCase("noise-no-wd", 0.0, sim.WarmupCosine(20), False),
]


@pytest.mark.parametrize("case", SGD_CASES, ids=[c.name for c in SGD_CASES])
def test_sphere_sgd_follows_the_recurrence_step_by_step(case: SgdCase) -> None:
    kwargs = dict(lr=np.array([0.1, 0.5]), weight_decay=case.weight_decay, steps=300,
                  grad_norm=0.8, init_norm=1.5, schedule=case.schedule)
    exact = sim.simulate("sgd", **kwargs)
    vectors = sim.simulate("sgd", **kwargs, engine="sphere", dim=16, runs=5, seed=3)
    assert vectors.norm_sq.shape == (300, 2, 5)
    # an angle measured between two float vectors carries an absolute rounding error of a few
    # ulps of 1 radian, hence atol for it
    for name, atol in (("norm_sq", 0), ("effective_lr", 0), ("angular_update", 1e-14)):
        actual = getattr(vectors, name)
        expected = np.broadcast_to(getattr(exact, name)[..., None], actual.shape)
        np.testing.assert_allclose(actual, expected, rtol=1e-11, atol=atol, err_msg=name)


def test_sphere_sgd_with_a_loss_follows_the_recurrence_driven_by_its_gradient_norms() -> None:
    """With a loss the gradient norm at unit norm varies; the norms still obey 001 Eq. (23)
    with the measured norms, which sim.drive takes."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    loss = sim.RayleighQuotient(a + a.T)
    t = sim.simulate("sgd", lr=0.3, weight_decay=0.02, steps=200, engine="sphere", dim=6,
                     runs=1, seed=1, loss_gradient=loss, keep_direction=True)
    g = np.linalg.norm(loss(t.direction[:, 0]), axis=-1)  # (steps,)
    driven = sim.drive(g, lr=0.3, weight_decay=0.02)
    np.testing.assert_allclose(t.norm_sq[:, 0], driven.norm_sq, rtol=1e-12)
    np.testing.assert_allclose(t.final_norm_sq[0], driven.final_norm_sq, rtol=1e-12)


def test_noise_gradients_are_tangent_unit_vectors() -> None:
    rng = np.random.default_rng(0)
    w_hat = random_unit_vectors(rng, (4, 3, 9))
    u = noise_gradient(rng, w_hat)
    np.testing.assert_allclose(np.linalg.norm(u, axis=-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.einsum("...d,...d->...", u, w_hat), 0.0, atol=1e-15)


def test_noise_directions_are_isotropic_in_the_tangent_space() -> None:
    """E[u u^T] = (I - w w^T) / (dim - 1) for a uniform tangent unit vector: checked on 20000
    draws against 5 standard errors of each entry (each entry has variance <= 1/dim^2)."""
    rng = np.random.default_rng(1)
    dim, n = 5, 20000
    w_hat = np.broadcast_to(random_unit_vectors(rng, (dim,)), (n, dim))
    u = noise_gradient(rng, w_hat)
    second = np.einsum("nd,ne->de", u, u) / n
    expected = (np.eye(dim) - np.outer(w_hat[0], w_hat[0])) / (dim - 1)
    assert np.max(np.abs(second - expected)) < 5 / (dim * np.sqrt(n))


@pytest.mark.parametrize("correlation", [-0.5, 0.0, 0.3, 0.9])
def test_correlated_noise_has_its_lag_1_correlation(correlation: float) -> None:
    """At a fixed point on the sphere of dimension 256, 4000 steps of 8 runs: unit tangent
    directions whose mean lag-1 correlation is ``correlation`` within ``5 (1 + |c|) /
    sqrt(samples)`` (samples: the coordinates of every pair of consecutive directions)."""
    rng = np.random.default_rng(2)
    w_hat = random_unit_vectors(rng, (8, 256))
    noise = sim.CorrelatedNoise(correlation, seed=3)
    u = np.stack([noise(w_hat) for _ in range(4000)])  # (steps, runs, dim)
    np.testing.assert_allclose(np.linalg.norm(u, axis=-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.einsum("...d,...d->...", u, w_hat), 0.0, atol=1e-14)
    lag_1 = np.einsum("krd,krd->", u[1:], u[:-1]) / (u.shape[0] - 1) / u.shape[1]
    assert abs(lag_1 - correlation) < 5 * (1 + abs(correlation)) / np.sqrt(u[1:, :, :].size)


@pytest.mark.parametrize("correlation", [-1.0, 1.0, 2.0, float("nan")])
def test_correlated_noise_refuses_a_correlation_outside_minus_1_to_1(correlation: float) -> None:
    with pytest.raises(ValueError, match="correlation"):
        sim.CorrelatedNoise(correlation)


def test_rayleigh_quotient_gradient_equals_autograd() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((5, 5))
    loss = sim.RayleighQuotient(a + a.T)
    w_hat = random_unit_vectors(rng, (3, 5))
    w = torch.tensor(w_hat, requires_grad=True)
    m = torch.tensor(a + a.T)
    value = ((w @ m) * w).sum(-1) / (w * w).sum(-1)
    value.sum().backward()
    np.testing.assert_allclose(loss(w_hat), w.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(loss.value(3 * w_hat), value.detach().numpy(), rtol=1e-13)


def test_a_gradient_with_a_radial_part_is_rejected() -> None:
    with pytest.raises(ValueError, match="tangent"):
        sim.simulate("adam", lr=0.1, steps=3, engine="sphere", dim=4, loss_gradient=lambda w: w)
    with pytest.raises(ValueError, match="shape"):
        sim.simulate("adam", lr=0.1, steps=3, engine="sphere", dim=4,
                     loss_gradient=lambda w: w[..., :2])


@pytest.mark.parametrize("optimizer", ["sgdm", "adam", "rmsprop"])
def test_renormalised_runs_stay_on_the_unit_sphere(optimizer: str) -> None:
    momentum = 0.9 if optimizer == "sgdm" else 0.0
    t = sim.simulate(optimizer, lr=0.1, weight_decay=0.1, momentum=momentum, steps=50,
                     engine="sphere", dim=8, runs=3, renormalize=True)
    np.testing.assert_allclose(t.norm_sq[1:], 1.0, rtol=1e-14)
    np.testing.assert_allclose(t.final_norm_sq, 1.0, rtol=1e-14)


def test_runs_are_reproducible_from_the_seed_and_differ_across_seeds() -> None:
    kwargs = dict(lr=0.01, weight_decay=0.1, steps=40, engine="sphere", dim=8, runs=2)
    a, b = sim.simulate("adam", **kwargs, seed=5), sim.simulate("adam", **kwargs, seed=5)
    c = sim.simulate("adam", **kwargs, seed=6)
    np.testing.assert_array_equal(a.norm_sq, b.norm_sq)
    assert not np.allclose(a.norm_sq[1:], c.norm_sq[1:])


def test_grid_and_runs_layout() -> None:
    t = sim.simulate("adamw", lr=np.array([1e-3, 1e-2, 1e-1])[:, None],
                     weight_decay=np.array([0.0, 0.1])[None, :], steps=30, engine="sphere",
                     dim=4, runs=7, record_every=10)
    assert t.norm_sq.shape == t.effective_lr.shape == t.angular_update.shape == (3, 3, 2, 7)
    assert t.final_norm_sq.shape == (3, 2, 7)
    assert t.run_mean("norm_sq").shape == (3, 3, 2)
    np.testing.assert_array_equal(t.step, [0, 10, 20])
