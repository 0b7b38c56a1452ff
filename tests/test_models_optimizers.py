"""Optimizers: weight-decay modes and placement, the one-step norm
recurrence of 001 Eq. (23) measured on real normalized networks, renormalization, norm grafting,
AdaGraft, the cheap probes of a step, and exact state round trips. All in float64."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace

import pytest
import torch
from torch import nn

from scalewise.models.config import (
    Arch,
    ModelConfig,
    Norm,
    Optimizer,
    OptimizerConfig,
    TrainConfig,
    WeightDecayMode,
    WeightDecayPlacement,
    override,
)
from scalewise.models.grafting import AdaGraft, graft_norms, renormalize
from scalewise.models.networks import build_model, output_layer, scale_invariant_params
from scalewise.models.optimizer_factory import build_optimizer, decayed_params, param_groups
from scalewise.models.probes import LAYER_MEANS, UNIT_STATISTICS, StepProbe
from scalewise.models.step import train_step
from scalewise.theory.equilibrium import norm_sq_step

STEPS = 4


@dataclass(frozen=True)
class Net:
    arch: Arch
    norm: Norm
    seed: int = 0

    @property
    def id(self) -> str:
        return f"{self.arch.value}-{self.norm.value}"

    def build(self) -> nn.Module:
        model = build_model(ModelConfig(arch=self.arch, norm=self.norm, width=6, depth=2),
                            (1, 8, 8), 4, seed=self.seed).double()
        for module in model.modules():
            if hasattr(module, "eps"):
                module.eps = 1e-300  # exact invariance (torch refuses 0 in training)
        return model

    def batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed + 1)
        return [(torch.randn(24, 1, 8, 8, generator=gen, dtype=torch.float64),
                 torch.randint(0, 4, (24,), generator=gen)) for _ in range(STEPS)]


NETS = [Net(Arch.MLP, Norm.BATCH), Net(Arch.VGG, Norm.BATCH), Net(Arch.RESNET, Norm.BATCH),
        Net(Arch.MLP, Norm.LAYER), Net(Arch.VGG, Norm.WEIGHT)]
IDS = [n.id for n in NETS]


def train(net: Net, config: OptimizerConfig, steps: int = STEPS) -> nn.Module:
    model = net.build()
    optimizer = build_optimizer(model, config)
    for x, y in net.batches()[:steps]:
        train_step(model, optimizer, x, y)
    return model


def assert_same_params(a: nn.Module, b: nn.Module, rtol: float = 1e-12, atol: float = 1e-14) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


def sgd(name: Optimizer = Optimizer.SGD, **kwargs) -> OptimizerConfig:
    return OptimizerConfig(name=name, lr=0.1, weight_decay=0.05, **kwargs)


@pytest.mark.parametrize("placement", list(WeightDecayPlacement), ids=lambda p: p.value)
@pytest.mark.parametrize("net", NETS[:2], ids=IDS[:2])
def test_sgd_l2_equals_sgd_decoupled(net: Net, placement: WeightDecayPlacement) -> None:
    l2 = train(net, sgd(wd_mode=WeightDecayMode.L2, wd_placement=placement))
    decoupled = train(net, sgd(wd_mode=WeightDecayMode.DECOUPLED, wd_placement=placement))
    assert_same_params(l2, decoupled)


def test_momentum_sgd_l2_differs_from_decoupled() -> None:
    """With momentum the L2 term enters the buffer, so the two modes part (001 Sec. 5)."""
    net = NETS[0]
    l2 = train(net, sgd(Optimizer.SGDM, wd_mode=WeightDecayMode.L2))
    decoupled = train(net, sgd(Optimizer.SGDM, wd_mode=WeightDecayMode.DECOUPLED))
    with pytest.raises(AssertionError):
        assert_same_params(l2, decoupled, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("placement", list(WeightDecayPlacement), ids=lambda p: p.value)
@pytest.mark.parametrize("net", NETS[:2], ids=IDS[:2])
def test_decoupled_adam_equals_torch_adamw(net: Net, placement: WeightDecayPlacement) -> None:
    config = OptimizerConfig(name=Optimizer.ADAM, lr=0.01, weight_decay=0.5,
                             wd_mode=WeightDecayMode.DECOUPLED, wd_placement=placement)
    ours = train(net, config)
    reference = net.build()
    adamw = torch.optim.AdamW(param_groups(reference, config, "weight_decay"), lr=config.lr,
                              betas=config.betas, eps=config.eps)
    for x, y in net.batches():
        train_step(reference, adamw, x, y)
    assert_same_params(ours, reference)
    assert_same_params(train(net, replace(config, name=Optimizer.ADAMW)), reference)


def test_adam_l2_differs_from_adamw() -> None:
    net = NETS[0]
    config = OptimizerConfig(name=Optimizer.ADAM, lr=0.01, weight_decay=0.5,
                             wd_mode=WeightDecayMode.L2)
    with pytest.raises(AssertionError):
        assert_same_params(train(net, config),
                           train(net, replace(config, name=Optimizer.ADAMW,
                                              wd_mode=WeightDecayMode.DECOUPLED)), rtol=1e-6)


@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_decay_placement(net: Net) -> None:
    model = net.build()
    invariant = {id(s.param) for s in scale_invariant_params(model)}
    output = {id(p) for p in output_layer(model).parameters()}
    chosen = {placement: {id(p) for p in decayed_params(model, placement)}
              for placement in WeightDecayPlacement}
    assert chosen[WeightDecayPlacement.NORMALIZED] == invariant
    assert chosen[WeightDecayPlacement.OUTPUT] == output
    assert chosen[WeightDecayPlacement.ALL] == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("mode", [WeightDecayMode.L2, WeightDecayMode.DECOUPLED], ids=lambda m: m.value)
@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_one_sgd_step_follows_norm_recurrence(net: Net, mode: WeightDecayMode) -> None:
    """001 Eq. (23), from theory: ``||w+||^2 = (1 - a l)^2 ||w||^2 + a^2 g^2 / ||w||^2`` with
    ``g = ||grad J(w)|| ||w||``, per unit (per layer for LN), after one real SGD + WD step."""
    model = net.build()
    config = sgd(wd_mode=mode, wd_placement=WeightDecayPlacement.NORMALIZED)
    optimizer = build_optimizer(model, config)
    x, y = net.batches()[0]
    train_step(model, optimizer, x, y)  # a step away from the initialization
    optimizer.zero_grad()
    invariants = scale_invariant_params(model)
    before = [_rows(s.param.detach(), s.granularity).clone() for s in invariants]
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [s.param for s in invariants])
    train_step(model, optimizer, x, y)
    for s, w, g in zip(invariants, before, grads):
        x_sq = w.pow(2).sum(1)
        g_unit = _rows(g, s.granularity).norm(dim=1) * w.norm(dim=1)
        expected = norm_sq_step(x_sq, config.lr, config.weight_decay, g_unit)
        actual = _rows(s.param.detach(), s.granularity).pow(2).sum(1)
        torch.testing.assert_close(actual, expected, rtol=1e-11, atol=0)


def _rows(t: torch.Tensor, granularity: str) -> torch.Tensor:
    return t.reshape(t.shape[0] if granularity == "unit" else 1, -1)


@pytest.mark.parametrize("name", [Optimizer.SGD, Optimizer.ADAM], ids=lambda n: n.value)
def test_renormalization_keeps_unit_norms_and_sets_effective_lr(name: Optimizer) -> None:
    net = NETS[1]
    model = net.build()
    optimizer = build_optimizer(model, OptimizerConfig(name=name, lr=0.05, renormalize=True))
    renormalize(scale_invariant_params(model))
    for x, y in net.batches():
        result = train_step(model, optimizer, x, y, probe=StepProbe(model, optimizer))
        invariant = {s.name for s in scale_invariant_params(model)}
        lrs = [v for layer, metric, v in result.metrics if metric == "effective_lr" and layer in invariant]
        assert lrs == pytest.approx([0.05] * len(lrs), rel=1e-12)
    for s in scale_invariant_params(model):
        norms = _rows(s.param.detach(), s.granularity).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms), rtol=1e-13, atol=0)


def test_renormalization_does_not_change_the_function() -> None:
    net = NETS[0]
    model = net.build()
    x, _ = net.batches()[0]
    model.train()
    before = model(x).detach()
    renormalize(scale_invariant_params(model))
    torch.testing.assert_close(model(x).detach(), before, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("kind", ["array", "callable"])
def test_norm_grafting_sets_layer_norms(kind: str) -> None:
    net = NETS[0]
    model = net.build()
    optimizer = build_optimizer(model, OptimizerConfig(name=Optimizer.SGDM, lr=0.1))
    invariants = scale_invariant_params(model)
    table = torch.linspace(0.5, 3.0, STEPS * len(invariants), dtype=torch.float64)
    table = table.reshape(STEPS, len(invariants)).numpy()
    graft_norms(optimizer, invariants, table if kind == "array" else lambda k: table[k])
    for k, (x, y) in enumerate(net.batches()):
        train_step(model, optimizer, x, y)
        norms = [float(s.param.detach().norm()) for s in invariants]
        assert norms == pytest.approx(list(table[k]), rel=1e-13)


def test_norm_grafting_refuses_wrong_width() -> None:
    net = NETS[0]
    model = net.build()
    optimizer = build_optimizer(model, OptimizerConfig(lr=0.1))
    graft_norms(optimizer, scale_invariant_params(model), lambda k: [1.0])
    x, y = net.batches()[0]
    with pytest.raises(ValueError, match="targets"):
        train_step(model, optimizer, x, y)


def test_adagraft_has_magnitude_of_one_and_direction_of_other() -> None:
    """000 Algorithm 2, per parameter tensor."""
    net = NETS[0]
    x, y = net.batches()[0]

    def one_step(make) -> dict[str, torch.Tensor]:
        model = net.build()
        start = {k: v.detach().clone() for k, v in model.named_parameters()}
        train_step(model, make(model), x, y)
        return {k: v.detach() - start[k] for k, v in model.named_parameters()}

    magnitude = one_step(lambda m: torch.optim.SGD(m.parameters(), lr=0.3))
    direction = one_step(lambda m: torch.optim.Adam(m.parameters(), lr=0.01))
    grafted = one_step(lambda m: AdaGraft(torch.optim.SGD(m.parameters(), lr=0.3),
                                          torch.optim.Adam(m.parameters(), lr=0.01)))
    for name, step in grafted.items():
        assert float(step.norm()) == pytest.approx(float(magnitude[name].norm()), rel=1e-12)
        cos = (step * direction[name]).sum() / (step.norm() * direction[name].norm())
        assert float(cos) == pytest.approx(1.0, rel=1e-12)


@dataclass(frozen=True)
class GraftCase:
    """AdaGraft from the config: the magnitude of ``name``'s step, the direction of
    ``direction``'s, under weight decay ``mode``."""

    name: Optimizer
    direction: Optimizer
    mode: WeightDecayMode

    @property
    def id(self) -> str:
        return f"{self.name.value}-magnitude-{self.direction.value}-direction-{self.mode.value}"

    def config(self, direction: Optimizer | None) -> OptimizerConfig:
        decay = 0.0 if self.mode is WeightDecayMode.NONE else 0.5
        return OptimizerConfig(name=self.name, lr=0.01, weight_decay=decay, wd_mode=self.mode,
                               wd_placement=WeightDecayPlacement.NORMALIZED,
                               graft_direction=direction)


