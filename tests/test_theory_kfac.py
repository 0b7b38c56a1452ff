"""NumPy and PyTorch spot checks of theory.kfac and theory.regularization where the symbolic
proofs stop: real ReLU networks instead of fixed activation patterns, the normalized K-FAC update
including the renormalization, and the deep-linear L2 minimum (and its Schatten-norm footnote)
against random factorizations and against a numerical minimization over factorizations. float64,
exact ground truth, seeded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch.func import jvp

from scalewise.theory.kfac import normalized_kfac_step
from scalewise.theory.regularization import deep_linear_l2_min, deep_linear_matrix_l2_min

RTOL, ATOL = 1e-10, 1e-12


def assert_close(actual, expected, rtol: float = RTOL, atol: float = ATOL) -> None:
    """``np.testing.assert_allclose``, which prints the mismatching entries."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@dataclass(frozen=True)
class Mlp:
    """A bias-free MLP ``widths[0] -> ... -> widths[-1]``, ReLU between layers or linear."""

    seed: int
    widths: tuple[int, ...]
    relu: bool = True

    @property
    def id(self) -> str:
        return f"{'relu' if self.relu else 'linear'}-{'x'.join(map(str, self.widths))}"

    def weights(self) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return [rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
                for n_in, n_out in zip(self.widths[:-1], self.widths[1:])]

    def gates(self, weights: list[np.ndarray], inputs: np.ndarray) -> list[np.ndarray]:
        """Activation pattern ``D_l`` (0/1 diagonal) at one input; identities when linear."""
        gates, a = [], inputs
        for w in weights[:-1]:
            s = w @ a
            d = np.diag((s > 0).astype(float)) if self.relu else np.eye(len(s))
            gates.append(d)
            a = d @ s
        return gates

    def input_jacobian(self, weights: list[np.ndarray], inputs: np.ndarray) -> np.ndarray:
        """``J_x = W_L D_{L-1} ... D_0 W_0`` at one input: the network is linear on its region."""
        jac = weights[0]
        for w, d in zip(weights[1:], self.gates(weights, inputs)):
            jac = w @ d @ jac
        return jac


MLPS = [
    Mlp(0, (3, 4, 2)),
    Mlp(1, (4, 5, 5, 3)),
    Mlp(2, (2, 3, 3, 3, 2)),
    Mlp(3, (3, 4, 2), relu=False),
]
RELU_MLPS = [m for m in MLPS if m.relu]


@pytest.mark.parametrize("mlp", RELU_MLPS, ids=[m.id for m in RELU_MLPS])
def test_gradient_structure_on_real_relu_networks(mlp: Mlp) -> None:
    """004 Lemma 1 with a real ReLU (identity ``gradient_structure_relu`` fixes the pattern):
    the directional derivative along ``theta`` itself is ``(L+1) f(x)``."""
    weights = [torch.tensor(w) for w in mlp.weights()]
    rng = np.random.default_rng(mlp.seed + 100)
    inputs = torch.tensor(rng.standard_normal((16, mlp.widths[0])))  # (N, d_in)

    def network(*ws: torch.Tensor) -> torch.Tensor:
        a = inputs.T  # (d_in, N)
        for w in ws[:-1]:
            a = torch.relu(w @ a)
        return ws[-1] @ a  # (d_out, N)

    output, along_theta = jvp(network, tuple(weights), tuple(weights))
    assert_close(along_theta.numpy(), len(weights) * output.numpy())


def _whitened_support(dim: int) -> np.ndarray:
    """The inputs ``+-sqrt(dim) e_i``, equally likely, so ``E[x x^T] = I`` exactly.
    Shape ``(2 dim, dim)``."""
    basis = np.sqrt(dim) * np.eye(dim)
    return np.concatenate([basis, -basis])


def _output_and_jacobian_norms(mlp: Mlp) -> tuple[float, float]:
    """``E||f(x)||^2`` and ``E||J_x(x)||_F^2`` over the whitened support, exactly."""
    weights, support = mlp.weights(), _whitened_support(mlp.widths[0])
    jacobians = [mlp.input_jacobian(weights, x) for x in support]
    outputs = [j @ x for j, x in zip(jacobians, support)]
    output_sq = np.mean([o @ o for o in outputs])
    return float(output_sq), float(np.mean([np.sum(j**2) for j in jacobians]))


