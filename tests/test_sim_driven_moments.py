"""``sim.drive_moments``: given each update's tangential energy, the weight norm of momentum SGD
follows exactly (against torch's SGD), and the Adam family's does under an isotropic second
moment (against a vector simulation of that model); a gradient with a radial part breaks it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from scalewise.sim.driven_moments import drive_moments

STEPS, DIM, UNITS = 60, 6, 3


def _tangent(rng: np.random.Generator, w: np.ndarray, radial: float = 0.0) -> np.ndarray:
    """Random gradients orthogonal to each row of ``w`` (plus ``radial`` of their norm along
    ``w``), of varying size and correlated from step to step through ``w`` only."""
    g = rng.standard_normal(w.shape) * rng.uniform(0.2, 2.0, (w.shape[0], 1))
    w_hat = w / np.linalg.norm(w, axis=1, keepdims=True)
    g -= (g * w_hat).sum(axis=1, keepdims=True) * w_hat
    return g + radial * np.linalg.norm(g, axis=1, keepdims=True) * w_hat


def _tangent_energy(w: np.ndarray, u: np.ndarray) -> np.ndarray:
    return (u * u).sum(axis=1) - (w * u).sum(axis=1) ** 2 / (w * w).sum(axis=1)


def _sgdm_run(lr: float, wd: float, momentum: float, radial: float, seed: int):
    """torch's SGD with momentum and L2 on ``UNITS`` rows: the measured ``||w_k||^2`` and the
    tangential energies of the updates ``u = (1 - lr wd) w - w'``."""
    rng = np.random.default_rng(seed)
    w = torch.tensor(rng.standard_normal((UNITS, DIM)), requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=lr, momentum=momentum, weight_decay=wd)
    norms, energy = [], []
    for _ in range(STEPS):
        before = w.detach().numpy().copy()
        w.grad = torch.from_numpy(_tangent(rng, before, radial))
        optimizer.step()
        after = w.detach().numpy()
        norms.append((before * before).sum(axis=1))
        energy.append(_tangent_energy(before, (1 - lr * wd) * before - after))
    norms.append((after * after).sum(axis=1))
    return np.array(norms), np.array(energy)


def test_momentum_sgd_norm_follows_from_the_tangential_energy_exactly() -> None:
    norms, energy = _sgdm_run(lr=0.1, wd=0.05, momentum=0.9, radial=0.0, seed=0)
    predicted = drive_moments("sgdm", energy, lr=0.1, weight_decay=0.05, momentum=0.9,
                              init_norm_sq=norms[0])
    np.testing.assert_allclose(predicted, norms, rtol=1e-10, atol=0)


def test_a_radial_gradient_breaks_the_driven_momentum_model() -> None:
    norms, energy = _sgdm_run(lr=0.1, wd=0.05, momentum=0.9, radial=0.05, seed=1)
    predicted = drive_moments("sgdm", energy, lr=0.1, weight_decay=0.05, momentum=0.9,
                              init_norm_sq=norms[0])
    assert np.max(np.abs(predicted / norms - 1)) > 1e-2


@dataclass(frozen=True)
class AdamCase:
    name: str
    wd: float
    beta1: float
    beta2: float
    coupled: bool
    corrected: bool


ADAM_CASES = [AdamCase("adamw", 0.5, 0.9, 0.99, False, True),
              AdamCase("adam", 0.1, 0.9, 0.99, True, True),
              AdamCase("rmsprop", 0.1, 0.0, 0.9, True, False)]


@pytest.mark.parametrize("case", ADAM_CASES, ids=[c.name for c in ADAM_CASES])
def test_adam_family_under_an_isotropic_second_moment(case: AdamCase) -> None:
    """Vectors stepped by the model the driven moments assume: Adam's rule with one second
    moment per vector, ``v <- beta2 v + (1 - beta2) ||grad||^2 / d`` (torch's bias corrections
    and eps; the L2 term inside the gradient for Adam and RMSprop, the decoupled shrink for
    AdamW)."""
    rng = np.random.default_rng(3)
    lr, eps = 0.01, 1e-8
    w = rng.standard_normal((UNITS, DIM))
    m, v = np.zeros_like(w), np.zeros(UNITS)
    norms, energy, grad_sq = [], [], []
    for k in range(1, STEPS + 1):
        g = _tangent(rng, w)
        full = g + case.wd * w if case.coupled else g
        m = case.beta1 * m + (1 - case.beta1) * full
        v = case.beta2 * v + (1 - case.beta2) * (full * full).sum(axis=1) / DIM
        first = 1 - case.beta1**k if case.corrected else 1.0
        second = 1 - case.beta2**k if case.corrected else 1.0
        u = lr * m / (first * (np.sqrt(v / second) + eps))[:, None]
        shrink = 1.0 if case.coupled else 1 - lr * case.wd
        after = shrink * w - u
        norms.append((w * w).sum(axis=1))
        energy.append(_tangent_energy(w, u))
        grad_sq.append((g * g).sum(axis=1))
        w = after
    norms.append((w * w).sum(axis=1))
    predicted = drive_moments(case.name, np.array(energy), lr=lr, weight_decay=case.wd,
                              betas=(case.beta1, case.beta2), rmsprop_alpha=case.beta2,
                              eps=eps, grad_sq=np.array(grad_sq), dim=DIM,
                              init_norm_sq=norms[0])
    np.testing.assert_allclose(predicted, np.array(norms), rtol=1e-9, atol=0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(optimizer="sgd"), "optimizer = 'sgd' is invalid; allowed: one of sgdm, adamw"),
    (dict(optimizer="adam"), "grad_sq = None is invalid"),
    (dict(optimizer="adam", grad_sq=np.ones((4, 2)), dim=3), "grad_sq = .* allowed: an array "
                                                             "of shape \\(5, 2\\)"),
    (dict(optimizer="sgdm", tangent_energy=-np.ones((5, 2))), "tangent_energy = .* >= 0"),
])
def test_bad_input_is_named(kwargs: dict, match: str) -> None:
    arguments = {"optimizer": "sgdm", "tangent_energy": np.ones((5, 2)), "lr": 0.1,
                 "init_norm_sq": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        drive_moments(arguments.pop("optimizer"), arguments.pop("tangent_energy"), **arguments)