GRAFT_CASES = [
    GraftCase(Optimizer.SGD, Optimizer.ADAM, WeightDecayMode.NONE),
    GraftCase(Optimizer.SGDM, Optimizer.RMSPROP, WeightDecayMode.L2),
    GraftCase(Optimizer.ADAM, Optimizer.SGDM, WeightDecayMode.DECOUPLED),
    GraftCase(Optimizer.ADAMW, Optimizer.ADAGRAD, WeightDecayMode.DECOUPLED),
]


@pytest.mark.parametrize("case", GRAFT_CASES, ids=lambda case: case.id)
def test_adagraft_from_the_config(case: GraftCase) -> None:
    """``graft_direction`` builds :class:`AdaGraft` of the two configured optimizers, both
    without decay when it is decoupled: the weights are shrunk once, before the grafted step."""
    net = NETS[0]
    ours = train(net, case.config(case.direction))
    reference = net.build()
    momentum = case.config(case.direction).momentum  # the grafted run's, for both sides
    inner = case.config(None)
    if case.mode is WeightDecayMode.DECOUPLED:
        inner = replace(inner, weight_decay=0.0, wd_mode=WeightDecayMode.NONE)

    def side(name: Optimizer) -> OptimizerConfig:
        return replace(inner, name=name,
                       momentum=momentum if name.properties.uses_momentum else None)

    grafted = AdaGraft(build_optimizer(reference, side(case.name)),
                       build_optimizer(reference, side(case.direction)))
    if case.mode is WeightDecayMode.DECOUPLED:
        shrink = 1 - inner.lr * case.config(None).weight_decay
        invariant = [s.param for s in scale_invariant_params(reference)]

        @torch.no_grad()
        def decay(*_: object) -> None:
            for param in invariant:
                param.mul_(shrink)

        grafted.register_step_pre_hook(decay)
    for x, y in net.batches():
        train_step(reference, grafted, x, y)
    assert_same_params(ours, reference, rtol=0, atol=0)