@pytest.mark.parametrize("mlp", MLPS, ids=[m.id for m in MLPS])
def test_gn_norm_is_jacobian_norm_only_for_linear_networks(mlp: Mlp) -> None:
    """The exact GN norm is ``(L+1)^2 E||f(x)||^2`` for ReLU networks too (identity
    ``gauss_newton_norm_relu_per_sample``); it equals ``(L+1)^2 ||J_x||_F^2`` for linear networks
    with whitened inputs, but for ReLU networks ``E||f||^2`` and ``E||J_x||_F^2`` differ, as the
    recorded slip of 001 Sec. 5.3 says."""
    output_sq, jacobian_sq = _output_and_jacobian_norms(mlp)
    if mlp.relu:
        assert abs(output_sq - jacobian_sq) > 0.05 * jacobian_sq
    else:
        assert_close(output_sq, jacobian_sq)


@dataclass(frozen=True)
class ScaleInvariantLayer:
    """Curvature and gradient of a scale-invariant layer at a unit ``w_hat``: ``G(w_hat) w_hat = 0``
    and ``grad J(w_hat) . w_hat = 0`` (the projector ``P = I - w_hat w_hat^T`` on both sides)."""

    seed: int
    dim: int
    norm_sq: float
    damping: float

    @property
    def id(self) -> str:
        return f"n{self.dim}-norm_sq{self.norm_sq}-eta{self.damping}"

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        w_hat = rng.standard_normal(self.dim)
        w_hat /= np.linalg.norm(w_hat)
        proj = np.eye(self.dim) - np.outer(w_hat, w_hat)
        root = rng.standard_normal((self.dim, self.dim))
        return w_hat, proj @ root @ root.T @ proj, proj @ rng.standard_normal(self.dim)


LAYERS = [ScaleInvariantLayer(0, 3, 4.0, 1e-2), ScaleInvariantLayer(1, 6, 0.25, 1e-1),
          ScaleInvariantLayer(2, 5, 100.0, 1e-3)]


@pytest.mark.parametrize("layer", LAYERS, ids=[c.id for c in LAYERS])
def test_kfac_step_on_rescaled_weights_is_the_normalized_step(layer: ScaleInvariantLayer) -> None:
    """004 Eq. (14): K-FAC at ``w = ||w|| w_hat`` with ``G(w) = G(w_hat)/||w||^2`` and
    ``grad J(w) = grad J(w_hat)/||w||`` moves ``w / ||w||`` by exactly ``-alpha`` times the
    normalized step; the step is orthogonal to ``w_hat``, so renormalizing is second order."""
    w_hat, curvature, gradient = layer.sample()
    norm = np.sqrt(layer.norm_sq)
    step = normalized_kfac_step(curvature, gradient, damping=layer.damping, norm_sq=layer.norm_sq)
    assert abs(step @ w_hat) < 1e-10 * np.linalg.norm(step)

    def renormalization_error(lr: float) -> float:
        damped = curvature / norm**2 + layer.damping * np.eye(layer.dim)
        w_next = norm * w_hat - lr * np.linalg.solve(damped, gradient / norm)
        assert_close(w_next / norm, w_hat - lr * step)
        return float(np.linalg.norm(w_next / np.linalg.norm(w_next) - (w_hat - lr * step)))

    lr = 1e-2 / np.linalg.norm(step)
    ratio = renormalization_error(lr) / renormalization_error(lr / 2)
    assert 3.8 < ratio < 4.2


BAD_STEPS = [
    ("non-square", np.ones((2, 3)), np.ones(2), 0.1, 1.0, "curvature"),
    ("gradient-shape", np.eye(2), np.ones(3), 0.1, 1.0, "gradient"),
    ("negative-damping", np.eye(2), np.ones(2), -0.1, 1.0, "damping"),
    ("zero-norm", np.eye(2), np.ones(2), 0.1, 0.0, "norm_sq"),
]


@pytest.mark.parametrize("case", BAD_STEPS, ids=[c[0] for c in BAD_STEPS])
def test_normalized_kfac_step_rejects_bad_input(case: tuple) -> None:
    _, curvature, gradient, damping, norm_sq, parameter = case
    with pytest.raises(ValueError, match=parameter):
        normalized_kfac_step(curvature, gradient, damping=damping, norm_sq=norm_sq)


@dataclass(frozen=True)
class ScalarChain:
    seed: int
    num_layers: int
    slope: float

    @property
    def id(self) -> str:
        return f"K{self.num_layers}-beta{self.slope}"


CHAINS = [
    ScalarChain(0, 2, 3.0),
    ScalarChain(1, 3, -0.5),
    ScalarChain(2, 5, 7.0),
    ScalarChain(3, 8, -2.0),
]


