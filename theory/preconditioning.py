"""Preconditioning as reparameterization, damped Newton, and the quasi-diagonal preconditioner
that removes the ICS outlier.

Sources: 003 slides, 'Preconditioning' (w = R w_tilde + b: a GD step in w_tilde is the step
preconditioned by R R^T; transformed Hessian R^T H R; Newton whitens the Hessian) and
'Minimizing Quadratic Approximations: Damping' (the damped step minimizes the proximal quadratic;
eigenvalues of (H + eta I)^{-1} are 1/(nu_j + eta)); 001 Sec. 3.1, Eqs. (6)-(10) (the affine
reparameterization of a layer and its quasi-diagonal preconditioner).

Quasi-diagonal conventions: a layer ``W (out x in)``, ``b (out)`` acts on activations with mean
``m`` and diagonal covariance ``Sigma = diag(sigma_i^2)``; ``sigma_sqrt = Sigma^{1/2}``. The
parameter vector is ``(vec W, b)`` with column-stacking ``vec``, as in 003; then
``[R R^T]^{-1} = E[(a,1)(a,1)^T] (x) I_out``: the K-FAC factor ``A`` of the layer with ``S``
replaced by the identity, which is why the preconditioner removes the outlier of
:mod:`theory.kronecker`.
"""

from __future__ import annotations

from functools import cache

import sympy as sp
from sympy import kronecker_product as kron

from scalewise import checks
from scalewise.theory.identity import identity, slip, unpack
from scalewise.theory.kronecker import homogeneous_second_moment
from scalewise.theory.symbolic import (
    cayley_rotation,
    matrix,
    product,
    symmetric,
    vec,
    vector,
)

alpha, eta = sp.symbols("alpha eta", positive=True)
nu = sp.Symbol("nu", positive=True)

DAMPED_INVERSE_EIGENVALUE = 1 / (nu + eta)
"""Eigenvalue of ``(H + eta I)^{-1}`` along an eigenvector of ``H`` with eigenvalue ``nu``."""

DAMPED_STEP_GAIN = nu / (nu + eta)
"""Fraction of the Newton step that the damped step takes along that eigenvector: the
eigenvalue of ``(H + eta I)^{-1} H``."""


@cache
def _spectral(dim: int) -> tuple[sp.ImmutableMatrix, sp.ImmutableMatrix, tuple[sp.Symbol, ...]]:
    """``(H, Q, nus)``: a symmetric ``H = Q diag(nu_i) Q^T`` with a generic rotation ``Q``."""
    rotation = sp.ImmutableMatrix(cayley_rotation(dim))
    values = sp.symbols(f"nu1:{dim + 1}", positive=True)
    return sp.ImmutableMatrix(product(rotation, sp.diag(*values), rotation.T)), rotation, values


def _generic_cubic(w: sp.Matrix) -> sp.Expr:
    """A cost with a symbolic coefficient on every monomial of degree <= 3 in ``w``: its Hessian
    varies with ``w``, so Hessian identities are checked beyond quadratics."""
    monomials = sorted(sp.itermonomials(list(w), 3), key=sp.default_sort_key)
    return sum(sp.Symbol(f"c_{i}") * term for i, term in enumerate(monomials))


def _reparameterization(n: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix, sp.Matrix]:
    """Generic ``R (n x n)``, offset ``b``, transformed point ``w_tilde`` and
    ``w = R w_tilde + b``."""
    R, offset, tilde = matrix("R", n, n), vector("b", n), vector("u", n)
    return R, offset, tilde, R * tilde + offset


# ---------------------------------------------------------------- preconditioning (003)


def _gd_in_transformed_space(n: int) -> sp.Matrix:
    """``T(w_tilde - alpha grad_{w_tilde} J(T(w_tilde)))`` for an arbitrary cost ``J``."""
    R, offset, tilde, w = _reparameterization(n)
    cost = sp.Function("J")(*w)
    grad_tilde = sp.Matrix([cost.diff(u) for u in tilde])
    return R * (tilde - alpha * grad_tilde) + offset