def test_rmsprop_smoothing_constant_reaches_torch() -> None:
    net = NETS[0]
    config = OptimizerConfig(name=Optimizer.RMSPROP, lr=0.01, rmsprop_alpha=0.5)
    ours = train(net, config)
    reference = net.build()
    rmsprop = torch.optim.RMSprop(reference.parameters(), lr=0.01, alpha=0.5,
                                  eps=config.eps, momentum=config.momentum)
    for x, y in net.batches():
        train_step(reference, rmsprop, x, y)
    assert_same_params(ours, reference, rtol=0, atol=0)
    with pytest.raises(AssertionError):  # the default alpha = 0.99 steps otherwise
        assert_same_params(train(net, replace(config, rmsprop_alpha=0.99)), reference)


ROUND_TRIPS = [OptimizerConfig(name=name) for name in (
    Optimizer.SGDM, Optimizer.ADAM, Optimizer.RMSPROP, Optimizer.ADAGRAD)]
ROUND_TRIPS.append(OptimizerConfig(name=Optimizer.SGDM, graft_direction=Optimizer.ADAM))


@pytest.mark.parametrize("base", ROUND_TRIPS, ids=lambda c: "-".join(
    [c.name.value] + ([f"graft-{c.graft_direction.value}"] if c.graft_direction else [])))
