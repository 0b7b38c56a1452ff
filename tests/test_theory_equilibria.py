"""Numeric checks of theory's equilibria (theory.equilibria, built on theory.mean_field) beyond
the symbolic identities.

* The closed forms in EQUILIBRIA against the mean-field map itself, iterated to its fixed point in
  float64 (exact forms to rounding; leading-order forms against their stated next term).
* Approach rates against the eigenvalues of the numerically evaluated Jacobian.
* A seeded stochastic sphere simulation of torch's update rules against the forms (a bound).
* The catalogue agrees with the optimizer vocabulary's equilibrium kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
import sympy as sp

from scalewise.theory import adam_l2, equilibrium, mean_field
from scalewise.theory.equilibria import EQUILIBRIA, NO_EQUILIBRIUM
from scalewise.theory.equilibrium import alpha, g, lam, x
from scalewise.theory.mean_field import beta1, d, mu, p, q
from scalewise.vocabulary import PROPERTIES, Equilibrium

_SYMBOLS = (x, p, q, alpha, lam, g, mu, beta1, d)


@dataclass(frozen=True)
class Case:
    optimizer: str
    lr: float
    weight_decay: float
    momentum: float = 0.0
    beta1: float = 0.9
    dim: int = 64
    grad_norm: float = 1.0

    @property
    def id(self) -> str:
        hyper = f"lr{self.lr}-wd{self.weight_decay}-mu{self.momentum}-b{self.beta1}-d{self.dim}"
        return f"{self.optimizer}-{hyper}"

    def kwargs(self) -> dict:
        return dict(
            lr=self.lr,
            weight_decay=self.weight_decay,
            grad_norm=self.grad_norm,
            momentum=self.momentum,
            beta1=self.beta1,
            dim=self.dim,
        )

    def values(self) -> tuple[float, ...]:
        return (self.lr, self.weight_decay, self.grad_norm, self.momentum, self.beta1, self.dim)


@cache
def _mean_field(optimizer: str):
    """Lambdified map, its Jacobian, and ``E<w, w'> / x`` (all in ``_SYMBOLS``)."""
    step = sp.Matrix(mean_field.mean_field_map(optimizer))
    model = mean_field.mean_field_model(optimizer)
    cos = model.moments.w_dot_next.subs(mean_field.c, model.step_scale) / x
    return tuple(sp.lambdify(_SYMBOLS, e, "numpy") for e in (step, step.jacobian([x, p, q]), cos))


def _fixed_point(case: Case, start_norm_sq: float = 1.0, steps: int = 400_000) -> np.ndarray:
    """Iterate the mean-field map from ``(start_norm_sq, 0, 1)`` until it stops moving."""
    step = _mean_field(case.optimizer)[0]
    state = np.array([start_norm_sq, 0.0, 1.0])
    for _ in range(steps):
        new = np.asarray(step(*state, *case.values()), dtype=float).ravel()
        if np.allclose(new, state, rtol=1e-14, atol=0):
            return new
        state = new
    raise AssertionError(f"mean-field map of {case.id} did not converge: {state}")


def _assert_close(name: str, got, want, rtol: float, atol: float = 0.0) -> None:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol)
    assert not bad.any(), f"{name}: got {got[bad]} want {want[bad]} (rtol={rtol}, atol={atol})"


EXACT_CASES = [
    Case("sgdm", lr=0.05, weight_decay=0.1, momentum=0.5, grad_norm=2.0),
    Case("sgdm", lr=0.01, weight_decay=0.01, momentum=0.9),
    Case("sgdm", lr=0.1, weight_decay=0.5, momentum=0.0),
    Case("sgdm", lr=0.1, weight_decay=0.1, momentum=0.9),  # complex slow pair: rate sqrt(mu)
    Case("adamw", lr=0.01, weight_decay=0.5, beta1=0.9),
    Case("adamw", lr=0.02, weight_decay=0.5, beta1=0.0, dim=10),
    Case("adamw", lr=0.005, weight_decay=1.0, beta1=0.5, dim=1000, grad_norm=3.0),
]


