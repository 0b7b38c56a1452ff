"""theory.homogeneity and theory.normalization beyond the generic identity checks: the closed forms
against PyTorch's own normalization layers and autograd at random float64 values (sizes the
symbolic checks do not reach), the exact comparison used for norms, and input validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F

from scalewise.theory import homogeneity as hom
from scalewise.theory import normalization as nrm
from scalewise.theory import symbolic


@dataclass(frozen=True)
class BatchCase:
    batch: int
    width: int
    seed: int


BATCH_CASES = [BatchCase(4, 3, 0), BatchCase(5, 2, 1), BatchCase(3, 1, 2)]
BATCH_IDS = [f"B{c.batch}-D{c.width}" for c in BATCH_CASES]


def _random(case: BatchCase, *shape: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(case.seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _numeric(expr: sp.Matrix, *symbol_matrices: sp.Matrix):
    """``expr`` as a NumPy function of the given symbol matrices (each passed as an array)."""
    numeric = sp.lambdify([list(m) for m in symbol_matrices], expr, "numpy")
    return lambda *arrays: np.asarray(numeric(*(a.reshape(-1) for a in arrays)), dtype=float)


# torch refuses eps = 0 in training; 1e-300 added to a variance of order 1 rounds away in float64,
# so torch computes the eps-free formula of 001 Eq. (11)
NO_EPS = 1e-300


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12,
                               err_msg="mismatching entries")


@pytest.mark.parametrize("case", BATCH_CASES, ids=BATCH_IDS)
def test_batch_norm_and_its_backprop_match_torch(case: BatchCase) -> None:
    X, X_bar = symbolic.matrix("x", case.batch, case.width), symbolic.matrix("xbar", case.batch, case.width)
    forward = _numeric(nrm.batch_norm(X), X)
    backward = _numeric(nrm.batch_norm_vjp(X, X_bar), X, X_bar)
    x = _random(case, 2, case.batch, case.width)
    inputs, out_bar = x[0].clone().requires_grad_(True), x[1]
    # training-mode BN: the batch's biased variance and no affine parameters, as in Eq. (11)
    out = F.batch_norm(inputs, None, None, training=True, eps=NO_EPS)
    (in_bar,) = torch.autograd.grad(out, inputs, out_bar)
    _assert_close(forward(inputs.detach().numpy()), out.detach().numpy())
    _assert_close(backward(inputs.detach().numpy(), out_bar.numpy()), in_bar.numpy())


@pytest.mark.parametrize("case", BATCH_CASES, ids=BATCH_IDS)
def test_batch_center_backprop_matches_torch(case: BatchCase) -> None:
    S_bar = symbolic.matrix("sbar", case.batch, case.width)
    backward = _numeric(nrm.batch_center_vjp(S_bar), S_bar)
    x = _random(case, 2, case.batch, case.width)
    inputs = x[0].clone().requires_grad_(True)
    (in_bar,) = torch.autograd.grad(inputs - inputs.mean(dim=0, keepdim=True), inputs, x[1])
    _assert_close(backward(x[1].numpy()), in_bar.numpy())


@pytest.mark.parametrize("units", [2, 5], ids=["D2", "D5"])
def test_layer_norm_matches_torch(units: int) -> None:
    a, gains, biases = (symbolic.vector(name, units) for name in ("a", "g", "b"))
    forward = _numeric(nrm.layer_norm(a, gains, biases), a, gains, biases)
    generator = torch.Generator().manual_seed(units)
    values = torch.randn(3, units, generator=generator, dtype=torch.float64)
    expected = F.layer_norm(values[0], (units,), weight=values[1], bias=values[2], eps=NO_EPS)
    _assert_close(forward(*(v.numpy() for v in values)).reshape(-1), expected.numpy())


def _bn_unit_cost(w: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A scale-invariant cost of ``w``: one BN unit fitted to targets."""
    out = F.batch_norm((inputs @ w)[:, None], None, None, training=True, eps=NO_EPS)[:, 0]
    return 0.5 * ((out - targets) ** 2).sum()


