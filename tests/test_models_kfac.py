"""K-FAC and the optimizer's pieces: the damped Kronecker solve against a dense
solve, the running factors against their expectations, invariance of undamped K-FAC to rescaling
a batch-normalized layer and the effective damping ``eta ||w||^2`` of damped K-FAC (001 Sec. 5.2,
004 Sec. 4.3), the first-order limit of large damping, exact state round trips, refusals."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from scalewise.models.config import (
    Arch,
    Curvature,
    KFACConfig,
    ModelConfig,
    Norm,
    Optimizer,
    OptimizerConfig,
    WeightDecayMode,
)
from scalewise.models.kfac import KFAC, damped_solve, eigen, input_factor
from scalewise.models.networks import build_model
from scalewise.models.optimizer_factory import build_optimizer
from scalewise.models.step import train_step
from scalewise.theory.kfac import effective_damping, normalized_kfac_step


def _spd(n: int, gen: torch.Generator) -> torch.Tensor:
    m = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return m @ m.T / n + 0.1 * torch.eye(n, dtype=torch.float64)


@pytest.mark.parametrize("damping", [0.0, 1e-3, 1.0, 50.0])
@pytest.mark.parametrize("shape", [(3, 5), (6, 2), (4, 4)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_damped_solve_equals_dense_solve(shape: tuple[int, int], damping: float) -> None:
    """001 Eq. (26): ``(A (x) S + eta I)^{-1} vec(V)``; row-major, so the dense block is S (x) A."""
    out, fan_in = shape
    gen = torch.Generator().manual_seed(out * 10 + fan_in)
    a, s = _spd(fan_in, gen), _spd(out, gen)
    v = torch.randn(out, fan_in, generator=gen, dtype=torch.float64)
    dense = torch.kron(s, a) + damping * torch.eye(out * fan_in, dtype=torch.float64)
    expected = torch.linalg.solve(dense, v.reshape(-1)).reshape(out, fan_in)
    torch.testing.assert_close(damped_solve(v, eigen(a), eigen(s), damping), expected,
                               rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- factors


def _linear_net(seed: int = 0) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return net


def _expected_output_factors(net: nn.Sequential, x: torch.Tensor, curvature: Curvature) -> list:
    """``E_x[J_zs^T M J_zs]`` per layer with ``M = I`` (Gauss-Newton) or ``diag p - p p^T``."""
    outputs = net(x).detach()
    probs = torch.softmax(outputs, dim=-1)
    metric = (torch.eye(3, dtype=torch.float64).expand(len(x), 3, 3)
              if curvature == Curvature.GAUSS_NEWTON
              else torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :])
    first = jacrev(lambda s: net[2](net[1](s)))  # s_1 -> z
    j1 = vmap(first)(net[0](x).detach())  # (B, 3, 4)
    j2 = torch.eye(3, dtype=torch.float64).expand(len(x), 3, 3)  # s_2 = z
    return [torch.einsum("bki,bkl,blj->ij", j, metric, j).detach() / len(x) for j in (j1, j2)]


@pytest.mark.parametrize("curvature", list(Curvature), ids=lambda c: c.value)
def test_running_factors_match_their_expectations(curvature: Curvature) -> None:
    """``A`` is exact; ``S`` from one sampled ``Dz`` per example is within 10% of its
    expectation over 3000 copies of 6 examples (seeded)."""
    net = _linear_net()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    big = x.repeat(3000, 1)
    optimizer = KFAC(net, lr=0.1, curvature=curvature)
    net.train()
    optimizer.update_curvature(net(big), gen)
    layers = [net[0], net[2]]
    for layer, expected_s in zip(layers, _expected_output_factors(net, x, curvature)):
        state = optimizer.state[layer.weight]
        inputs = x if layer is net[0] else net[1](net[0](x)).detach()
        torch.testing.assert_close(state["A"], input_factor(inputs, bias=True), rtol=1e-12, atol=1e-14)
        assert float((state["S"] - expected_s).norm() / expected_s.norm()) < 0.1


def test_factor_running_average_and_intervals() -> None:
    """``A <- d A + (1 - d) A_batch`` on every ``factor_interval``-th step only (003)."""
    net = _linear_net()
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randn(8, 3, generator=gen, dtype=torch.float64) for _ in range(4)]
    optimizer = KFAC(net, lr=0.01, factor_decay=0.75, factor_interval=2)
    expected = None
    for k, x in enumerate(batches):
        optimizer.zero_grad()
        net.train()
        out = net(x)
        optimizer.update_curvature(out, gen)
        out.pow(2).sum().backward()
        if k % 2 == 0:
            new = input_factor(x, bias=True)
            expected = new if expected is None else 0.75 * expected + 0.25 * new
        optimizer.step()
        torch.testing.assert_close(optimizer.state[net[0].weight]["A"], expected, rtol=1e-12, atol=0)
    assert optimizer.steps_taken() == 4


# ----------------------------------------------------------------------------- invariance (test 5)

GAMMA = 3.0
DAMPING = 0.05


@dataclass(frozen=True)
class Setup:
    curvature: Curvature
    seed: int

    def model(self) -> nn.Module:
        model = build_model(ModelConfig(arch=Arch.MLP, norm=Norm.BATCH, width=5, depth=2),
                            (4,), 3, seed=self.seed).double()
        for module in model.modules():
            if hasattr(module, "eps"):
                module.eps = 1e-300  # exact invariance (torch refuses 0 in training)
        return model

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed + 1)
        return (torch.randn(32, 4, generator=gen, dtype=torch.float64),
                torch.randint(0, 3, (32,), generator=gen))


SETUPS = [Setup(Curvature.GAUSS_NEWTON, 0), Setup(Curvature.FISHER, 1), Setup(Curvature.GAUSS_NEWTON, 2)]
SETUP_IDS = [f"{s.curvature.value}-{s.seed}" for s in SETUPS]


def _kfac_step(setup: Setup, model: nn.Module, layer_damping: float) -> nn.Module:
    """One K-FAC step on ``model``: the first hidden layer (feeding BN) damped by
    ``layer_damping``, the others by ``DAMPING`` (undamped, the Fisher factor ``S`` of the
    output layer is singular: ``sum_k Dz_k = 0``)."""
    layer = model.hidden1.layer
    rest = [p for p in model.parameters() if p is not layer.weight]
    optimizer = KFAC(model, [{"params": [layer.weight], "damping": layer_damping},
                             {"params": rest}], lr=0.1, damping=DAMPING,
                     curvature=setup.curvature)
    x, y = setup.batch()
    train_step(model, optimizer, x, y,
               generator=torch.Generator().manual_seed(setup.seed + 2))
    return model


def _rescaled(setup: Setup) -> nn.Module:
    model = setup.model()
    with torch.no_grad():
        model.hidden1.layer.weight.mul_(GAMMA)
    return model


def _assert_step_rescaled(reference: nn.Module, rescaled: nn.Module) -> None:
    """``rescaled`` is ``reference`` with its first hidden layer times GAMMA, and nothing else."""
    for (name, p), q in zip(reference.named_parameters(), rescaled.parameters()):
        factor = GAMMA if name == "hidden1.layer.weight" else 1.0
        torch.testing.assert_close(q.detach(), factor * p.detach(), rtol=1e-8, atol=1e-11,
                                   msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("setup", SETUPS, ids=SETUP_IDS)
def test_undamped_kfac_is_invariant_to_rescaling_a_bn_layer(setup: Setup) -> None:
    """Rescaling the weights feeding BN by gamma scales the gradient by 1/gamma and S by
    1/gamma^2 (001 Sec. 5.2), so the undamped step scales by gamma: the same network after it."""
    reference = _kfac_step(setup, setup.model(), 0.0)
    _assert_step_rescaled(reference, _kfac_step(setup, _rescaled(setup), 0.0))


@pytest.mark.parametrize("setup", SETUPS, ids=SETUP_IDS)
def test_damped_kfac_is_not_invariant(setup: Setup) -> None:
    reference = _kfac_step(setup, setup.model(), DAMPING)
    with pytest.raises(AssertionError):
        _assert_step_rescaled(reference, _kfac_step(setup, _rescaled(setup), DAMPING))


@pytest.mark.parametrize("setup", SETUPS, ids=SETUP_IDS)
def test_damped_kfac_sees_effective_damping_eta_norm_squared(setup: Setup) -> None:
    """Damping ``eta`` at weights ``gamma w`` acts as the effective damping ``eta gamma^2`` of
    theory's ``EFFECTIVE_DAMPING = eta ||w||^2`` at ``w`` (004 Sec. 4.3, Eq. 14; 001 Sec. 5.2)."""
    rescaled = _kfac_step(setup, _rescaled(setup), DAMPING)
    reference = _kfac_step(setup, setup.model(), float(effective_damping(DAMPING, GAMMA**2)))
    _assert_step_rescaled(reference, rescaled)


