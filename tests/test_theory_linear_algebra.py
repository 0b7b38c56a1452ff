"""NumPy and PyTorch spot checks of theory.adaptive, theory.kronecker and theory.preconditioning
at sizes and values the symbolic proofs do not reach: random float64 matrices, real optimizers,
and sampled gradients. Exact ground truth with explicit tolerances; stochastic checks seeded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp
import torch

from scalewise import theory
from scalewise.theory import adaptive, kronecker, preconditioning, symbolic

RTOL, ATOL = 1e-10, 1e-12


def assert_close(actual, expected, rtol: float = RTOL, atol: float = ATOL) -> None:
    """``np.testing.assert_allclose``, which prints the mismatching entries."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def vec(matrix: np.ndarray) -> np.ndarray:
    """Column-stacking vec, the convention of theory.kronecker."""
    return matrix.reshape(-1, order="F")


def rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q


@dataclass(frozen=True)
class Shapes:
    seed: int
    p: int
    q: int
    r: int
    s: int

    @property
    def id(self) -> str:
        return f"{self.p}x{self.q}x{self.r}x{self.s}"


SHAPES = [Shapes(0, 3, 4, 2, 5), Shapes(1, 1, 6, 3, 2), Shapes(2, 5, 5, 5, 5)]


@pytest.mark.parametrize("case", SHAPES, ids=[c.id for c in SHAPES])
def test_kronecker_algebra_at_random_values(case: Shapes) -> None:
    rng = np.random.default_rng(case.seed)
    shapes = ((case.p, case.q), (case.q, case.r), (case.r, case.s))
    A, X, B = (rng.standard_normal(shape) for shape in shapes)
    assert_close(vec(A @ X @ B), np.kron(B.T, A) @ vec(X))
    u, v = rng.standard_normal(case.p), rng.standard_normal(case.s)
    assert_close(vec(np.outer(u, v)), np.kron(v, u))
    C, D = rng.standard_normal((case.q, case.r)), rng.standard_normal((case.s, case.p))
    assert_close(np.kron(A, B) @ np.kron(C, D), np.kron(A @ C, B @ D))
    assert_close(np.kron(A, B).T, np.kron(A.T, B.T))
    P, Q = rng.standard_normal((case.p, case.p)), rng.standard_normal((case.s, case.s))
    inverse_of_factors = np.kron(np.linalg.inv(P), np.linalg.inv(Q))
    assert_close(np.linalg.inv(np.kron(P, Q)), inverse_of_factors, rtol=1e-8)


@pytest.mark.parametrize("dims", [(3, 2), (4, 4), (6, 3)], ids=lambda d: f"in{d[0]}-out{d[1]}")
def test_kfac_solve_and_spectrum(dims: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(dims))
    n_in, n_out = dims
    a_half, s_half = rng.standard_normal((n_in, n_in)), rng.standard_normal((n_out, n_out))
    A, S = a_half @ a_half.T + np.eye(n_in), s_half @ s_half.T + np.eye(n_out)
    V = rng.standard_normal((n_out, n_in))
    two_small_solves = vec(np.linalg.solve(S, V) @ np.linalg.inv(A))
    assert_close(np.linalg.solve(np.kron(A, S), vec(V)), two_small_solves, rtol=1e-8)
    products = np.sort(np.outer(np.linalg.eigvalsh(A), np.linalg.eigvalsh(S)).ravel())
    assert_close(np.linalg.eigvalsh(np.kron(A, S)), products, rtol=1e-9)


def test_vec_unvec_round_trip_and_bad_rows() -> None:
    matrix = symbolic.matrix("X", 2, 3)
    assert symbolic.unvec(symbolic.vec(matrix), 2) == matrix
    with pytest.raises(ValueError, match="rows"):
        symbolic.unvec(symbolic.vec(matrix), 4)