def _preconditioned_step(n: int, preconditioner) -> sp.Matrix:
    """``w - alpha C grad J(w)`` at ``w = R w_tilde + b`` with ``C = preconditioner(R)``."""
    R, _, _, w = _reparameterization(n)
    point = vector("w", n)
    grad = sp.Matrix([sp.Function("J")(*point).diff(x) for x in point])
    grad = grad.subs(dict(zip(point, w)), simultaneous=True)
    return w - alpha * preconditioner(R) * grad


identity(
    name="preconditioned_step_is_reparameterized_gd",
    topic="preconditioning",
    source="003 slides, 'Preconditioning' (affine reparameterization)",
    statement=r"\mathbf{w} = \mathbf{R}\tilde{\mathbf{w}} + \mathbf{b}:\ "
    r"\mathcal{T}\big(\tilde{\mathbf{w}} - \alpha\nabla_{\tilde{\mathbf{w}}}\mathcal{J}(\mathcal{T}(\tilde{\mathbf{w}}))\big)"
    r" = \mathbf{w} - \alpha\mathbf{R}\mathbf{R}^\top\nabla\mathcal{J}(\mathbf{w})",
    claim=_gd_in_transformed_space,
    expected=lambda n: _preconditioned_step(n, lambda R: R * R.T),
    control=lambda n: _preconditioned_step(n, lambda R: R.T * R),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="J is an arbitrary (undefined) differentiable function; the chain rule gives "
    "grad_{w_tilde} = R^T grad_w. The control has the transposed factor R^T R.",
)


