"""models.quasi_diagonal: the quasi-diagonal step is GD in the coordinates of 001 Eq. (9) and
the preconditioner of 001 Eq. (10); the diagonal one is that curvature's diagonal."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from torch import nn

from scalewise.models.config import InputStatisticsConfig, ModelConfig, OptimizerConfig
from scalewise.models.networks import build_model
from scalewise.models.optimizer_factory import build_optimizer
from scalewise.models.probes import effective_lr_form
from scalewise.models.quasi_diagonal import DiagonalSecondMoment, QuasiDiagonal
from scalewise.theory.preconditioning import quasi_diagonal_curvature
from scalewise.vocabulary import Optimizer

N_IN, N_OUT, BATCH = 3, 2, 16


def _layer_and_batch(seed: int = 0) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(N_IN, N_OUT).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(N_OUT, N_IN, generator=generator, dtype=torch.float64))
        layer.bias.copy_(torch.randn(N_OUT, generator=generator, dtype=torch.float64))
    inputs = torch.randn(BATCH, N_IN, generator=generator, dtype=torch.float64) * 0.7 + 2.0
    targets = torch.randn(BATCH, N_OUT, generator=generator, dtype=torch.float64)
    return layer, inputs, targets


def _loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).sum(1).mean() / 2


def _stepped(optimizer_class, lr: float = 0.1):
    """The layer before and after one step of ``optimizer_class`` on one batch."""
    layer, inputs, targets = _layer_and_batch()
    before = [p.detach().clone() for p in (layer.weight, layer.bias)]
    optimizer = optimizer_class([layer], lr=lr, damping=0.0)
    _loss(layer(inputs), targets).backward()
    optimizer.step()
    return layer, inputs, targets, before


def test_quasi_diagonal_step_is_gd_in_reparameterized_coordinates() -> None:
    layer, inputs, targets, (weight, bias) = _stepped(QuasiDiagonal)
    mean, variance = inputs.mean(0), inputs.var(0, unbiased=False)  # the first batch's statistics
    sigma_sqrt = variance.sqrt()
    w_tilde = (weight * sigma_sqrt).requires_grad_()  # 001 Eq. (9)
    b_tilde = (bias + weight @ mean).requires_grad_()
    normalized = (inputs - mean) / sigma_sqrt  # 001 Eq. (7)
    _loss(normalized @ w_tilde.T + b_tilde, targets).backward()
    w_next = (w_tilde - 0.1 * w_tilde.grad).detach()
    b_next = (b_tilde - 0.1 * b_tilde.grad).detach()
    torch.testing.assert_close(layer.weight.detach(), w_next / sigma_sqrt, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.bias.detach(), b_next - (w_next / sigma_sqrt) @ mean,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("optimizer_class", [QuasiDiagonal, DiagonalSecondMoment],
                         ids=["quasi-diagonal", "diagonal"])
def test_step_is_the_theory_preconditioner(optimizer_class) -> None:
    """``-lr C^{-1} grad`` with ``C`` = 001 Eq. (10) (theory.preconditioning), or its diagonal."""
    layer, inputs, targets, (weight, bias) = _stepped(optimizer_class)
    weight_, bias_ = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    _loss(inputs @ weight_.T + bias_, targets).backward()
    mean, variance = inputs.mean(0).numpy(), inputs.var(0, unbiased=False).numpy()
    curvature = quasi_diagonal_curvature(sp.diag(*variance.tolist()), sp.Matrix(mean.tolist()),
                                         N_OUT)
    curvature = np.array(curvature, dtype=np.float64)
    if optimizer_class is DiagonalSecondMoment:
        curvature = np.diag(np.diag(curvature))
    grad = np.concatenate([weight_.grad.numpy().ravel(order="F"), bias_.grad.numpy()])
    step = -0.1 * np.linalg.solve(curvature, grad)  # column-stacking vec, as theory's
    moved = np.concatenate([(layer.weight - weight).detach().numpy().ravel(order="F"),
                            (layer.bias - bias).detach().numpy()])
    np.testing.assert_allclose(moved, step, rtol=1e-10, atol=1e-12)


def test_quasi_diagonal_ignores_an_input_shift() -> None:
    """Shifting the inputs by c and the bias by -W c gives the same function before and after
    a step: the outlier an input mean adds to the curvature does not reach the update."""
    shift = torch.full((N_IN,), 5.0, dtype=torch.float64)
    outputs = []
    for offset in (torch.zeros_like(shift), shift):
        layer, inputs, targets = _layer_and_batch()
        with torch.no_grad():
            layer.bias.sub_(layer.weight @ offset)
        optimizer = QuasiDiagonal([layer], lr=0.1, damping=0.0)
        _loss(layer(inputs + offset), targets).backward()
        optimizer.step()
        outputs.append(layer(inputs + offset).detach())
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-10)


def test_statistics_are_running_averages() -> None:
    layer, inputs, _ = _layer_and_batch()
    optimizer = QuasiDiagonal([layer], lr=0.1, stat_decay=0.5)
    layer(inputs[:8])
    layer(inputs[8:])
    with torch.no_grad():
        layer(inputs)  # not recorded: no grad
    state = optimizer.state[layer.weight]
    torch.testing.assert_close(state["mean"], (inputs[:8].mean(0) + inputs[8:].mean(0)) / 2)
    torch.testing.assert_close(state["second_moment"], (inputs**2).mean(0))


def test_state_dict_round_trip() -> None:
    layer, inputs, targets = _layer_and_batch()
    optimizer = QuasiDiagonal([layer], lr=0.1)
    _loss(layer(inputs), targets).backward()
    optimizer.step()
    twin, _, _ = _layer_and_batch()
    twin.load_state_dict(layer.state_dict())
    restored = QuasiDiagonal([twin], lr=0.5)
    restored.load_state_dict(optimizer.state_dict())
    optimizer.remove_hooks()
    restored.remove_hooks()
    for net, opt in ((layer, optimizer), (twin, restored)):
        opt.zero_grad()
        _loss(net(inputs), targets).backward()
        opt.step()
    torch.testing.assert_close(twin.weight, layer.weight, rtol=0, atol=0)
    torch.testing.assert_close(twin.bias, layer.bias, rtol=0, atol=0)


def test_step_before_statistics_is_refused() -> None:
    layer, inputs, targets = _layer_and_batch()
    optimizer = QuasiDiagonal([layer], lr=0.1)
    optimizer.remove_hooks()
    _loss(layer(inputs), targets).backward()
    with pytest.raises(ValueError, match="statistics"):
        optimizer.step()


@pytest.mark.parametrize("kwargs, name", [({"lr": 0.0}, "lr"), ({"lr": 0.1, "stat_decay": 1.0},
                                          "stat_decay"),
                                          ({"lr": 0.1, "damping": -1.0}, "damping")],
                         ids=["lr", "stat_decay", "damping"])
def test_bad_hyperparameters_are_refused(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        QuasiDiagonal([nn.Linear(2, 2)], **kwargs)


def test_layers_without_bias_are_refused() -> None:
    with pytest.raises(ValueError, match="layers"):
        DiagonalSecondMoment([nn.Linear(2, 2, bias=False)], lr=0.1)


@pytest.mark.parametrize("name, kind", [("quasi-diagonal", QuasiDiagonal),
                                        ("diagonal", DiagonalSecondMoment)],
                         ids=["quasi-diagonal", "diagonal"])
def test_a_run_config_builds_the_preconditioner_over_every_linear_layer(name, kind) -> None:
    model = build_model(ModelConfig(norm="none", width=4, depth=2), (3,), 2, seed=0)
    config = OptimizerConfig(name=name, lr=0.05,
                             statistics=InputStatisticsConfig(decay=0.9, damping=1e-3))
    optimizer = build_optimizer(model, config)
    assert type(optimizer) is kind and effective_lr_form(optimizer) is Optimizer(name)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [g["params"] for g in optimizer.param_groups] == [[m.weight, m.bias] for m in layers]
    assert all(g["damping"] == 1e-3 and g["stat_decay"] == 0.9 and g["lr"] == 0.05
               for g in optimizer.param_groups)
    assert Optimizer(name).properties.effective_lr_power == 2