@pytest.mark.parametrize("dim", [2, 5, 50], ids=lambda d: f"dim{d}")
def test_ics_outliers_numerically(dim: int) -> None:
    rng = np.random.default_rng(dim)
    m = rng.standard_normal(dim)
    second = np.eye(dim) + np.outer(m, m)
    eigenvalues = np.linalg.eigvalsh(second)
    assert_close(eigenvalues[-1], kronecker.outlier_eigenvalue(m @ m))
    assert_close(eigenvalues[:-1], np.ones(dim - 1))
    homogeneous = np.block([[second, m[:, None]], [m[None, :], np.ones((1, 1))]])
    spectrum = np.linalg.eigvalsh(homogeneous)
    outlier = kronecker.homogeneous_outlier_eigenvalue(m @ m)
    assert_close(spectrum[-1], outlier, rtol=1e-9)
    assert_close(spectrum[0], 1 / outlier, rtol=1e-6)
    direction = np.asarray(kronecker.homogeneous_outlier_eigenvector(sp.Matrix(m)), dtype=float)
    direction = direction.ravel()
    assert_close(homogeneous @ direction, outlier * direction, rtol=1e-9)


@pytest.mark.parametrize("dim", [3, 4, 6], ids=lambda d: f"dim{d}")
def test_damped_newton_and_whitening_beyond_symbolic_sizes(dim: int) -> None:
    rng = np.random.default_rng(10 + dim)
    q = rotation(rng, dim)
    nus, eta = rng.uniform(0.01, 10.0, dim), 0.3
    H = q @ np.diag(nus) @ q.T
    damped = np.linalg.inv(H + eta * np.eye(dim))
    inverse_eigenvalues = preconditioning.damped_inverse_eigenvalue(nus, eta)
    assert_close(q.T @ damped @ q, np.diag(inverse_eigenvalues), atol=1e-12)
    gains = preconditioning.damped_step_gain(nus, eta)
    assert_close(q.T @ damped @ H @ q, np.diag(gains), atol=1e-12)
    R = q @ np.diag(nus**-0.5) @ q.T
    assert_close(R.T @ H @ R, np.eye(dim), atol=1e-12)


def to_numpy(builder, diagonal: np.ndarray, mean: np.ndarray, n_out: int) -> np.ndarray:
    """A quasi-diagonal builder evaluated at numeric statistics, as a float64 array."""
    matrix = builder(sp.diag(*diagonal.tolist()), sp.Matrix(mean), n_out)
    return np.asarray(matrix, dtype=float)


@pytest.mark.parametrize("dims", [(2, 1), (3, 2), (4, 3)], ids=lambda d: f"in{d[0]}-out{d[1]}")
def test_quasi_diagonal_builders_numerically(dims: tuple[int, int]) -> None:
    rng = np.random.default_rng(100 + sum(dims))
    n_in, n_out = dims
    sigma_sqrt, m = rng.uniform(0.5, 2.0, n_in), rng.standard_normal(n_in)
    W, b = rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out)
    a = rng.standard_normal(n_in)
    r_inverse = to_numpy(preconditioning.quasi_diagonal_r_inverse, sigma_sqrt, m, n_out)
    transformed = r_inverse @ np.concatenate([vec(W), b])  # (vec W_tilde, b_tilde)
    W_t = transformed[: n_in * n_out].reshape(n_out, n_in, order="F")
    b_t = transformed[n_in * n_out :]
    assert_close(W_t @ ((a - m) / sigma_sqrt) + b_t, W @ a + b)
    curvature = to_numpy(preconditioning.quasi_diagonal_curvature, sigma_sqrt**2, m, n_out)
    assert_close(r_inverse.T @ r_inverse, curvature)


def test_quasi_diagonal_curvature_matches_sampled_kfac_factor() -> None:
    rng = np.random.default_rng(7)
    n_in, n_out, samples = 3, 2, 400_000
    sigma_sqrt, m = np.array([0.5, 1.0, 2.0]), np.array([1.0, -0.5, 0.25])
    a = m + sigma_sqrt * rng.standard_normal((samples, n_in))  # (samples, in)
    a_bar = np.hstack([a, np.ones((samples, 1))])  # (samples, in + 1)
    sampled = np.kron(a_bar.T @ a_bar / samples, np.eye(n_out))
    exact = to_numpy(preconditioning.quasi_diagonal_curvature, sigma_sqrt**2, m, n_out)
    # Monte Carlo error ~ 4 / sqrt(samples) times the largest entry (4.0) bounds every entry
    assert np.max(np.abs(sampled - exact)) < 4 * 4.0 / np.sqrt(samples)