def _torch_gradient(w: np.ndarray, inputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    wt = torch.tensor(w, requires_grad=True)
    (grad,) = torch.autograd.grad(_bn_unit_cost(wt, inputs, targets), wt)
    return grad.numpy()


@dataclass(frozen=True)
class StepCase:
    dim: int
    lr: float
    weight_norm: float
    seed: int


STEP_CASES = [StepCase(3, 0.1, 2.0, 0), StepCase(5, 1.0, 0.5, 1), StepCase(4, 10.0, 7.0, 2)]


STEP_IDS = [f"d{c.dim}-lr{c.lr}-norm{c.weight_norm}" for c in STEP_CASES]


@pytest.mark.parametrize("case", STEP_CASES, ids=STEP_IDS)
def test_normalized_step_and_unit_norm_gradient_on_a_torch_bn_cost(case: StepCase) -> None:
    rng = np.random.default_rng(case.seed)
    inputs = torch.tensor(rng.standard_normal((8, case.dim)))
    targets = torch.tensor(rng.standard_normal(8))
    w_hat = rng.standard_normal(case.dim)
    w_hat /= np.linalg.norm(w_hat)
    w = case.weight_norm * w_hat
    grad, grad_hat = _torch_gradient(w, inputs, targets), _torch_gradient(w_hat, inputs, targets)
    from_measured = hom.grad_norm_at_unit_norm(np.linalg.norm(w), np.linalg.norm(grad))
    np.testing.assert_allclose(from_measured, np.linalg.norm(grad_hat), rtol=1e-10)
    stepped = w - case.lr * grad
    rate = case.lr / case.weight_norm**2
    scale = hom.normalized_step_scale(rate, np.linalg.norm(grad_hat))
    predicted = scale * (w_hat - rate * grad_hat)
    _assert_close(stepped / np.linalg.norm(stepped), predicted)


x, y, z = sp.symbols("x y z", real=True)
t = sp.Symbol("t", positive=True)
kk = sp.Symbol("k", real=True)
f = sp.Function("f")


@pytest.mark.parametrize(
    ("expr", "zero"),
    [
        (sp.sqrt(t**2 * x**2 + t**2 * y**2) - t * sp.sqrt(x**2 + y**2), True),
        (sp.sqrt(2) * sp.sqrt(8) - 4, True),
        (x / sp.sqrt(x**2 + y**2) * sp.sqrt(x**2 + y**2) ** 3 - x * (x**2 + y**2), True),
        ((x**2 + y**2) ** (kk / 2) * (x**2 + y**2) - (x**2 + y**2) ** (kk / 2 + 1), True),
        ((sp.Abs(x) + y) ** 2 - x**2 - 2 * y * sp.Abs(x) - y**2, True),
        (f(x * y).diff(x) * x - f(x * y).diff(y) * y, True),
        (sp.sqrt(x**2 + y**2) - sp.sqrt(x**2 + z**2), False),
        (sp.sqrt(x**2 + y**2) - x - y, False),
        ((x**2 + y**2) ** (kk / 2) - (x**2 + y**2) ** ((kk + 1) / 2), False),
        (sp.Integer(1), False),
    ],
    ids=["positive-factor", "numbers", "odd-powers", "symbolic-exponent", "abs", "undefined-function",
         "different-radicands", "not-linear", "different-exponents", "constant"],
)
def test_reduce_radicals_decides_exactly(expr: sp.Expr, zero: bool) -> None:
    assert (hom.reduce_radicals(expr) == 0) is zero


def test_generic_function_has_symmetric_opaque_partials() -> None:
    f = hom.h(x, y)
    assert f.diff(x, y) == f.diff(y, x) == hom.partial_derivative((1, 2))(x, y)
    assert not f.diff(x).has(sp.Subs) and f.diff(x) != f.diff(y)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: nrm.batch_norm(symbolic.matrix("x", 1, 2)), "at least 2 rows"),
        (lambda: nrm.batch_std(symbolic.matrix("x", 1, 3)), "at least 2 rows"),
        (lambda: symbolic.matrix("x", 0, 2), "rows = 0 is invalid; allowed: an integer >= 1"),
        (lambda: symbolic.vector("x", 0), "n = 0 is invalid; allowed: an integer >= 1"),
        (lambda: nrm.vjp(symbolic.matrix("y", 2, 2), symbolic.matrix("x", 2, 2), symbolic.matrix("b", 2, 1)),
         "output_bar"),
        (lambda: nrm.layer_norm(*(symbolic.vector(c, 1) for c in "agb")), "at least 2 units"),
        (lambda: nrm.layer_norm(symbolic.vector("a", 3), symbolic.vector("g", 2), symbolic.vector("b", 3)),
         "gains, biases = .* allowed: the shape of a"),
    ],
    ids=["bn-one-row", "std-one-row", "empty-matrix", "empty-vector", "vjp-shape", "ln-one-unit",
         "ln-gain-shape"],
)
def test_bad_input_is_rejected_with_a_clear_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