def test_state_round_trip_is_bitwise(base: OptimizerConfig) -> None:
    """Resume after 2 steps from the saved model and optimizer state: the same weights."""
    net = NETS[1]
    config = replace(base, lr=0.01, weight_decay=0.01, wd_mode=WeightDecayMode.DECOUPLED,
                     renormalize=True)
    straight = train(net, config)
    model = net.build()
    optimizer = build_optimizer(model, config)
    batches = net.batches()
    for x, y in batches[:2]:
        train_step(model, optimizer, x, y)
    saved = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    resumed = net.build()
    resumed.load_state_dict(saved[0])
    again = build_optimizer(resumed, config)
    again.load_state_dict(saved[1])
    for x, y in batches[2:]:
        train_step(resumed, again, x, y)
    assert_same_params(straight, resumed, rtol=0, atol=0)


def test_probe_metrics_of_a_step() -> None:
    net = NETS[0]
    model = net.build()
    optimizer = build_optimizer(model, OptimizerConfig(lr=0.1))
    x, y = net.batches()[0]
    result = train_step(model, optimizer, x, y, probe=StepProbe(model, optimizer))
    names = {(layer, name) for layer, name, _ in result.metrics}
    layers = ["hidden1", "hidden2", "output"]
    per_layer = (*LAYER_MEANS, "decay_factor", *(f"sum_{s}" for s in UNIT_STATISTICS))
    assert names == {("", "loss")} | {(l, n) for l in layers for n in per_layer}
    values = {(layer, name): v for layer, name, v in result.metrics}
    assert abs(values[("hidden1", "cos_w_grad")]) < 1e-10
    assert abs(values[("output", "cos_w_grad")]) > 1e-6
    assert values[("", "loss")] == result.loss