@pytest.mark.parametrize("case", EXACT_CASES, ids=lambda c: c.id)
def test_exact_forms_are_the_mean_field_fixed_point(case: Case) -> None:
    state = _fixed_point(case)
    forms = EQUILIBRIA[case.optimizer].numpy()(**case.kwargs())
    _, jacobian, cos = _mean_field(case.optimizer)
    _assert_close("norm_sq", forms["norm_sq"], state[0], rtol=1e-9)
    angle = np.arccos(cos(*state, *case.values()))
    _assert_close("angular_update", forms["angular_update"], angle, rtol=1e-7)
    power = 1.0 if case.optimizer == "sgdm" else 0.5  # alpha/||w||^2 vs alpha/||w||
    _assert_close("effective_lr", forms["effective_lr"], case.lr / state[0] ** power, rtol=1e-9)
    eigenvalues = np.linalg.eigvals(np.asarray(jacobian(*state, *case.values()), dtype=float))
    dominant = eigenvalues[np.argmax(np.abs(eigenvalues))]
    want = dominant.real if abs(dominant.imag) < 1e-12 else abs(dominant)
    _assert_close("approach_rate", forms["approach_rate"], want, rtol=1e-7)


LEADING_CASES = [  # eps = (lr^2 dim wd / (4 grad_norm))^(2/3) between 0.005 and 0.01
    Case("adam", lr=0.01, weight_decay=0.1, beta1=0.9, dim=400),
    Case("adam", lr=0.02, weight_decay=0.05, beta1=0.0, dim=100, grad_norm=0.5),
    Case("rmsprop", lr=0.005, weight_decay=0.5, dim=256, grad_norm=2.0),
    Case("rmsprop", lr=0.01, weight_decay=0.1, dim=400),
]


@pytest.mark.parametrize("case", LEADING_CASES, ids=lambda c: c.id)
def test_adam_l2_forms_within_their_stated_order(case: Case) -> None:
    """Leading-order forms: the exact mean-field fixed point equals ``A (1 + (2r-1) eps/3)`` up
    to ``O(eps^2)``, and the angle and RMSprop's slope agree to ``O(eps)`` relative (measured
    coefficients: about 0.4, 0.33 and 1.0; the bounds leave a factor of 2 to 5)."""
    forms = EQUILIBRIA[case.optimizer].numpy()(**case.kwargs())
    args = (case.lr, case.weight_decay, case.grad_norm, case.dim)
    epsilon = float(sp.lambdify((alpha, lam, g, d), adam_l2.ADAM_EPSILON)(*args))
    r = 1.0 if case.optimizer == "rmsprop" else (1 - case.beta1) / (1 + case.beta1)
    state = _fixed_point(case, start_norm_sq=float(forms["norm_sq"]))
    corrected = forms["norm_sq"] * (1 + (2 * r - 1) * epsilon / 3)
    _assert_close("norm_sq", state[0], corrected, rtol=2 * epsilon**2)
    _, jacobian, cos = _mean_field(case.optimizer)
    angle = np.arccos(cos(*state, *case.values()))
    _assert_close("angular_update", forms["angular_update"], angle, rtol=epsilon)
    if case.optimizer == "rmsprop":
        slope = np.asarray(jacobian(*state, *case.values()), dtype=float)[0, 0]
        _assert_close("approach_rate", 1 - forms["approach_rate"], 1 - slope, rtol=2 * epsilon)


APPROACH_CASES = [  # small eps: the next term is relatively O(eps / (1 - beta1)^2)
    (Case("adam", lr=0.001, weight_decay=0.1, beta1=0.5, dim=400), 10),
    (Case("adam", lr=0.0003, weight_decay=0.1, beta1=0.9, dim=400), 100),
]


