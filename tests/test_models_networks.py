"""Networks: shapes, structure, deterministic init, scale invariance measured on real normalized
networks (``w . grad J = 0`` and ``grad J(gamma w) = grad J(w)/gamma`` per unit, 001 Eq. 16 and
18, in float64), and the MLP's options for internal covariate shift: batch centering, the norm
after the ReLU, the knock-out transform and the compensated input shift."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalewise.models.config import Arch, ModelConfig, Norm
from scalewise.models.networks import (
    build_model,
    layer_weights,
    output_layer,
    scale_invariant_params,
)


@dataclass(frozen=True)
class Case:
    arch: Arch
    norm: Norm
    in_shape: tuple[int, ...]
    seed: int = 0

    @property
    def id(self) -> str:
        return f"{self.arch.value}-{self.norm.value}-{'x'.join(map(str, self.in_shape))}"

    def build(self) -> nn.Module:
        model = build_model(ModelConfig(arch=self.arch, norm=self.norm, width=4, depth=2),
                            self.in_shape, 3, seed=self.seed).double()
        for module in model.modules():
            if hasattr(module, "eps"):
                # The norm's epsilon breaks exact invariance by O(eps / variance). Torch refuses
                # eps = 0 in training; 1e-300 vanishes when added to any float64 variance here.
                module.eps = 1e-300
        return model

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed + 10)
        x = torch.randn(16, *self.in_shape, generator=gen, dtype=torch.float64)
        return x, torch.randint(0, 3, (16,), generator=gen)


SHAPES = [(1, 8, 8), (3, 32, 32)]
ALL = [Case(a, n, s) for a in Arch for n in Norm for s in SHAPES]
INVARIANT = [Case(a, n, (1, 8, 8)) for a in Arch for n in (Norm.BATCH, Norm.LAYER, Norm.WEIGHT)]


def loss_and_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.train()
    loss = F.cross_entropy(model(x), y)
    return list(torch.autograd.grad(loss, [s.param for s in scale_invariant_params(model)]))


def _rows(t: torch.Tensor, granularity: str) -> torch.Tensor:
    return t.reshape(t.shape[0] if granularity == "unit" else 1, -1)


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_output_shape_and_structure(case: Case) -> None:
    model = case.build()
    x, _ = case.batch()
    assert model(x).shape == (16, 3)
    assert isinstance(output_layer(model), nn.Linear)
    invariant = scale_invariant_params(model)
    assert len(invariant) == (0 if case.norm in (Norm.NONE, Norm.CENTER)
                              else len(layer_weights(model)) - 1)
    assert all(s.param is not output_layer(model).weight for s in invariant)


REMOVING = (Norm.BATCH, Norm.LAYER, Norm.CENTER)  # norms that remove a bias


@pytest.mark.parametrize("case", [c for c in ALL if c.norm in REMOVING],
                         ids=[c.id for c in ALL if c.norm in REMOVING])
def test_no_bias_feeds_a_norm(case: Case) -> None:
    model = case.build()
    modules = dict(model.named_modules())
    for w in layer_weights(model)[:-1]:
        assert modules[w.name].layer.bias is None


def test_mlp_accepts_flat_inputs_and_cnns_refuse_them() -> None:
    assert build_model(ModelConfig(), (10,), 2, seed=0)(torch.randn(3, 10)).shape == (3, 2)
    with pytest.raises(ValueError, match="in_shape"):
        build_model(ModelConfig(arch=Arch.VGG), (10,), 2, seed=0)
    with pytest.raises(ValueError, match="num_classes"):
        build_model(ModelConfig(), (10,), 1, seed=0)


def test_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    config = ModelConfig(arch=Arch.RESNET, width=4)
    state = torch.random.get_rng_state()
    a = build_model(config, (1, 8, 8), 3, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_model(config, (1, 8, 8), 3, seed=7)
    c = build_model(config, (1, 8, 8), 3, seed=8)
    pairs = list(zip(a.state_dict().values(), b.state_dict().values(), c.state_dict().values()))
    assert all(torch.equal(p, q) for p, q, _ in pairs)
    assert not all(torch.equal(p, r) for p, _, r in pairs)


@pytest.mark.parametrize("case", INVARIANT, ids=[c.id for c in INVARIANT])
def test_gradient_orthogonal_to_weights(case: Case) -> None:
    """001 Eq. 16 with degree 0: ``w_j . grad J(w_j) = 0`` per unit (per layer for LN)."""
    model = case.build()
    x, y = case.batch()
    for s, g in zip(scale_invariant_params(model), loss_and_grads(model, x, y)):
        w, g = _rows(s.param.detach(), s.granularity), _rows(g, s.granularity)
        # |w . g| <= 1e-10 ||w|| ||g||: a cosine of 0, or a dead unit's zero gradient
        assert bool(((w * g).sum(1).abs() <= 1e-10 * w.norm(dim=1) * g.norm(dim=1)).all())


@pytest.mark.parametrize("case", INVARIANT, ids=[c.id for c in INVARIANT])
def test_gradient_homogeneous_of_degree_minus_one(case: Case) -> None:
    """001 Eq. 18: rescaling unit ``j`` by ``gamma_j`` (the whole layer by one gamma for LN)
    divides its gradient by ``gamma_j`` and leaves the loss unchanged."""
    model = case.build()
    x, y = case.batch()
    before = loss_and_grads(model, x, y)
    gen = torch.Generator().manual_seed(case.seed + 20)
    gammas = []
    with torch.no_grad():
        for s in scale_invariant_params(model):
            rows = _rows(s.param, s.granularity)
            gamma = torch.rand(rows.shape[0], 1, generator=gen, dtype=torch.float64) * 4 + 0.25
            rows.mul_(gamma)
            gammas.append(gamma)
    after = loss_and_grads(model, x, y)
    for s, g0, g1, gamma in zip(scale_invariant_params(model), before, after, gammas):
        expected = _rows(g0, s.granularity) / gamma
        torch.testing.assert_close(_rows(g1, s.granularity), expected, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("arch", list(Arch), ids=[a.value for a in Arch])
def test_layer_norm_is_not_invariant_per_unit(arch: Arch) -> None:
    """LN's invariance holds per layer only (001 Sec. 4.4): per-unit rescaling changes the loss."""
    case = Case(arch, Norm.LAYER, (1, 8, 8))
    model = case.build()
    x, y = case.batch()
    loss = F.cross_entropy(model(x), y)
    with torch.no_grad():
        first = scale_invariant_params(model)[0].param
        first[0].mul_(3.0)
    assert not torch.isclose(F.cross_entropy(model(x), y), loss, rtol=1e-6)