@pytest.mark.parametrize("chain", CHAINS, ids=[c.id for c in CHAINS])
def test_deep_linear_l2_min_bounds_every_factorization(chain: ScalarChain) -> None:
    """001 Sec. 5: no factorization ``w_1 ... w_K = beta`` has ``sum w_i^2`` below
    ``K |beta|^{2/K}``; the balanced one (an odd number of sign flips when ``beta < 0``)
    attains it."""
    rng = np.random.default_rng(chain.seed)
    minimum = deep_linear_l2_min(chain.slope, chain.num_layers)
    free = rng.standard_normal((2000, chain.num_layers - 1)) * rng.uniform(0.2, 3.0, (2000, 1))
    last = chain.slope / np.prod(free, axis=1)
    assert np.min(np.sum(free**2, axis=1) + last**2) >= minimum * (1 - 1e-12)
    balanced = np.full(chain.num_layers, abs(chain.slope) ** (1 / chain.num_layers))
    balanced[0] *= np.sign(chain.slope)
    assert_close(np.prod(balanced), chain.slope)
    assert_close(np.sum(balanced**2), minimum)


@pytest.mark.parametrize(
    "num_layers", [0, -1, 2.5, True], ids=["zero", "negative", "float", "bool"]
)
def test_deep_linear_l2_min_rejects_bad_num_layers(num_layers) -> None:
    with pytest.raises(ValueError, match="num_layers"):
        deep_linear_l2_min(1.0, num_layers)
    with pytest.raises(ValueError, match="num_layers"):
        deep_linear_matrix_l2_min(np.eye(2), num_layers)


@pytest.mark.parametrize(
    "seed, shape", [(0, (3, 3)), (1, (2, 4)), (2, (5, 3))], ids=["3x3", "2x4", "5x3"]
)
def test_two_layer_frobenius_penalty_is_twice_the_nuclear_norm(
    seed: int, shape: tuple[int, int]
) -> None:
    """001 Sec. 5 footnote for K = 2: ``min ||W_1||_F^2 + ||W_2||_F^2`` over ``W_2 W_1 = M`` is
    ``2 ||M||_*``, attained by the balanced SVD factorization; every reparameterization
    ``(R W_1, W_2 R^{-1})`` of it costs at least as much."""
    rng = np.random.default_rng(seed)
    target = rng.standard_normal(shape)
    u, sigma, vt = np.linalg.svd(target, full_matrices=False)
    first, second = np.sqrt(sigma)[:, None] * vt, u * np.sqrt(sigma)
    nuclear = float(np.sum(sigma))
    assert_close(second @ first, target)
    assert_close(np.sum(first**2) + np.sum(second**2), 2 * nuclear)
    for _ in range(200):
        mix = rng.standard_normal((len(sigma), len(sigma)))
        cost = np.sum((mix @ first) ** 2) + np.sum((second @ np.linalg.inv(mix)) ** 2)
        assert cost >= 2 * nuclear * (1 - 1e-12)


def _factorization_cost(free: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``sum_i ||W_i||_F^2`` of the factorization ``W_K ... W_1 = target`` with
    ``free = [W_2, ..., W_K]`` and ``W_1 = (W_K ... W_2)^{-1} target``: the constraint is
    eliminated, so every invertible ``free`` is a factorization."""
    upper = free[0]
    for w in free[1:]:
        upper = w @ upper
    first = torch.linalg.solve(upper, target)
    return first.pow(2).sum() + sum(w.pow(2).sum() for w in free)


@pytest.mark.parametrize("num_layers", [2, 3], ids=["K2", "K3"])
def test_deep_linear_matrix_l2_min_is_the_minimum_over_factorizations(num_layers: int) -> None:
    """001 Sec. 5 footnote: minimizing ``sum_i ||W_i||_F^2`` over ``W_K ... W_1 = A`` for a random
    3 x 3 ``A`` (L-BFGS from random starts, float64) from every start reaches
    ``K sum_j sigma_j^{2/K}`` to a relative 1e-10, and none ends below it."""
    rng = np.random.default_rng(10 + num_layers)
    target = torch.tensor(rng.standard_normal((3, 3)), dtype=torch.float64)
    minimum = deep_linear_matrix_l2_min(target.numpy(), num_layers)
    assert minimum < float(target.pow(2).sum()) + 3 * (num_layers - 1)  # below W_1 = A, W_i = I
    reached = []
    for _ in range(3):
        free = [torch.tensor(rng.standard_normal((3, 3)), dtype=torch.float64, requires_grad=True)
                for _ in range(num_layers - 1)]
        optimizer = torch.optim.LBFGS(free, lr=1.0, max_iter=2000, tolerance_grad=1e-13,
                                      tolerance_change=1e-15, history_size=50,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            cost = _factorization_cost(free, target)
            cost.backward()
            return cost

        optimizer.step(closure)
        reached.append(float(_factorization_cost(free, target).detach()))
    assert min(reached) >= minimum * (1 - 1e-12)
    assert reached == pytest.approx([minimum] * len(reached), rel=RTOL)
