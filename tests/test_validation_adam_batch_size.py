"""validation.effective_lr.adam_batch_size: its batch gradients are the network's, and its two
estimators recover a gradient law's known moments (seeded, against bounds declared here)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from scalewise.validation.effective_lr import adam_batch_size as experiment


def test_per_example_gradients_average_to_autograds_batch_gradient() -> None:
    gradients = experiment.per_example_gradients(seed=3)
    model, inputs, targets = experiment.network(3)
    batch = torch.tensor([5, 17, 17, 400, 1001])  # with a repeat, as drawn with replacement
    loss = F.cross_entropy(model(inputs[batch]), targets[batch])
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, model.parameters())])
    assert gradients.shape == (len(targets), expected.numel())
    torch.testing.assert_close(gradients[batch].mean(0), expected, rtol=1e-12, atol=1e-15)


def _law(mean: np.ndarray, spread: np.ndarray) -> torch.Tensor:
    """A two-point gradient law per coordinate, ``mean +- spread`` (population rows), whose
    mean and variance are exactly ``mean`` and ``spread^2``."""
    return torch.tensor(np.stack([mean + spread, mean - spread]))


def test_estimators_recover_the_second_moment_and_the_expected_step() -> None:
    mean, spread, size = np.array([0.3, -0.1, 0.02, 0.0]), np.array([1.0, 0.5, 0.2, 0.0]), 4
    moment, step = experiment.adam_statistics(_law(mean, spread), size, steps=6000, seed=0)
    predicted_moment = float((mean**2 + spread**2 / size).sum())
    predicted_step = float(np.linalg.norm(experiment._step(mean, spread, size)))
    assert abs(moment / predicted_moment - 1) < 0.05  # ~2000 batches in v_hat: a few % at most
    assert abs(step / predicted_step - 1) < 0.05


def test_the_step_estimator_carries_no_noise_energy() -> None:
    """On gradients of mean zero Adam's expected step is 0. The square of one quarter's mean
    step (1000 steps of unit-variance gradients) would be ``alpha^2 P / 1000`` of noise alone;
    the product of two independent quarters' mean steps has mean 0 and a spread of
    ``alpha^2 sqrt(P) / 1000``, six times smaller than a tenth of that at ``P = 4096``."""
    coordinates = 4096
    _, step = experiment.adam_statistics(_law(np.zeros(coordinates), np.ones(coordinates)), 1,
                                         steps=4000, seed=1)
    noise_energy = experiment.ALPHA**2 * coordinates / 1000
    assert step**2 < 0.1 * noise_energy