def test_bad_sizes_raise() -> None:
    with pytest.raises(ValueError, match="dim"):
        preconditioning.cayley_rotation(0)
    with pytest.raises(ValueError, match="n_in, n_out"):
        preconditioning.symbolic_layer(2, 0)
    z = sp.symbols("z1:3")
    with pytest.raises(ValueError, match="expr"):
        adaptive.standardized_expectation(z[0] ** 3, z)


@dataclass(frozen=True)
class Decay:
    beta: float
    steps: int

    @property
    def id(self) -> str:
        return f"beta{self.beta}-k{self.steps}"


DECAYS = [Decay(0.9, 50), Decay(0.99, 300), Decay(0.5, 20)]


def _constant_gradient_steps(make_optimizer, gradient: float, steps: int) -> np.ndarray:
    """Per-step updates of a torch optimizer on the linear loss ``gradient * w`` (float64)."""
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer([w])
    updates = []
    for _ in range(steps):
        before = w.detach().clone()
        optimizer.zero_grad()
        (gradient * w).sum().backward()
        optimizer.step()
        updates.append((before - w.detach()).item())
    return np.array(updates)


@pytest.mark.parametrize("case", DECAYS, ids=[c.id for c in DECAYS])
def test_torch_adagrad_rmsprop_and_adam_follow_the_closed_forms(case: Decay) -> None:
    gradient, lr, k = -0.7, 0.01, np.arange(1, case.steps + 1)
    adagrad = _constant_gradient_steps(
        lambda p: torch.optim.Adagrad(p, lr=lr, eps=0.0), gradient, case.steps
    )
    rmsprop = _constant_gradient_steps(
        lambda p: torch.optim.RMSprop(p, lr=lr, alpha=case.beta, eps=0.0), gradient, case.steps
    )
    adam = _constant_gradient_steps(
        lambda p: torch.optim.Adam(p, lr=lr, betas=(case.beta, case.beta**0.5), eps=0.0),
        gradient,
        case.steps,
    )
    assert_close(adagrad / rmsprop, adaptive.adagrad_rmsprop_step_ratio(k, case.beta))
    assert_close(rmsprop, adaptive.rmsprop_constant_gradient_step(k, case.beta, lr, gradient))
    assert_close(adam, np.full(case.steps, lr * np.sign(gradient)))


@pytest.mark.parametrize("batch", [1, 4, 32], ids=lambda b: f"B{b}")
def test_sampled_batch_second_moment(batch: int) -> None:
    rng = np.random.default_rng(batch)
    per_example = rng.standard_normal(64) * 2.0 + 0.5  # a finite data set of gradient coordinates
    mean, var = per_example.mean(), per_example.var()
    draws = 200_000
    batches = per_example[rng.integers(0, per_example.size, size=(draws, batch))].mean(axis=1)
    exact = adaptive.batch_second_moment(batch, mean, np.sqrt(var))
    # standard error of the sample mean of g_B^2, with a 5-sigma margin
    assert abs(np.mean(batches**2) - exact) < 5 * np.std(batches**2) / np.sqrt(draws)
    assert adaptive.adam_batch_step(2 * batch, mean, np.sqrt(var), 1.0) > adaptive.adam_batch_step(
        batch, mean, np.sqrt(var), 1.0
    )


def test_batch_size_slip_is_settled_by_its_identity() -> None:
    """001 Sec. 6 (Discussion) says larger batches mean more gradient noise and smaller Adam
    steps. The identity the slip points at differentiates the other way: SymPy decides, for
    every positive ``mu``, ``sigma``, ``alpha`` and ``|B|``, that ``E[g_B^2]`` (whose batch-noise
    part is ``sigma^2/|B|``) falls and the step ``alpha mu / sqrt(E[g_B^2])`` grows with
    ``|B|``, towards ``alpha``."""
    slip = next(s for s in theory.SLIPS if s.seed == "001" and "Discussion" in s.place)
    noise_rate, step_rate, limit = theory.IDENTITIES[slip.identity].claim()
    assert noise_rate.is_negative is True
    assert step_rate.is_positive is True
    assert limit == adaptive.alpha