def _mlp(**options: object) -> nn.Module:
    config = ModelConfig(width=6, depth=2, **options)
    return build_model(config, (5,), 3, seed=0, dtype=torch.float64)


def _inputs(rows: int = 16, seed: int = 3) -> torch.Tensor:
    return torch.randn(rows, 5, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_batch_centering_centers_in_training_and_uses_its_running_mean_after() -> None:
    model = _mlp(norm=Norm.CENTER)
    center = model.hidden1.norm
    x = _inputs()
    pre = model.hidden1.layer(x)
    torch.testing.assert_close(model.hidden1(x).mean(0), torch.zeros(6, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(center.running_mean, 0.1 * pre.mean(0).detach())
    model.eval()
    torch.testing.assert_close(model.hidden1(x), pre - center.running_mean)
    assert layer_weights(model)[0].granularity is None  # centering leaves the scale


def test_norm_after_the_activation() -> None:
    model = _mlp(norm=Norm.BATCH, norm_position="after")
    names = [name for name, _ in model.named_children()]
    assert names == ["flatten", "hidden1", "relu1", "norm1", "hidden2", "relu2", "norm2",
                     "output"]
    assert isinstance(model.hidden1, nn.Linear) and model.hidden1.bias is not None
    assert isinstance(model.norm1, nn.BatchNorm1d) and not scale_invariant_params(model)
    x = _inputs()
    torch.testing.assert_close(model[:4](x).mean(0), torch.zeros(6, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_knockout_draws_fresh_statistics_per_batch_reproducibly() -> None:
    model = _mlp(knockout_spread=0.5, knockout_shift=0.3)
    knockout = model.hidden1.knockout
    x = _inputs()
    normed = model.hidden1.norm(model.hidden1.layer(x))
    first, second = model.hidden1(x), model.hidden1(x)
    assert not torch.allclose(first, second) and int(knockout.draws) == 2
    slope = (first[1] - first[0]) / (normed[1] - normed[0])  # per unit: gamma
    assert bool(((slope > 0.5 - 1e-9) & (slope < 1.5 + 1e-9)).all())
    twin = _mlp(knockout_spread=0.5, knockout_shift=0.3)
    twin.load_state_dict(model.state_dict())  # the draw counter travels with the weights
    torch.testing.assert_close(twin.hidden1(x), model.hidden1(x))
    assert knockout.seed != model.hidden2.knockout.seed
    fresh = _mlp(knockout_spread=0.5, knockout_shift=0.3).eval()
    torch.testing.assert_close(fresh(x), _mlp().eval()(x))  # the identity in evaluation


def test_input_shift_keeps_the_function_and_shifts_the_first_layers_inputs() -> None:
    x = _inputs()
    plain, shifted = _mlp(norm=Norm.NONE), _mlp(norm=Norm.NONE, input_shift=3.0)
    torch.testing.assert_close(shifted(x), plain(x), rtol=1e-12, atol=1e-12)
    seen = []
    shifted.hidden1.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    shifted(x)
    torch.testing.assert_close(seen[0], x + 3.0)
    # batch norm removes the shift: no bias to move, the same function
    torch.testing.assert_close(_mlp(input_shift=3.0)(x), _mlp()(x), rtol=1e-9, atol=1e-12)


def test_precision_converts_the_float32_initialization() -> None:
    config = ModelConfig(width=6, depth=2)
    single = build_model(config, (5,), 3, seed=4)
    double = build_model(config, (5,), 3, seed=4, dtype=torch.float64)
    for p, q in zip(single.parameters(), double.parameters()):
        assert q.dtype is torch.float64 and torch.equal(p.double(), q)


@pytest.mark.parametrize("arch, norm", [("mlp", "batch"), ("mlp", "layer"), ("vgg", "layer"),
                                        ("resnet", "batch")])
def test_norm_eps_sets_every_normalization(arch: str, norm: str) -> None:
    from scalewise.models.config import ModelConfig
    from scalewise.models.networks import _WITH_EPS, build_model

    net = build_model(ModelConfig(arch=arch, norm=norm, width=4, depth=1, norm_eps=1e-9),
                      (3, 8, 8), 10, seed=0)
    found = [m.eps for m in net.modules() if isinstance(m, _WITH_EPS)]
    assert found and all(eps == 1e-9 for eps in found)


def test_a_tiny_norm_eps_makes_batch_norm_scale_invariant() -> None:
    """Rescaling the scale-invariant weights 3x changes the float64 output by about
    ``eps / var`` with torch's eps (the control) and not at all with 1e-12 (to rounding)."""
    from scalewise.models.config import ModelConfig
    from scalewise.models.networks import build_model

    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    changes = {}
    for eps in (1e-5, 1e-12):
        nets = [build_model(ModelConfig(width=8, depth=2, norm_eps=eps, invariant_init_scale=c),
                            (1, 8, 8), 10, seed=3, dtype=torch.float64) for c in (1.0, 3.0)]
        changes[eps] = float((nets[0](x) - nets[1](x)).abs().max())
    assert changes[1e-5] > 1e-7 and changes[1e-12] < 1e-11, changes


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan")])
def test_norm_eps_must_be_positive(eps: float) -> None:
    from scalewise.models.config import ModelConfig

    with pytest.raises(ValueError, match="model.norm_eps"):
        ModelConfig(norm_eps=eps)


def test_invariant_init_scale_changes_the_norms_not_the_function() -> None:
    from scalewise.models.config import ModelConfig
    from scalewise.models.networks import build_model, scale_invariant_params

    base = build_model(ModelConfig(width=8, depth=2), (1, 8, 8), 10, seed=3)
    scaled = build_model(ModelConfig(width=8, depth=2, invariant_init_scale=3.0), (1, 8, 8), 10,
                         seed=3)
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    # batch norm divides by sqrt(var + eps): invariant up to eps / var, about 1e-4 here
    torch.testing.assert_close(scaled(x), base(x), rtol=1e-3, atol=1e-3)
    for a, b in zip(scale_invariant_params(base), scale_invariant_params(scaled)):
        torch.testing.assert_close(b.param, 3.0 * a.param)