@pytest.mark.parametrize("setup", SETUPS, ids=SETUP_IDS)
def test_damped_kfac_step_is_theorys_normalized_step(setup: Setup) -> None:
    """The step K-FAC takes on the BN-fed layer at ``w`` is ``||w||`` times theory's
    ``normalized_kfac_step(G_hat(w_hat), grad J(w_hat), damping=eta, norm_sq=||w||^2)``, with
    ``G_hat(w_hat) = S (x) A`` and the gradient measured at ``w_hat = w / ||w||``."""
    model = _rescaled(setup)
    layer = model.hidden1.layer
    norm = float(layer.weight.detach().norm())
    unit = copy.deepcopy(model)
    with torch.no_grad():
        unit.hidden1.layer.weight.div_(norm)
    at_unit = KFAC(unit, lr=1.0, damping=DAMPING, curvature=setup.curvature)
    x, y = setup.batch()
    unit.train()
    out = unit(x)
    at_unit.update_curvature(out, torch.Generator().manual_seed(setup.seed + 2))
    nn.functional.cross_entropy(out, y).backward()
    state = at_unit.state[unit.hidden1.layer.weight]
    curvature = torch.kron(state["S"], state["A"]).numpy()  # row-major block of G_hat(w_hat)
    gradient = unit.hidden1.layer.weight.grad.reshape(-1).numpy()
    predicted = norm * normalized_kfac_step(curvature, gradient, damping=DAMPING, norm_sq=norm**2)
    before = layer.weight.detach().clone()
    optimizer = KFAC(model, lr=1.0, damping=DAMPING, curvature=setup.curvature)
    train_step(model, optimizer, x, y,
               generator=torch.Generator().manual_seed(setup.seed + 2))
    taken = (before - layer.weight.detach()).reshape(-1)
    torch.testing.assert_close(taken, torch.from_numpy(predicted), rtol=1e-8, atol=1e-12)


