"""Probes against exact ground truth: K-FAC Gauss-Newton factors vs the exact
GGN diagonal blocks, the K-FAC and exact Gauss-Newton norms vs the Jacobian norm (004 Lemma 1,
Lemma 2, Theorem 1), and the cheap per-unit probes on hand-made vectors. All in float64."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from scalewise.models.kfac import KFAC
from scalewise.models.probes import (
    UNIT_STATISTICS,
    costly_probes,
    curvature_traces,
    effective_lr_form,
    gn_norm,
    jacobian_sq_norm,
    kfac_gn_factors,
    kfac_gn_norm,
    sample_units,
    softmax_hessian,
    unit_means,
    unit_rows,
)
from scalewise.sim.effective import effective_lr
from scalewise.theory.kfac import gn_norm as theory_gn_norm
from scalewise.theory.kfac import kfac_gn_norm as theory_kfac_gn_norm
from scalewise.vocabulary import Optimizer

RTOL, ATOL = 1e-10, 1e-12


@dataclass(frozen=True)
class Net:
    widths: tuple[int, ...]  # input, hidden..., output
    activation: type[nn.Module]
    examples: int
    seed: int

    @property
    def layers(self) -> int:  # L + 1 in 004's notation: L hidden layers and the output layer
        return len(self.widths) - 1

    @property
    def depth(self) -> int:  # L
        return self.layers - 1

    def build(self, *, bias: bool = False) -> nn.Sequential:
        gen = torch.Generator().manual_seed(self.seed)
        modules: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(self.widths, self.widths[1:])):
            layer = nn.Linear(n_in, n_out, bias=bias).double()
            with torch.no_grad():
                layer.weight.copy_(torch.randn(n_out, n_in, generator=gen, dtype=torch.float64)
                                   / math.sqrt(n_in))
                if bias:
                    layer.bias.copy_(torch.randn(n_out, generator=gen, dtype=torch.float64))
            modules.append(layer)
            if i < self.layers - 1:
                modules.append(self.activation())
        return nn.Sequential(*modules)

    def whitened_inputs(self) -> torch.Tensor:
        """(N, d) with ``X^T X / N = I`` exactly: sqrt(N) times orthonormal columns."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        raw = torch.randn(self.examples, self.widths[0], generator=gen, dtype=torch.float64)
        q, _ = torch.linalg.qr(raw)
        return q * math.sqrt(self.examples)

    def raw_inputs(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed + 2)
        scale = torch.linspace(0.2, 3.0, self.widths[0], dtype=torch.float64)
        return torch.randn(self.examples, self.widths[0], generator=gen, dtype=torch.float64) * scale + 0.5


LINEAR = [
    Net((4, 5, 3), nn.Identity, 12, 0),
    Net((5, 6, 6, 4), nn.Identity, 16, 1),
    Net((6, 4, 5, 3, 2), nn.Identity, 20, 2),
]
RELU = [Net((4, 6, 5, 3), nn.ReLU, 15, 3), Net((5, 7, 7, 7, 4), nn.ReLU, 25, 4)]


def _ids(nets: list[Net]) -> list[str]:
    return [f"{n.activation.__name__}-{'x'.join(map(str, n.widths))}" for n in nets]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL,
                 atol: float = ATOL) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def per_example_jacobians(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Dense Jacobians of the outputs in each parameter, per example (jacrev): one (N, C, P_k)
    tensor per parameter, in ``named_parameters`` order."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (x[None],))[0]

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, inputs)  # name -> (N, C, *shape)
    return [jac[name].flatten(2) for name in params]


def exact_gn_blocks(model: nn.Sequential, inputs: torch.Tensor) -> list[torch.Tensor]:
    """``E_x[J_w^T J_w]`` for each weight, from dense per-example Jacobians."""
    return [torch.einsum("ncp,ncq->pq", j, j) / inputs.shape[0]
            for j in per_example_jacobians(model, inputs)]


def dense_jacobian_sq_norm(model: nn.Sequential, inputs: torch.Tensor) -> torch.Tensor:
    jac = vmap(jacrev(lambda x: model(x[None])[0]))(inputs)  # (N, C, d)
    return jac.pow(2).sum() / inputs.shape[0]