@pytest.mark.parametrize(
    ("case", "coefficient"), APPROACH_CASES, ids=lambda v: getattr(v, "id", f"c{v}")
)
def test_adam_l2_approach_rate_is_the_slow_eigenvalue(case: Case, coefficient: float) -> None:
    forms = EQUILIBRIA[case.optimizer].numpy()(**case.kwargs())
    args = (case.lr, case.weight_decay, case.grad_norm, case.dim)
    epsilon = float(sp.lambdify((alpha, lam, g, d), adam_l2.ADAM_EPSILON)(*args))
    state = _fixed_point(case, start_norm_sq=float(forms["norm_sq"]))
    jacobian = np.asarray(_mean_field("adam")[1](*state, *case.values()), dtype=float)
    eigenvalues = np.linalg.eigvals(jacobian)
    slow = eigenvalues[np.argmax(np.abs(eigenvalues))]
    assert abs(slow.imag) < 1e-12
    rtol = coefficient * epsilon
    _assert_close("1 - approach_rate", 1 - forms["approach_rate"], 1 - slow.real, rtol=rtol)


def test_adam_l2_slow_eigenvalue_series_is_exact() -> None:
    """The symbolic derivation behind ADAM_APPROACH_RATE for beta1 > 0 (seconds: not in the
    identity catalogue): t = 1 + 0 sqrt(eps) - 6 eps + ..., whatever beta1."""
    assert adam_l2.adam_l2_slow_eigenvalue_series() == (0, -6)


def test_sgd_uses_the_equilibrium_module_forms() -> None:
    sgd = EQUILIBRIA["sgd"]
    assert sgd.norm_sq is equilibrium.WD_NORM_SQ
    assert sgd.effective_lr is equilibrium.WD_EFFECTIVE_LR
    assert sgd.approach_rate is equilibrium.WD_APPROACH_RATE
    assert sgd.angular_update == sp.acos(1 - alpha * lam)


def test_sgdm_at_zero_momentum_matches_sgd_numerically() -> None:
    grid = dict(lr=np.array([0.01, 0.1, 0.5]), weight_decay=np.array([[0.1], [1.0]]))
    sgd, sgdm = EQUILIBRIA["sgd"].numpy()(**grid), EQUILIBRIA["sgdm"].numpy()(**grid, momentum=0.0)
    for key in sgd:
        _assert_close(key, sgdm[key], sgd[key], rtol=1e-12)


def test_catalogue_contents() -> None:
    assert set(EQUILIBRIA) == {"sgd", "sgdm", "adam", "adamw", "rmsprop", "nesterov", "muon",
                               "lion"}
    assert "adagrad" in NO_EQUILIBRIUM
    assert all(e.optimizer == name for name, e in EQUILIBRIA.items())
    assert [n for n, e in EQUILIBRIA.items() if not e.exact] == ["adam", "rmsprop", "muon",
                                                                 "lion"]
    assert all(e.approach_rate is not None for e in EQUILIBRIA.values())


def test_catalogue_keys_are_the_optimizers_with_an_equilibrium() -> None:
    with_one = {o.value for o, props in PROPERTIES.items()
                if props.equilibrium is not Equilibrium.NONE}
    assert set(EQUILIBRIA) == with_one


@pytest.mark.parametrize("optimizer", list(PROPERTIES), ids=lambda o: o.value)
def test_catalogue_agrees_with_the_vocabulary(optimizer) -> None:
    """PROPERTIES[...].equilibrium states EXACT / LEADING_ORDER / NONE; the catalogue must say
    the same, and a simulated optimizer without one must say why (sim.equilibrium's error)."""
    kind = optimizer.properties.equilibrium
    if kind is Equilibrium.NONE:
        assert optimizer.value not in EQUILIBRIA
        assert (optimizer.value in NO_EQUILIBRIUM) is optimizer.properties.simulated
    else:
        assert EQUILIBRIA[optimizer.value].exact is (kind is Equilibrium.EXACT)
        assert optimizer.value not in NO_EQUILIBRIUM


def test_numpy_forms_broadcast() -> None:
    lr, weight_decay = np.array([1e-3, 1e-2]), np.array([[0.01], [0.1], [1.0]])
    out = EQUILIBRIA["adamw"].numpy()(lr=lr, weight_decay=weight_decay, dim=128)
    assert {k: v.shape for k, v in out.items()} == {k: (3, 2) for k in out}


