"""Lion, Muon, Nesterov SGD and the corrected decoupled decay on real networks: Lion against a
hand computation, Muon on convolution kernels and vectors, the factory and the probes' reading
of each, and the corrected decay's per-step rate. Float64."""

from __future__ import annotations

import pytest
import torch

from scalewise.models.config import (
    Arch,
    ModelConfig,
    Norm,
    Optimizer,
    OptimizerConfig,
    Schedule,
    TrainConfig,
    WeightDecayMode,
)
from scalewise.models.lion import Lion
from scalewise.models.muon import MatrixMuon, as_matrix
from scalewise.models.networks import build_model
from scalewise.models.optimizer_factory import build_optimizer
from scalewise.models.probes import effective_lr_form
from scalewise.models.training import schedule


def test_lion_matches_a_hand_computation_step_by_step() -> None:
    """Chen et al. (2023), Program 1, three steps on fixed gradients, every number by hand."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    lion = Lion([w], lr=0.1, betas=(0.5, 0.75), weight_decay=0.2)
    grads = [[1.0, 2.0, -3.0], [-4.0, 0.5, 1.0], [0.1, -0.1, 0.0]]
    # step 1: c = 0.5 g = (0.5, 1, -1.5): sign (1, 1, -1); w = 0.98 w - 0.1 sign
    #         m = 0.25 g = (0.25, 0.5, -0.75)
    # step 2: c = 0.5 m + 0.5 g = (-1.875, 0.5, 0.125): sign (-1, 1, 1)
    #         m = 0.75 m + 0.25 g = (-0.8125, 0.5, -0.3125)
    # step 3: c = 0.5 m + 0.5 g = (-0.35625, 0.2, -0.15625): sign (-1, 1, -1)
    expected = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    for sign in ([1, 1, -1], [-1, 1, 1], [-1, 1, -1]):
        expected = 0.98 * expected - 0.1 * torch.tensor(sign, dtype=torch.float64)
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        lion.step()
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(lion.state[w]["exp_avg"],
                               torch.tensor([-0.58437500, 0.35, -0.234375],
                                            dtype=torch.float64), rtol=0, atol=1e-15)


def test_lion_refuses_bad_betas() -> None:
    with pytest.raises(ValueError, match=r"betas\[1\] = 1.5 is invalid"):
        Lion([torch.nn.Parameter(torch.zeros(2))], betas=(0.9, 1.5))


def test_muon_flattens_a_kernel_and_equals_torch_on_the_flat_matrix() -> None:
    """A (4, 3, 2, 2) kernel steps as torch's Muon steps the (4, 12) matrix."""
    gen = torch.Generator().manual_seed(0)
    kernel = torch.nn.Parameter(torch.randn(4, 3, 2, 2, generator=gen))
    flat = torch.nn.Parameter(kernel.detach().reshape(4, 12).clone())
    ours = MatrixMuon([kernel], lr=0.05, weight_decay=0.1)
    theirs = torch.optim.Muon([flat], lr=0.05, weight_decay=0.1)
    for _ in range(3):
        grad = torch.randn(4, 3, 2, 2, generator=gen)
        kernel.grad, flat.grad = grad.clone(), grad.reshape(4, 12).clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(as_matrix(kernel.detach()), flat.detach(), rtol=0, atol=0)


def test_muon_on_a_vector_is_normalized_momentum_descent_to_newton_schulz_accuracy() -> None:
    """A bias is a 1 x n matrix: its polar factor is its direction; torch's five Newton-Schulz
    iterations in bfloat16 leave the singular value within about [0.7, 1.2]."""
    bias = torch.nn.Parameter(torch.zeros(8))
    muon = MatrixMuon([bias], lr=1.0, weight_decay=0.0)
    bias.grad = torch.arange(1.0, 9.0)
    muon.step()
    step = -bias.detach()
    cosine = torch.dot(step, bias.grad) / (step.norm() * bias.grad.norm())
    assert cosine > 0.99
    assert 0.6 < step.norm() < 1.3


def _model() -> torch.nn.Module:
    return build_model(ModelConfig(arch=Arch.VGG, norm=Norm.BATCH, width=4, depth=2),
                       (1, 8, 8), 3, seed=0).double()


@pytest.mark.parametrize("name,kind", [(Optimizer.NESTEROV, torch.optim.SGD),
                                       (Optimizer.LION, Lion), (Optimizer.MUON, MatrixMuon)],
                         ids=lambda v: getattr(v, "value", getattr(v, "__name__", "")))
def test_factory_builds_each_and_the_probes_read_it_back(name: Optimizer, kind: type) -> None:
    config = OptimizerConfig(name=name, lr=0.01, weight_decay=0.1,
                             wd_mode=WeightDecayMode.L2 if name is Optimizer.NESTEROV
                             else WeightDecayMode.DECOUPLED)
    optimizer = build_optimizer(_model(), config)
    assert type(optimizer) is kind
    assert effective_lr_form(optimizer) is name
    if name is Optimizer.NESTEROV:
        assert optimizer.param_groups[0]["nesterov"] is True


def test_factory_runs_a_step_of_muon_on_a_convolutional_network() -> None:
    model = _model()
    optimizer = build_optimizer(model, OptimizerConfig(name="muon", lr=0.01, weight_decay=0.1,
                                                       wd_mode="decoupled"))
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(5, 1, 8, 8, dtype=torch.float64)).logsumexp(-1).mean()
    loss.backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("name,mode", [("sgd", "l2"), ("adamw", "decoupled"),
                                       ("sgdm", "decoupled")])
def test_corrected_decay_follows_the_learning_rate(name: str, mode: str) -> None:
    """Per step the shrink is ``lr_t * wd_t`` with ``wd_t = wd lr_t / lr``: at half the
    learning rate the per-step decay is a quarter."""
    model = torch.nn.Linear(3, 2, bias=False).double()
    optimizer = build_optimizer(model, OptimizerConfig(name=name, lr=0.2, weight_decay=0.5,
                                                       wd_mode=mode, corrected_decay=True))
    for group in optimizer.param_groups:
        group["lr"] = 0.1
    w = model.weight.detach().clone()
    model.weight.grad = torch.zeros_like(w)
    optimizer.step()
    torch.testing.assert_close(model.weight.detach(), (1 - 0.1 * 0.5 * 0.1 / 0.2) * w,
                               rtol=1e-14, atol=0)


@pytest.mark.parametrize("fields,match", [
    ({"name": "adam", "weight_decay": 0.1, "wd_mode": "l2"}, "corrected_decay"),
    ({"name": "sgd", "weight_decay": 0.0}, "corrected_decay"),
], ids=["preconditioned-l2", "no-decay"])
def test_corrected_decay_is_refused_where_it_does_not_shrink(fields: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OptimizerConfig(corrected_decay=True, **fields)


def test_schedules_of_a_run_include_linear_and_warmup_stable_decay() -> None:
    config = OptimizerConfig(schedule=Schedule.WARMUP_STABLE_DECAY, warmup_steps=2,
                             decay_fraction=0.5)
    factors = schedule(config).factors(8)
    assert factors.tolist() == [0.5, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
    assert schedule(OptimizerConfig(schedule="linear")).factors(4).tolist() == [1, 0.75, 0.5,
                                                                                 0.25]
    TrainConfig(optimizer=config, steps=8)