@pytest.mark.parametrize("net", LINEAR + RELU, ids=_ids(LINEAR + RELU))
def test_jacobian_sq_norm_matches_dense_jacobian(net: Net) -> None:
    model, x = net.build(bias=True), net.raw_inputs()
    assert_close(jacobian_sq_norm(model, x), dense_jacobian_sq_norm(model, x))


@pytest.mark.parametrize("net", LINEAR, ids=_ids(LINEAR))
def test_kfac_factors_equal_exact_gn_blocks_for_linear_nets(net: Net) -> None:
    """For a linear network ``Ds = J_zs^T Dz`` does not depend on ``x``, so ``E[aa^T (x) Ds Ds^T]``
    factorizes: K-FAC is exact on the diagonal blocks (004 App. C), for any inputs."""
    model, x = net.build(), net.raw_inputs()
    for (a, s), block in zip(kfac_gn_factors(model, x), exact_gn_blocks(model, x)):
        assert_close(torch.kron(s, a), block)


@pytest.mark.parametrize("net", RELU, ids=_ids(RELU))
def test_kfac_factors_are_only_approximate_for_relu_nets(net: Net) -> None:
    model, x = net.build(), net.raw_inputs()
    blocks = zip(kfac_gn_factors(model, x)[1:], exact_gn_blocks(model, x)[1:])
    gaps = [float((torch.kron(s, a) - g).norm() / g.norm()) for (a, s), g in blocks]
    assert max(gaps) > 1e-3


@pytest.mark.parametrize("net", LINEAR, ids=_ids(LINEAR))
def test_kfac_gn_norm_is_layers_times_jacobian_norm(net: Net) -> None:
    """004 Theorem 1: ``theta^T G_hat theta = (L + 1) ||J||_F^2`` with whitened inputs (theory's
    ``KFAC_GN_NORM``); the exact GN norm's ``(L + 1)^2`` must not fit."""
    model, x = net.build(), net.whitened_inputs()
    jac = jacobian_sq_norm(model, x)
    assert_close(kfac_gn_norm(model, x), torch.as_tensor(theory_kfac_gn_norm(net.depth, jac)))
    assert not torch.isclose(kfac_gn_norm(model, x), torch.as_tensor(theory_gn_norm(net.depth, jac)))


@pytest.mark.parametrize("net", LINEAR, ids=_ids(LINEAR))
def test_gn_norm_is_layers_squared_times_jacobian_norm(net: Net) -> None:
    """004 Lemma 2 with whitened inputs: ``theta^T G theta = (L + 1)^2 ||J||_F^2`` (theory's
    ``GN_NORM``)."""
    model, x = net.build(), net.whitened_inputs()
    expected = theory_gn_norm(net.depth, jacobian_sq_norm(model, x))
    assert_close(gn_norm(model, x), torch.as_tensor(expected))


@pytest.mark.parametrize("net", LINEAR, ids=_ids(LINEAR))
def test_jacobian_identities_need_whitened_inputs(net: Net) -> None:
    model, x = net.build(), net.raw_inputs()
    jac = jacobian_sq_norm(model, x)
    assert not torch.isclose(gn_norm(model, x), torch.as_tensor(theory_gn_norm(net.depth, jac)),
                             rtol=1e-3)
    assert not torch.isclose(kfac_gn_norm(model, x),
                             torch.as_tensor(theory_kfac_gn_norm(net.depth, jac)), rtol=1e-3)


@pytest.mark.parametrize("net", LINEAR + RELU, ids=_ids(LINEAR + RELU))
def test_exact_gn_norm_is_layers_squared_times_output_norm(net: Net) -> None:
    """004 Lemma 1 (``J_theta theta = (L + 1) f(x)`` for bias-free ReLU and linear nets) gives
    ``theta^T G theta = (L + 1)^2 E ||f(x)||^2`` (004 Lemma 2, first part), any inputs."""
    model, x = net.build(), net.raw_inputs()
    outputs = model(x).detach()
    # GN_NORM's (L + 1)^2 applied to E||f(x)||^2: theory's gauss_newton_norm_relu_per_sample
    expected = theory_gn_norm(net.depth, outputs.pow(2).sum() / x.shape[0])
    assert_close(gn_norm(model, x), expected)