# ----------------------------------------------------------------------------- behaviour


def _plain_mlp() -> nn.Module:
    return build_model(ModelConfig(arch=Arch.MLP, norm=Norm.NONE, width=5, depth=2),
                       (4,), 3, seed=3).double()


def test_large_damping_turns_kfac_into_sgd() -> None:
    """``(G_hat + eta I)^{-1} g -> g / eta``: K-FAC with LR ``eta alpha`` approaches SGD with
    LR ``alpha`` as ``eta`` grows (004 Sec. 4.3), to O(||G_hat|| / eta)."""
    x, y = Setup(Curvature.GAUSS_NEWTON, 0).batch()
    eta = 1e7
    kfac_model, sgd_model = _plain_mlp(), _plain_mlp()
    kfac = KFAC(kfac_model, lr=0.1 * eta, damping=eta)
    train_step(kfac_model, kfac, x, y, generator=torch.Generator().manual_seed(0))
    train_step(sgd_model, torch.optim.SGD(sgd_model.parameters(), lr=0.1), x, y)
    for p, q in zip(kfac_model.parameters(), sgd_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", [WeightDecayMode.L2, WeightDecayMode.DECOUPLED], ids=lambda m: m.value)
def test_kfac_weight_decay_modes(mode: WeightDecayMode) -> None:
    """With a zero gradient the step is the decay alone: decoupled shrinks by ``1 - lr lambda``
    (001 Eq. 22); l2 preconditions ``lambda w``, so it is ``lr (G_hat + eta I)^{-1} lambda w``."""
    model = _plain_mlp()
    x, _ = Setup(Curvature.GAUSS_NEWTON, 0).batch()
    optimizer = KFAC(model, lr=0.1, damping=0.5, weight_decay=0.2, wd_mode=mode)
    model.train()
    optimizer.update_curvature(model(x), torch.Generator().manual_seed(0))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    layer = model.hidden1
    w = torch.cat([before["hidden1.weight"], before["hidden1.bias"][:, None]], dim=1)
    state = optimizer.state[layer.weight]
    if mode == WeightDecayMode.DECOUPLED:
        expected = (1 - 0.1 * 0.2) * w
    else:
        expected = w - 0.1 * damped_solve(0.2 * w, (state["eig_A"], state["vec_A"]),
                                          (state["eig_S"], state["vec_S"]), 0.5)
    actual = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], dim=1)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("arch", [Arch.VGG, Arch.RESNET], ids=lambda a: a.value)