@pytest.mark.parametrize(
    ("optimizer", "kwargs", "parameter"),
    [
        ("sgd", dict(lr=-0.1, weight_decay=0.1), "lr"),
        ("sgd", dict(lr=0.1, weight_decay=0.0), "weight_decay"),
        ("sgd", dict(lr=2.0, weight_decay=0.6), "lr \\* weight_decay"),
        ("sgd", dict(lr=0.1, weight_decay=0.1, momentum=0.9), "momentum"),
        ("sgdm", dict(lr=0.1, weight_decay=0.1, momentum=1.0), "momentum"),
        ("sgd", dict(lr=0.1, weight_decay=0.1, grad_norm=np.nan), "grad_norm"),
        ("adamw", dict(lr=0.1, weight_decay=0.1), "dim"),
        ("adamw", dict(lr=0.1, weight_decay=0.1, dim=3.5), "dim"),
        ("adam", dict(lr=0.1, weight_decay=0.1, dim=8, beta1=1.0), "beta1"),
        ("rmsprop", dict(lr=0.1, weight_decay=0.1, dim=8, beta2=1.5), "beta2"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_input_names_the_parameter(optimizer: str, kwargs: dict, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        EQUILIBRIA[optimizer].numpy()(**kwargs)


# ---------------------------------------------------------------- stochastic sphere simulation


def _sphere_run(
    case: Case, *, beta2: float, steps: int, runs: int, seed: int
) -> tuple[float, float]:
    """torch's update rules on ``runs`` independent weight vectors with random tangent gradients
    of norm ``g/||w||``; mean ``||w||^2`` and mean angle per step over the second half."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((runs, case.dim))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    buffer, m, v = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    norms, angles = [], []
    for k in range(1, steps + 1):
        z = rng.standard_normal(w.shape)
        sq = np.sum(w * w, axis=1, keepdims=True)
        z -= np.sum(z * w, axis=1, keepdims=True) / sq * w
        grad = z / np.linalg.norm(z, axis=1, keepdims=True) * case.grad_norm / np.sqrt(sq)
        old = w
        if case.optimizer == "sgdm":
            buffer = case.momentum * buffer + grad + case.weight_decay * w
            w = w - case.lr * buffer
        else:  # adamw
            m = case.beta1 * m + (1 - case.beta1) * grad
            v = beta2 * v + (1 - beta2) * grad**2
            m_hat, v_hat = m / (1 - case.beta1**k), v / (1 - beta2**k)
            w = (1 - case.lr * case.weight_decay) * w - case.lr * m_hat / (np.sqrt(v_hat) + 1e-12)
        if k > steps // 2:
            norms.append(np.sum(w * w, axis=1))
            sq_new, sq_old = np.sum(w * w, axis=1), np.sum(old * old, axis=1)
            cos = np.sum(w * old, axis=1) / np.sqrt(sq_new * sq_old)
            angles.append(np.arccos(np.clip(cos, -1, 1)))
    return float(np.mean(norms)), float(np.mean(angles))


@pytest.mark.parametrize(
    "case",
    [
        Case("sgdm", lr=0.05, weight_decay=0.05, momentum=0.5, dim=128),
        Case("adamw", lr=0.01, weight_decay=0.5, beta1=0.9, dim=128),
    ],
    ids=lambda c: c.id,
)
def test_sphere_simulation_agrees_with_forms(case: Case) -> None:
    norm_sq, angle = _sphere_run(case, beta2=0.99, steps=3000, runs=8, seed=0)
    forms = EQUILIBRIA[case.optimizer].numpy()(**case.kwargs())
    # mean field and finite beta2 are accurate to O(1/sqrt(dim (1-beta2)^-1)); 3% is a loose bound
    _assert_close("norm_sq", norm_sq, forms["norm_sq"], rtol=0.03)
    _assert_close("angular_update", angle, forms["angular_update"], rtol=0.03)


def test_unknown_optimizer_is_named() -> None:
    with pytest.raises(ValueError, match="optimizer = 'adagrad' is invalid; allowed: one of adam"):
        mean_field.mean_field_model("adagrad")