@cache
def _hessian_sides(n: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """Hessian in ``w_tilde`` of the generic cubic, and ``R`` and ``H(w)`` at
    ``w = R w_tilde + b``."""
    R, _, tilde, w = _reparameterization(n)
    point = vector("w", n)
    cost = _generic_cubic(point)
    transformed = sp.hessian(cost.subs(dict(zip(point, w)), simultaneous=True), tilde)
    at_w = sp.hessian(cost, point).subs(dict(zip(point, w)), simultaneous=True)
    return tuple(sp.ImmutableMatrix(M.applyfunc(sp.expand)) for M in (transformed, R, at_w))


identity(
    name="reparameterized_hessian",
    topic="preconditioning",
    source="003 slides, 'Preconditioning' (Hessian in the transformed space)",
    statement=r"\nabla^2_{\tilde{\mathbf{w}}}\mathcal{J}(\mathbf{R}\tilde{\mathbf{w}}+\mathbf{b})"
    r" = \mathbf{R}^\top\mathbf{H}\mathbf{R}",
    claim=lambda n: _hessian_sides(n)[0],
    expected=unpack(_hessian_sides, lambda _, R, H: R.T * H * R),
    control=unpack(_hessian_sides, lambda _, R, H: R * H * R.T),
    sizes=(2,),
    simplifier=sp.expand,
    note="J is a cubic in two variables with a symbolic coefficient on every monomial, so H "
    "depends on w; R is a generic 2 x 2 matrix.",
)


@cache
def _whitening(n: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """``H = Q diag(d_i^2) Q^T``, its inverse square root ``R = Q diag(1/d_i) Q^T``, and ``Q``."""
    rotation = cayley_rotation(n)
    roots = sp.symbols(f"d1:{n + 1}", positive=True)
    curvature = product(rotation, sp.diag(*(d**2 for d in roots)), rotation.T)
    inverse_root = product(rotation, sp.diag(*(1 / d for d in roots)), rotation.T)
    return tuple(sp.ImmutableMatrix(M) for M in (curvature, inverse_root, rotation))


identity(
    name="newton_whitens_hessian",
    topic="preconditioning",
    source="003 slides, 'Preconditioning' (corollary: Newton's method)",
    statement=r"\mathbf{R} = \mathbf{H}^{-1/2} = \mathbf{Q}\mathbf{D}^{-1/2}\mathbf{Q}^\top:\ "
    r"\mathbf{R}\mathbf{R}^\top\mathbf{H} = \mathbf{I},\quad \mathbf{R}^\top\mathbf{H}\mathbf{R} = \mathbf{I}",
    claim=unpack(_whitening, lambda H, R, _: (product(R, R.T, H), product(R.T, H, R))),
    expected=lambda n: (sp.eye(n), sp.eye(n)),
    control=unpack(_whitening, lambda H, R, Q: (sp.eye(H.rows), product(Q.T, H, Q))),
    sizes=(2,),
    simplifier=sp.cancel,
    note="R R^T = H^{-1} makes the preconditioned step Newton's, and the Hessian in the "
    "transformed space is I. The control is a pure rotation to the eigenbasis, which leaves "
    "the spectrum D in place.",
)


@cache
def _proximal_minimizer(n: int) -> sp.Matrix:
    """Stationary point of ``g^T (w - w_k) + (w - w_k)^T H (w - w_k)/2 + eta ||w - w_k||^2/2``
    for a generic symmetric ``H``, solved with sympy.solve."""
    point, current, grad = vector("w", n), vector("wk", n), vector("g", n)
    step = point - current
    quadratic = (grad.T * step + step.T * symmetric("H", n) * step / 2)[0]
    objective = quadratic + eta * step.dot(step) / 2
    solution = sp.solve([objective.diff(x) for x in point], list(point), dict=True)[0]
    return sp.ImmutableMatrix(point.subs(solution))


def _curvature_times_retreat(n: int, damping: sp.Expr) -> sp.Matrix:
    """``(H + damping I)(w_k - w_star)``: equals ``g`` exactly when
    ``w_star = w_k - (H + damping I)^{-1} g``."""
    curvature = symmetric("H", n) + damping * sp.eye(n)
    return curvature * (vector("wk", n) - _proximal_minimizer(n))


identity(
    name="damped_newton_proximal_step",
    topic="preconditioning",
    source="003 slides, 'Minimizing Quadratic Approximations: Damping'",
    statement=r"\mathbf{w}_\star = \arg\min_{\mathbf{w}}\ \nabla\mathcal{J}^\top(\mathbf{w}-\mathbf{w}_k)"
    r" + \tfrac12(\mathbf{w}-\mathbf{w}_k)^\top\mathbf{H}(\mathbf{w}-\mathbf{w}_k)"
    r" + \tfrac{\eta}{2}\|\mathbf{w}-\mathbf{w}_k\|^2"
    r" \;\Rightarrow\; (\mathbf{H}+\eta\mathbf{I})(\mathbf{w}_k - \mathbf{w}_\star) = \nabla\mathcal{J}(\mathbf{w}_k),"
    r"\ \text{i.e. } \mathbf{w}_\star = \mathbf{w}_k - (\mathbf{H}+\eta\mathbf{I})^{-1}\nabla\mathcal{J}(\mathbf{w}_k)",
    claim=lambda n: _curvature_times_retreat(n, eta),
    expected=lambda n: vector("g", n),
    control=lambda n: _curvature_times_retreat(n, sp.Integer(0)),
    sizes=(2, 3),
    simplifier=sp.cancel,
    note="Generic symmetric H; the stationarity equations are solved with sympy.solve and the "
    "solution is shown to satisfy the damped Newton system. The control drops the damping.",
)

slip(
    seed="003",
    place="slides 'Computation' and 'Hessian-Free Optimization' (quadratic model)",
    says=r"$\min_{\mathbf{v}} \tfrac12\mathbf{v}^\top\mathbf{C}\mathbf{v}^\top + \nabla\mathcal{J}(\mathbf{w})^\top\mathbf{v}$",
    truth=r"$\min_{\mathbf{v}} \tfrac12\mathbf{v}^\top\mathbf{C}\mathbf{v} + \nabla\mathcal{J}(\mathbf{w})^\top\mathbf{v}$ (a scalar; the second transpose is a typo), minimized by $\mathbf{v} = -\mathbf{C}^{-1}\nabla\mathcal{J}(\mathbf{w})$",
    identity="damped_newton_proximal_step",
)


@cache
def _damped_in_eigenbasis(n: int) -> tuple[sp.ImmutableMatrix, sp.ImmutableMatrix]:
    """``Q^T (H + eta I)^{-1} Q`` and ``Q^T (H + eta I)^{-1} H Q`` for ``H = Q diag(nu_i) Q^T``,
    with the inverse computed by SymPy."""
    curvature, rotation, _ = _spectral(n)
    inverse = (curvature + eta * sp.eye(n)).inv().applyfunc(sp.cancel)
    return (
        sp.ImmutableMatrix(product(rotation.T, inverse, rotation)),
        sp.ImmutableMatrix(product(rotation.T, inverse, curvature, rotation)),
    )


def _eigenvalue_diagonals(n: int, *functions: sp.Expr) -> tuple[sp.Matrix, ...]:
    """``diag(f(nu_1), ..., f(nu_n))`` for each ``f`` of ``nu``."""
    values = _spectral(n)[2]
    return tuple(sp.diag(*(f.subs(nu, v) for v in values)) for f in functions)


identity(
    name="damped_newton_eigenvalues",
    topic="preconditioning",
    source="003 slides, 'Minimizing Quadratic Approximations: Damping' (eigenvalues)",
    statement=r"\mathbf{H} = \mathbf{Q}\,\mathrm{diag}(\nu_j)\mathbf{Q}^\top\;\Rightarrow\;"
    r"\mathbf{Q}^\top(\mathbf{H}+\eta\mathbf{I})^{-1}\mathbf{Q} = \mathrm{diag}\!\left(\frac{1}{\nu_j+\eta}\right),"
    r"\ \mathbf{Q}^\top(\mathbf{H}+\eta\mathbf{I})^{-1}\mathbf{H}\mathbf{Q}"
    r" = \mathrm{diag}\!\left(\frac{\nu_j}{\nu_j+\eta}\right)",
    claim=_damped_in_eigenbasis,
    expected=lambda n: _eigenvalue_diagonals(n, DAMPED_INVERSE_EIGENVALUE, DAMPED_STEP_GAIN),
    control=lambda n: _eigenvalue_diagonals(n, 1 / nu, sp.Integer(1)),
    sizes=(2,),
    simplifier=sp.cancel,
    note="Q is a generic rotation (Cayley transform of a symbolic skew matrix) and the inverse "
    "is computed, not assumed. The eigenvalues of the damped inverse are 1/(nu_j + eta), "
    "positive and at most 1/eta, and the damped step takes the fraction nu_j/(nu_j + eta) of "
    "the Newton step along q_j. The control is the undamped Newton step. Larger sizes: NumPy "
    "spot checks in the tests.",
)

identity(
    name="damped_newton_regimes",
    topic="preconditioning",
    source="003 slides, 'Minimizing Quadratic Approximations: Damping' (last bullet)",
    statement=r"\lim_{\nu/\eta\to\infty}\frac{\nu}{\nu+\eta} = 1\ (\text{Newton}),\quad"
    r"\lim_{\nu\to0}\frac{1/(\nu+\eta)}{1/\eta} = 1\ (\text{GD with rate }1/\eta)",
    claim=lambda: (
        sp.limit(DAMPED_STEP_GAIN, nu, sp.oo),
        sp.limit(DAMPED_INVERSE_EIGENVALUE * eta, nu, 0),
    ),
    expected=lambda: (sp.Integer(1), sp.Integer(1)),
    control=lambda: (sp.Integer(1), 1 / eta),
    note="High-curvature directions get the full Newton step; low-curvature ones a gradient "
    "step with learning rate 1/eta.",
)

# ---------------------------------------------------------------- quasi-diagonal (001 Sec. 3.1)

_N_IN = 2
"""Input dimension of the symbolic layer; the sizes of the identities are the output dimension."""


def symbolic_layer(n_in: int, n_out: int) -> dict[str, sp.Matrix]:
    """Symbols for a layer and its input statistics: ``W (out x in)``, ``b``, ``sigma_sqrt =
    diag(sigma_i)`` (positive), the mean ``m``, and an activation ``a``."""
    if n_in < 1 or n_out < 1:
        checks.fail("n_in, n_out", (n_in, n_out), "integers >= 1")
    return {
        "W": matrix("W", n_out, n_in),
        "b": vector("b", n_out),
        "sigma_sqrt": sp.diag(*sp.symbols(f"sigma1:{n_in + 1}", positive=True)),
        "m": vector("m", n_in),
        "a": vector("a", n_in),
    }


def reparameterize(W, b, sigma_sqrt, mean):
    """``(W_tilde, b_tilde) = (W Sigma^{1/2}, b + W m)`` (001 Eq. 9). Written with ``@`` so
    that SymPy matrices and torch or NumPy arrays (``b``, ``mean`` as columns or 1-d) take it
    alike: the measured layers use this very function."""
    return W @ sigma_sqrt, b + W @ mean


def parameters_from_reparameterized(W_tilde, b_tilde, sigma_sqrt_inv, mean):
    """The inverse of :func:`reparameterize`: ``W = W_tilde Sigma^{-1/2}``, ``b = b_tilde - W m``
    (``sigma_sqrt_inv`` is ``Sigma^{-1/2}``)."""
    W = W_tilde @ sigma_sqrt_inv
    return W, b_tilde - W @ mean


def quasi_diagonal_r_inverse(sigma_sqrt: sp.Matrix, mean: sp.Matrix, n_out: int) -> sp.Matrix:
    """``R^{-1}`` of 001 Eq. (10), mapping ``(vec W, b)`` to ``(vec W_tilde, b_tilde)`` for
    column-stacking ``vec``: ``[[Sigma^{1/2} (x) I, 0], [m^T (x) I, I]]``, square of side
    ``(n_in + 1) n_out``. Entries may be symbols or numbers.

    >>> quasi_diagonal_r_inverse(sp.diag(2), sp.Matrix([3]), 1)
    Matrix([
    [2, 0],
    [3, 1]])
    """
    eye = sp.eye(n_out)
    top = kron(sigma_sqrt, eye).row_join(sp.zeros(sigma_sqrt.rows * n_out, n_out))
    return top.col_join(kron(mean.T, eye).row_join(eye))


def quasi_diagonal_curvature(sigma: sp.Matrix, mean: sp.Matrix, n_out: int) -> sp.Matrix:
    """``[R R^T]^{-1}`` as 001 Eq. (10) states it (with ``I`` for its bottom-right ``1``):
    ``[[(Sigma + m m^T) (x) I, m (x) I], [m^T (x) I, I]]``, ``Sigma`` the diagonal covariance."""
    eye = sp.eye(n_out)
    top = kron(sigma + mean * mean.T, eye).row_join(kron(mean, eye))
    return top.col_join(kron(mean.T, eye).row_join(eye))


def _layer_parameters(n_out: int) -> tuple[sp.Matrix, ...]:
    """``(W, b, sigma_sqrt, m)`` of the symbolic layer with ``n_out`` outputs."""
    layer = symbolic_layer(_N_IN, n_out)
    return tuple(layer[key] for key in ("W", "b", "sigma_sqrt", "m"))


def _solve_same_function(n_out: int) -> tuple[sp.Matrix, sp.Matrix]:
    """The ``(W_tilde, b_tilde)`` for which ``W_tilde a_tilde + b_tilde = W a + b`` for every
    ``a`` (001 Eq. 8), with ``a_tilde = Sigma^{-1/2}(a - m)`` (Eq. 7): solved, not assumed."""
    layer = symbolic_layer(_N_IN, n_out)
    W_t, b_t = matrix("Wt", n_out, _N_IN), vector("bt", n_out)
    a, sigma_sqrt = layer["a"], layer["sigma_sqrt"]
    gap = W_t * sigma_sqrt.inv() * (a - layer["m"]) + b_t - (layer["W"] * a + layer["b"])
    # an affine function of a vanishes identically iff its slope and its value at a = 0 do
    equations = list(gap.jacobian(a)) + list(gap.subs({x: 0 for x in a}))
    solution = sp.solve(equations, list(W_t) + list(b_t), dict=True)[0]
    return W_t.subs(solution), b_t.subs(solution)


identity(
    name="quasi_diagonal_reparameterization",
    topic="preconditioning",
    source="001 Eqs. (7)-(9)",
    statement=r"\tilde{\mathbf{W}}\mathbf{\Sigma}^{-1/2}(\mathbf{a}-\mathbf{m}) + \tilde{\mathbf{b}}"
    r" = \mathbf{W}\mathbf{a} + \mathbf{b}\ \forall\mathbf{a}\iff"
    r"\tilde{\mathbf{W}} = \mathbf{W}\mathbf{\Sigma}^{1/2},\ \tilde{\mathbf{b}} = \mathbf{b} + \mathbf{W}\mathbf{m}",
    claim=_solve_same_function,
    expected=lambda n: reparameterize(*_layer_parameters(n)),
    control=unpack(_layer_parameters, lambda W, b, s, m: (W * s, b - W * m)),
    sizes=(1, 2),
    simplifier=sp.expand,
    note="Input dimension 2, output dimension 1 and 2. The solution is unique: Eq. (9) is the "
    "only reparameterization that computes the same function.",
)


def _round_trip(n_out: int) -> tuple[sp.Matrix, sp.Matrix]:
    W, b, sigma_sqrt, mean = _layer_parameters(n_out)
    return reparameterize(*parameters_from_reparameterized(W, b, sigma_sqrt.inv(), mean),
                          sigma_sqrt, mean)


identity(
    name="quasi_diagonal_reparameterization_inverse",
    topic="preconditioning",
    source="001 Eq. (9)",
    statement=r"\mathbf{W} = \tilde{\mathbf{W}}\mathbf{\Sigma}^{-1/2},\ "
    r"\mathbf{b} = \tilde{\mathbf{b}} - \mathbf{W}\mathbf{m}\ \text{inverts Eq. (9)}",
    claim=_round_trip,
    expected=lambda n: _layer_parameters(n)[:2],
    control=unpack(_layer_parameters, lambda W, b, s, m: (W, b + 2 * W * m)),
    sizes=(1, 2),
    simplifier=sp.simplify,
    note="The measured layers map their weights both ways with these two functions.",
)


def _r_inverse_by_jacobian(n_out: int) -> sp.Matrix:
    """Jacobian of ``(vec W, b) -> (vec W_tilde, b_tilde)`` under Eq. (9)."""
    layer = symbolic_layer(_N_IN, n_out)
    W_t, b_t = reparameterize(layer["W"], layer["b"], layer["sigma_sqrt"], layer["m"])
    return vec(W_t).col_join(b_t).jacobian(vec(layer["W"]).col_join(layer["b"]))


def _row_stacking_r_inverse(n_out: int) -> sp.Matrix:
    """The Kronecker factors of Eq. (10) in the other order (right for row-stacking vec)."""
    layer, eye = symbolic_layer(_N_IN, n_out), sp.eye(n_out)
    top = kron(eye, layer["sigma_sqrt"]).row_join(sp.zeros(_N_IN * n_out, n_out))
    return top.col_join(kron(eye, layer["m"].T).row_join(eye))


identity(
    name="quasi_diagonal_r_inverse",
    topic="preconditioning",
    source="001 Eq. (10), left",
    statement=r"\begin{pmatrix}\mathrm{vec}\tilde{\mathbf{W}}\\ \tilde{\mathbf{b}}\end{pmatrix}"
    r" = \begin{pmatrix}\mathbf{\Sigma}^{1/2}\otimes\mathbf{I} & \mathbf{0}\\"
    r" \mathbf{m}^\top\otimes\mathbf{I} & \mathbf{I}\end{pmatrix}"
    r"\begin{pmatrix}\mathrm{vec}\mathbf{W}\\ \mathbf{b}\end{pmatrix}",
    claim=_r_inverse_by_jacobian,
    expected=lambda n: quasi_diagonal_r_inverse(*_layer_parameters(n)[2:], n),
    control=_row_stacking_r_inverse,
    sizes=(1, 2),
    simplifier=sp.expand,
    note="The notes' Kronecker order is right for column-stacking vec. The control (factors "
    "swapped) coincides with it for one output and is rejected for two.",
)

slip(
    seed="001",
    place="Eq. (10) (also 000/002 slides 'ICS and Invariance'), bottom-right blocks",
    says=r"bottom-right block $1$ in $\mathbf{R}^{-1}$ and in $[\mathbf{R}\mathbf{R}^\top]^{-1}$",
    truth=r"the bias block is $\mathbf{I}_{\mathrm{out}}$ (the identity on the biases); $1$ only for a single output unit. The Kronecker order $\mathbf{\Sigma}^{1/2}\otimes\mathbf{I}$ is right for column-stacking vec",
    identity="quasi_diagonal_r_inverse",
)


def _curvature_product(n_out: int, sigma_of) -> sp.Matrix:
    """``R R^T`` times a candidate for its inverse, ``R`` by inverting the derived ``R^{-1}``."""
    layer = symbolic_layer(_N_IN, n_out)
    R = _r_inverse_by_jacobian(n_out).inv()
    return R * R.T * quasi_diagonal_curvature(sigma_of(layer["sigma_sqrt"]), layer["m"], n_out)


identity(
    name="quasi_diagonal_curvature",
    topic="preconditioning",
    source="001 Eq. (10), right",
    statement=r"[\mathbf{R}\mathbf{R}^\top]^{-1} = \begin{pmatrix}(\mathbf{\Sigma}+\mathbf{m}\mathbf{m}^\top)"
    r"\otimes\mathbf{I} & \mathbf{m}\otimes\mathbf{I}\\ \mathbf{m}^\top\otimes\mathbf{I} & \mathbf{I}\end{pmatrix}",
    claim=lambda n: _curvature_product(n, lambda s: s**2),
    expected=lambda n: sp.eye((_N_IN + 1) * n),
    control=lambda n: _curvature_product(n, lambda s: s),
    sizes=(1, 2),
    simplifier=sp.cancel,
    note="R is obtained by inverting the derived R^{-1}; R R^T times the stated block is I. The "
    "control puts Sigma^{1/2} where Sigma belongs.",
)

def _layer_second_moment(n_out: int) -> sp.Matrix:
    """``E[(a,1)(a,1)^T]`` for the symbolic layer's input statistics (mean m, covariance Sigma)."""
    _, _, sigma_sqrt, mean = _layer_parameters(n_out)
    return homogeneous_second_moment(mean, sigma_sqrt)


identity(
    name="quasi_diagonal_is_kfac_factor",
    topic="preconditioning",
    source="001 Eq. (10) with 003 'K-FAC: Modeling the Pseudo-Gradients'",
    statement=r"[\mathbf{R}\mathbf{R}^\top]^{-1} = \mathbb{E}\!\left[\begin{pmatrix}\mathbf{a}\\1\end{pmatrix}"
    r"\begin{pmatrix}\mathbf{a}\\1\end{pmatrix}^{\!\top}\right]\otimes\mathbf{I}",
    claim=lambda n: quasi_diagonal_curvature(
        _layer_parameters(n)[2] ** 2, _layer_parameters(n)[3], n
    ),
    expected=lambda n: kron(_layer_second_moment(n), sp.eye(n)),
    control=lambda n: kron(sp.eye(n), _layer_second_moment(n)),
    sizes=(1, 2),
    simplifier=sp.expand,
    note="The second moment is derived for activations with mean m and covariance Sigma. The "
    "quasi-diagonal curvature is the K-FAC block A (x) S with S = I, so it carries A's outlier "
    "(theory.kronecker) and preconditioning by its inverse removes it.",
)


# ---------------------------------------------------------------- NumPy forms for sim/ and models/

damped_inverse_eigenvalue = sp.lambdify((nu, eta), DAMPED_INVERSE_EIGENVALUE, "numpy")
damped_step_gain = sp.lambdify((nu, eta), DAMPED_STEP_GAIN, "numpy")