def test_kfac_trains_conv_nets(arch: Arch) -> None:
    """20 steps on one fixed batch (seeded) at least halve the loss."""
    model = build_model(ModelConfig(arch=arch, norm=Norm.BATCH, width=4, depth=2), (1, 8, 8), 3,
                        seed=0)
    config = OptimizerConfig(name=Optimizer.KFAC, lr=0.05, kfac=KFACConfig(inverse_interval=5))
    optimizer = build_optimizer(model, config)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    losses = [train_step(model, optimizer, x, y, generator=gen).loss for _ in range(20)]
    assert losses[-1] < 0.5 * losses[0]
    assert all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("mode", [WeightDecayMode.L2, WeightDecayMode.DECOUPLED], ids=lambda m: m.value)
@pytest.mark.parametrize("curvature", list(Curvature), ids=lambda c: c.value)
def test_state_round_trip_is_bitwise(curvature: Curvature, mode: WeightDecayMode) -> None:
    """Factors, eigendecompositions, momentum and step counts survive ``state_dict``."""
    config = OptimizerConfig(name=Optimizer.KFAC, lr=0.05, weight_decay=0.01, wd_mode=mode,
                             kfac=KFACConfig(curvature=curvature, inverse_interval=3,
                                             factor_interval=2))
    gen = torch.Generator().manual_seed(5)
    batches = [(torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 3, (16,), generator=gen))
               for _ in range(6)]

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = build_model(ModelConfig(arch=Arch.VGG, width=4), (1, 8, 8), 3, seed=1)
        return model, build_optimizer(model, config)

    straight, optimizer = fresh()
    step_gen = torch.Generator().manual_seed(6)
    for k, (x, y) in enumerate(batches):
        train_step(straight, optimizer, x, y, generator=step_gen)
        if k == 2:
            saved = copy.deepcopy((straight.state_dict(), optimizer.state_dict(), step_gen.get_state()))
    resumed, again = fresh()
    resumed.load_state_dict(saved[0])
    again.load_state_dict(saved[1])
    step_gen.set_state(saved[2])
    for x, y in batches[3:]:
        train_step(resumed, again, x, y, generator=step_gen)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


class _Embedder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.output = nn.Linear(3, 2)


@pytest.mark.parametrize("make,match", [
    (lambda: build_model(ModelConfig(norm=Norm.WEIGHT), (4,), 3, seed=0), "weight norm"),
    (lambda: nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), "groups"),
    (_Embedder, "Embedding"),
], ids=["weight-norm", "grouped-conv", "embedding"])
def test_unsupported_layers_are_refused(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KFAC(make(), lr=0.1)


def test_step_without_curvature_is_refused() -> None:
    model = _plain_mlp()
    optimizer = KFAC(model, lr=0.1)
    model(torch.randn(4, 4, dtype=torch.float64)).sum().backward()
    with pytest.raises(RuntimeError, match="update_curvature"):
        optimizer.step()


@pytest.mark.parametrize("field,value", [("lr", 0.0), ("damping", -1.0), ("momentum", 1.0),
                                         ("factor_decay", 1.0), ("inverse_interval", 0)])
def test_bad_hyperparameters_are_refused(field: str, value: float) -> None:
    kwargs = {"lr": 0.1, field: value}
    with pytest.raises(ValueError, match=field):
        KFAC(_plain_mlp(), **kwargs)


def test_evaluation_passes_are_not_recorded() -> None:
    """Evaluation passes (no grad or eval mode) leave nothing for the curvature to use."""
    model = _plain_mlp()
    optimizer = KFAC(model, lr=0.1)
    with torch.no_grad():
        model(torch.randn(4, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="no training forward pass"):
        optimizer.update_curvature(torch.zeros(4, 3, dtype=torch.float64))