@pytest.mark.parametrize("net", RELU, ids=_ids(RELU))
def test_relu_gn_norm_is_not_the_jacobian_norm(net: Net) -> None:
    """001 Sec. 5.3 says the GN norm of a bias-free ReLU MLP is proportional to the Jacobian
    norm; exactly it is ``(L + 1)^2 E||J(x) x||^2``, which differs from ``(L + 1)^2 E||J(x)||_F^2``
    even with whitened inputs because ``J(x)`` depends on ``x`` (004 Theorem 1 is for linear
    networks only)."""
    model, x = net.build(), net.whitened_inputs()
    expected = torch.as_tensor(theory_gn_norm(net.depth, jacobian_sq_norm(model, x)))
    assert not torch.isclose(gn_norm(model, x), expected, rtol=1e-2)


@pytest.mark.parametrize("net", RELU, ids=_ids(RELU))
def test_gradient_structure_fails_with_biases(net: Net) -> None:
    model, x = net.build(bias=True), net.raw_inputs()
    outputs = model(x).detach()
    expected = theory_gn_norm(net.depth, outputs.pow(2).sum() / x.shape[0])
    assert not torch.isclose(gn_norm(model, x), expected, rtol=1e-3)


@pytest.mark.parametrize("net", LINEAR[:2] + RELU[:1], ids=_ids(LINEAR[:2] + RELU[:1]))
def test_sampled_kfac_gn_norm_converges_to_exact(net: Net) -> None:
    """Monte Carlo ``Dz ~ N(0, I)`` with a seeded generator: within 5% of the exact expectation
    with 4000 draws per example (relative standard error about 1-2%)."""
    model, x = net.build(), net.whitened_inputs()
    gen = torch.Generator().manual_seed(net.seed)
    sampled = kfac_gn_norm(model, x, samples=4000, generator=gen)
    exact = kfac_gn_norm(model, x)
    assert abs(float(sampled / exact) - 1) < 0.05


def test_kfac_gn_norm_with_biases_uses_homogeneous_coordinates() -> None:
    """With biases, ``W_bar = [W | b]`` and ``a_bar = [a; 1]``: the factors still give the exact
    blocks of the linear network's (weight, bias) parameters jointly."""
    net = LINEAR[1]
    model, x = net.build(bias=True), net.raw_inputs()
    blocks = exact_gn_blocks(model, x)  # weight and bias blocks separately, in order
    for i, (a, s) in enumerate(kfac_gn_factors(model, x)):
        full = torch.kron(s, a)  # rows/cols ordered (unit, [inputs..., 1])
        d = a.shape[0] - 1
        weight_index = torch.tensor([u * (d + 1) + j for u in range(s.shape[0]) for j in range(d)])
        bias_index = torch.tensor([u * (d + 1) + d for u in range(s.shape[0])])
        assert_close(full[weight_index][:, weight_index], blocks[2 * i])
        assert_close(full[bias_index][:, bias_index], blocks[2 * i + 1])


def test_curvature_traces_match_dense_blocks() -> None:
    net = RELU[0]
    model, x = net.build(), net.raw_inputs()
    traces = dict(((layer, name), v) for layer, name, v in curvature_traces(model, x, chunk=4))
    for (name, _), block in zip(model.named_parameters(), exact_gn_blocks(model, x)):
        layer = name.rsplit(".", 1)[0]
        assert traces[(layer, "gn_trace")] == pytest.approx(float(block.trace()), rel=1e-10)
        assert 0 < traces[(layer, "fisher_trace")] < traces[(layer, "gn_trace")]


def test_fisher_trace_matches_sampled_targets_expectation() -> None:
    """``tr F = E_x sum_c p_c ||grad_w log p_c||^2``, summed over classes directly."""
    net = RELU[0]
    model, x = net.build(), net.raw_inputs()
    weight = model[0].weight
    total = torch.zeros((), dtype=torch.float64)
    for xi in x:
        logp = torch.log_softmax(model(xi[None])[0], dim=-1)
        for c in range(logp.shape[0]):
            (g,) = torch.autograd.grad(logp[c], weight, retain_graph=True)
            total += logp[c].exp().detach() * g.pow(2).sum()
    traces = {(layer, name): v for layer, name, v in curvature_traces(model, x)}
    assert traces[("0", "fisher_trace")] == pytest.approx(float(total / x.shape[0]), rel=1e-10)