def test_adagraft_learning_rate_reaches_the_magnitude_after_a_resume() -> None:
    """A schedule sets ``lr`` on the grafted optimizer's groups; after ``load_state_dict`` (a
    resumed run) those must still be the magnitude optimizer's groups."""
    params = [nn.Parameter(torch.ones(3))]
    grafted = AdaGraft(torch.optim.SGD(params, lr=0.1), torch.optim.Adam(params, lr=0.1))
    params[0].grad = torch.ones(3)
    grafted.step()
    resumed = AdaGraft(torch.optim.SGD(params, lr=0.1), torch.optim.Adam(params, lr=0.1))
    resumed.load_state_dict(grafted.state_dict())
    for optimizer in (grafted, resumed):
        optimizer.param_groups[0]["lr"] = 0.5
        assert optimizer.magnitude.param_groups[0]["lr"] == 0.5


@pytest.mark.parametrize("name,expected", [(o, o.properties.default_momentum)
                                           for o in Optimizer], ids=lambda v: str(v))
def test_momentum_default_is_the_optimizers_own(name: Optimizer, expected: float) -> None:
    """Theory's and the simulators' RMSprop and K-FAC have no momentum, so neither has a run's
    by default; momentum SGD's default is torch's usual 0.9."""
    assert OptimizerConfig(name=name).momentum == expected


def test_momentum_default_follows_the_optimizer_through_an_override() -> None:
    base = TrainConfig(optimizer=OptimizerConfig(name="sgd"))
    assert override(base, {"optimizer.name": "sgdm"}).optimizer.momentum == 0.9
    given = override(base, {"optimizer.name": "sgdm", "optimizer.momentum": 0.5})
    assert given.optimizer.momentum == 0.5
    assert override(given, {"optimizer.lr": 0.2}).optimizer.momentum == 0.5
    assert override(given, {"optimizer.name": "kfac"}).optimizer.momentum == 0.0


def test_momentum_is_refused_where_no_optimizer_uses_it() -> None:
    with pytest.raises(ValueError, match="optimizer.momentum = 0.9 is invalid; allowed: 0 or "
                                         "None for optimizer.name = 'adam'"):
        OptimizerConfig(name="adam", momentum=0.9)


def test_stored_configs_with_an_unused_momentum_still_load() -> None:
    """Configs stored before momentum became per optimizer carried 0.9 for every optimizer."""
    stored = json.loads(TrainConfig(optimizer=OptimizerConfig(name="adam")).to_json())
    stored["optimizer"]["momentum"] = 0.9
    loaded = TrainConfig.from_json(json.dumps(stored))
    assert loaded.optimizer.name is Optimizer.ADAM and loaded.optimizer.momentum == 0.0