def test_model_fisher_is_the_gauss_newton_matrix_of_softmax_cross_entropy() -> None:
    """001 Eq. (1) on a real network (theory: identity ``softmax_fisher_is_gauss_newton``): the
    Fisher ``F = E_x sum_c p_c Dw_c Dw_c^T``, the exact expectation over targets drawn from the
    model, from dense per-example gradients of ``-log p_c`` in every parameter, equals
    ``G = E_x J^T (diag p - p p^T) J`` from dense Jacobians, to 1e-10 relative; the empirical
    Fisher ``E_x Dw_t Dw_t^T`` with the targets ``t`` of the data is not ``G``."""
    net = RELU[0]
    model, x = net.build(bias=True), net.raw_inputs()
    params = list(model.parameters())
    labels = torch.Generator().manual_seed(5)
    targets = torch.randint(net.widths[-1], (x.shape[0],), generator=labels)
    size = sum(p.numel() for p in params)
    fisher = torch.zeros(size, size, dtype=torch.float64)
    empirical = torch.zeros_like(fisher)
    for xi, target in zip(x, targets):
        log_p = torch.log_softmax(model(xi[None])[0], dim=-1)
        grads = [torch.cat([g.flatten() for g in torch.autograd.grad(-log_p[c], params,
                                                                    retain_graph=True)])
                 for c in range(log_p.shape[0])]
        fisher += sum(p_c * torch.outer(g, g) for p_c, g in zip(log_p.exp().detach(), grads))
        empirical += torch.outer(grads[target], grads[target])
    jac = torch.cat(per_example_jacobians(model, x), dim=2)  # (N, C, P)
    hessian = softmax_hessian(model(x))  # (N, C, C)
    gauss_newton = torch.einsum("ncp,ncd,ndq->pq", jac, hessian, jac) / x.shape[0]
    assert_close(fisher / x.shape[0], gauss_newton)
    gap = torch.linalg.matrix_norm(empirical / x.shape[0] - gauss_newton)
    assert gap > 0.1 * torch.linalg.matrix_norm(gauss_newton)


def test_costly_probes_names() -> None:
    net = RELU[0]
    names = {name for _, name, _ in costly_probes(net.build(), net.raw_inputs())}
    assert names == {"jacobian_sq_norm", "gn_norm", "kfac_gn_norm", "gn_trace", "fisher_trace"}


@pytest.mark.parametrize("module", [nn.BatchNorm1d(3), nn.Dropout(0.1)], ids=["batchnorm", "dropout"])
def test_gn_norms_refuse_other_layers(module: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(4, 3), module, nn.Linear(3, 2))
    with pytest.raises(ValueError, match="Linear layers and elementwise activations"):
        kfac_gn_norm(model, torch.randn(5, 4))
    with pytest.raises(ValueError, match="Linear layers and elementwise activations"):
        gn_norm(model, torch.randn(5, 4))


# ----------------------------------------------------------------------------- cheap probes

@dataclass(frozen=True)
class Pair:
    w: tuple[float, ...]
    other: tuple[float, ...]
    angle: float
    name: str


PAIRS = [Pair((3.0, 4.0), (-4.0, 3.0), math.pi / 2, "orthogonal"),
         Pair((1.0, 0.0), (1.0, 1.0), math.pi / 4, "45deg"),
         Pair((2.0, 0.0, 0.0), (2.0, 1e-9, 0.0), math.atan(0.5e-9), "tiny-angle")]


def _statistics(before: torch.Tensor, after: torch.Tensor, grad: torch.Tensor,
                rho: float) -> np.ndarray:
    """:data:`UNIT_STATISTICS` of one unit, computed straight from their definitions."""
    update = rho * before - after
    values = {"norm_sq": before @ before, "grad_sq": grad @ grad, "w_dot_grad": before @ grad,
              "update_sq": update @ update, "w_dot_update": before @ update,
              "w_dot_next": before @ after, "next_norm_sq": after @ after,
              "grad_dot_prev": math.nan, "prev_grad_sq": math.nan}
    return np.array([[float(values[name])] for name in UNIT_STATISTICS])


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
@pytest.mark.parametrize("rho", [1.0, 0.9])
def test_unit_means_on_known_vectors(pair: Pair, rho: float) -> None:
    """``w_k = pair.w``, ``w_{k+1} = pair.other``, gradient ``pair.other``: the angle between
    ``w_k`` and ``w_{k+1}`` comes out right whatever ``rho`` splits the step into, to the
    resolution the statistics allow (about 1e-8 ``||u|| / ||w||`` radians: ``||u||^2`` and
    ``<w_hat, u>^2`` cancel where ``u`` is nearly radial; exact for a tangent ``u``)."""
    w = torch.tensor(pair.w, dtype=torch.float64)
    other = torch.tensor(pair.other, dtype=torch.float64)
    dot = sum(a * b for a, b in zip(pair.w, pair.other))
    nw, no = math.hypot(*pair.w), math.hypot(*pair.other)
    means = unit_means(_statistics(w, other, other, rho), 0.5, Optimizer.SGD, rho)
    assert float(means["norm_sq"][0]) == pytest.approx(nw**2, rel=1e-15)
    assert float(means["grad_norm_unit"][0]) == pytest.approx(nw * no, rel=1e-15)
    assert float(means["cos_w_grad"][0]) == pytest.approx(dot / (nw * no), rel=1e-12, abs=1e-15)
    resolution = 1e-8 * float(torch.linalg.norm(rho * w - other)) / nw
    assert float(means["angular_update"][0]) == pytest.approx(pair.angle, rel=1e-7,
                                                               abs=resolution)
    assert float(means["effective_lr"][0]) == pytest.approx(0.5 / nw**2, rel=1e-15)


def test_sample_units_spreads_evenly_and_keeps_small_layers_whole() -> None:
    assert sample_units(5, 8).tolist() == [0, 1, 2, 3, 4]
    assert sample_units(5, None).tolist() == [0, 1, 2, 3, 4]
    picked = sample_units(1000, 7)
    assert picked.tolist() == [0, 166, 333, 500, 666, 832, 999]  # 832.5 rounds to even


@pytest.mark.parametrize("granularity,rows", [("unit", 4), ("layer", 1), (None, 4)])
def test_unit_rows(granularity: str | None, rows: int) -> None:
    assert unit_rows(torch.zeros(4, 3, 2, 2), granularity).shape == (rows, 48 // rows)


@dataclass(frozen=True)
class Form:
    make: object  # params -> optimizer
    form: str
    degree: float  # effective LR proportional to ||w||^degree


FORMS = [
    Form(lambda p: torch.optim.SGD(p, lr=0.5), "sgd", -2.0),
    Form(lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9), "sgdm", -2.0),
    Form(lambda p: torch.optim.Adam(p, lr=0.5), "adam", -1.0),
    Form(lambda p: torch.optim.AdamW(p, lr=0.5), "adamw", -1.0),
    Form(lambda p: torch.optim.RMSprop(p, lr=0.5), "rmsprop", -1.0),
    Form(lambda p: torch.optim.Adagrad(p, lr=0.5), "adagrad", -1.0),
    Form(lambda p: KFAC(nn.Sequential(nn.Linear(2, 2)), lr=0.5), "kfac", 0.0),
]


@pytest.mark.parametrize("case", FORMS, ids=[f.form for f in FORMS])
def test_effective_lr_form_per_optimizer(case: Form) -> None:
    optimizer = case.make([nn.Parameter(torch.zeros(2))])
    form = effective_lr_form(optimizer)
    assert form == case.form
    squared = np.array([0.25, 1.0, 9.0])
    expected = 0.5 * np.sqrt(squared) ** case.degree
    np.testing.assert_allclose(effective_lr(form, squared, 0.5), expected, rtol=1e-15, atol=0)


def test_effective_lr_form_refuses_unknown_optimizers() -> None:
    with pytest.raises(ValueError, match="effective-LR form"):
        effective_lr_form(torch.optim.LBFGS([nn.Parameter(torch.zeros(2))]))


# ----------------------------------------------------------------------------- normalization margins

@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_normalization_margins_are_the_smallest_variance_over_eps(norm: str) -> None:
    from scalewise.models.config import ModelConfig
    from scalewise.models.networks import build_model
    from scalewise.models.probes import normalization_margins

    model = build_model(ModelConfig(width=8, depth=2, norm=norm), (1, 8, 8), 10, seed=0)
    inputs = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    margins = {layer: value for layer, name, value in normalization_margins(model, inputs)}
    assert set(margins) == {"hidden1", "hidden2"}
    pre = model.hidden1.layer(inputs.flatten(1))  # (32, 8) the first normalization's input
    variance = pre.var(dim=0 if norm == "batch" else 1, unbiased=False).min()
    assert margins["hidden1"] == pytest.approx(float(variance / model.hidden1.norm.eps), rel=1e-5)
