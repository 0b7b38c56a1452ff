"""Weight decay as a regularizer: the C-norm penalty of a preconditioned update, and what an
``L2`` penalty does to a deep linear network.

**Weight decay as a C-norm penalty** (001 Eq. 22 and Eq. 27; 000 slides 'Weight Decay as L^2
Regularization' and 'Three Mechanisms', Mechanism 2). For a symmetric preconditioner ``C`` the
literal weight-decay step ``(1 - alpha lam) w - alpha C^{-1} grad J`` is the preconditioned step
on ``J + lam/2 ||w||_C^2``; ``C = I`` is SGD with ``L2``. The preconditioned step on the ``L2``
objective, ``(I - alpha lam C^{-1}) w - alpha C^{-1} grad J``, is a different update (AdamW vs
Adam with ``L2``). ``C`` must be symmetric positive definite for ``||w||_C`` to be a norm; the
identities below need only symmetry and invertibility, and are checked for generic symbolic
``C`` of sizes 2 and 3.

**Deep linear networks** (001 Sec. 5, 'Effect on deep linear networks'). With ``K`` scalar
layers ``y = w_1 ... w_K x = beta x``, the smallest ``sum_i w_i^2`` that represents ``beta`` is
``K |beta|^{2/K}`` (:data:`DEEP_LINEAR_L2_MIN`), attained at ``|w_i| = |beta|^{1/K}``: ``L2`` on
the weights acts as an ``L_{2/K}`` penalty on the function.

**Deep linear networks of matrices** (001 Sec. 5, footnote). With ``K`` square layers
``W_K ... W_1 = A`` the footnote's minimum of ``sum_i ||W_i||_F^2`` is
``K sum_j sigma_j(A)^{2/K} = K ||A||_{2/K}^{2/K}``, the scalar minimum summed over the singular
values. Proved exactly here, for ``2 x 2`` layers: the balanced factorization built from the SVD
attains it and satisfies the Lagrange conditions (``K = 2, 3, 4``), and for ``K = 2`` every
factorization exceeds ``2 ||A||_*`` by a sum of squares, so ``2 ||A||_*`` is the minimum. That
nothing beats the balanced factorization for ``K >= 3`` is checked numerically
(``tests/test_theory_kfac.py``), not proved.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.theory.equilibrium import alpha, lam
from scalewise.theory.identity import identity, slip, unpack
from scalewise.theory.symbolic import (
    cayley_rotation,
    frobenius_sq,
    gradient,
    inverse,
    matrix,
    product,
    rational_numerator,
    symmetric,
    vector,
)

beta = sp.Symbol("beta", positive=True)
"""The product ``w_1 ... w_K`` of a scalar deep linear network, its slope (``|beta|`` in
general)."""

n_layers = sp.Symbol("K", integer=True, positive=True)
"""Number ``K`` of scalar layers."""

DEEP_LINEAR_L2_MIN = n_layers * beta ** (2 / n_layers)
"""``min sum_i w_i^2`` subject to ``prod_i w_i = beta`` (001 Sec. 5, corrected: ``K``, not
``L``)."""

DEEP_LINEAR_L2_MINIMIZER = beta ** (1 / n_layers)
"""``|w_i|`` at the minimum, the same for every layer (the balanced network)."""


# ---------------------------------------------------------------- C-norm penalty


def preconditioned_step(
    preconditioner: sp.Matrix, weights: sp.Matrix, penalty: sp.Expr
) -> sp.Matrix:
    """``w - alpha C^{-1} grad[J + penalty]`` with ``grad J`` a generic vector ``u`` (any cost)."""
    cost_gradient = vector("u", weights.rows)
    direction = cost_gradient + gradient(penalty, weights)
    return weights - alpha * inverse(preconditioner) * direction


def _c_norm_penalty(n: int) -> sp.Matrix:
    """The step on ``J + lam/2 w^T C w`` for a generic symmetric ``C``."""
    c, w = symmetric("c", n), vector("w", n)
    return preconditioned_step(c, w, lam / 2 * (w.T * c * w)[0])


def _l2_penalty(n: int, preconditioner: sp.Matrix) -> sp.Matrix:
    """The step on ``J + lam/2 ||w||^2`` preconditioned by ``preconditioner``."""
    w = vector("w", n)
    return preconditioned_step(preconditioner, w, lam / 2 * w.dot(w))


def _decoupled_decay(n: int, preconditioner: sp.Matrix) -> sp.Matrix:
    """Literal weight decay ``(1 - alpha lam) w - alpha C^{-1} grad J`` (001 Eq. 27, first line)."""
    w, u = vector("w", n), vector("u", n)
    return (1 - alpha * lam) * w - alpha * inverse(preconditioner) * u


def _coupled_decay(n: int, preconditioner: sp.Matrix) -> sp.Matrix:
    """``(I - alpha lam C^{-1}) w - alpha C^{-1} grad J`` (000 slides, line 375)."""
    w, u = vector("w", n), vector("u", n)
    inv = inverse(preconditioner)
    return (sp.eye(n) - alpha * lam * inv) * w - alpha * inv * u


identity(
    name="wd_as_c_norm_penalty",
    topic="regularization",
    source="001 Eq. (27); 000 slides, Mechanism 2 (lines 435-436)",
    statement=r"(1-\alpha\lambda)\mathbf{w} - \alpha\mathbf{C}^{-1}\nabla\mathcal{J}(\mathbf{w})"
    r" = \mathbf{w} - \alpha\mathbf{C}^{-1}\nabla\left[\mathcal{J}(\mathbf{w})"
    r" + \tfrac{\lambda}{2}\mathbf{w}^\top\mathbf{C}\mathbf{w}\right],"
    r"\ \mathbf{C} = \mathbf{C}^\top",
    claim=_c_norm_penalty,
    expected=lambda n: _decoupled_decay(n, symmetric("c", n)),
    control=lambda n: _coupled_decay(n, symmetric("c", n)),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="The penalty's gradient lam C w is obtained by differentiation (it uses C = C^T). The "
    "control is the preconditioned L2 step: literal decay and L2 differ unless C = I.",
)

identity(
    name="l2_penalty_preconditioned",
    topic="regularization",
    source="000 slides, 'Weight Decay as L^2 Regularization' (lines 374-375)",
    statement=r"\mathbf{w} - \alpha\mathbf{C}^{-1}\nabla\left[\mathcal{J}(\mathbf{w})"
    r" + \tfrac{\lambda}{2}\|\mathbf{w}\|^2\right]"
    r" = (\mathbf{I} - \alpha\lambda\mathbf{C}^{-1})\mathbf{w}"
    r" - \alpha\mathbf{C}^{-1}\nabla\mathcal{J}(\mathbf{w})",
    claim=lambda n: _l2_penalty(n, symmetric("c", n)),
    expected=lambda n: _coupled_decay(n, symmetric("c", n)),
    control=lambda n: _decoupled_decay(n, symmetric("c", n)),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="Adding an L2 penalty to a preconditioned method decays w through C^{-1}; the slide's "
    "statement is correct, and differs from literal weight decay (the control).",
)

identity(
    name="wd_is_l2_for_sgd",
    topic="regularization",
    source="001 Eq. (22) and Eq. (27) with C = I; "
    "000 slides, 'Weight Decay as L^2 Regularization' (line 365)",
    statement=r"\mathbf{w} - \alpha\nabla\left[\mathcal{J}(\mathbf{w})"
    r" + \tfrac{\lambda}{2}\|\mathbf{w}\|^2\right]"
    r" = (1-\alpha\lambda)\mathbf{w} - \alpha\nabla\mathcal{J}(\mathbf{w})",
    claim=lambda n: _l2_penalty(n, sp.eye(n)),
    expected=lambda n: _decoupled_decay(n, sp.eye(n)),
    control=lambda n: _decoupled_decay(n, sp.eye(n)) - alpha * lam * vector("w", n),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="With C = I the C-norm is the Euclidean norm, and literal decay and L2 coincide.",
)


# ---------------------------------------------------------------- deep linear networks


@cache
def deep_linear_l2_stationary_points(num_layers: int) -> tuple[tuple[sp.Expr, ...], ...]:
    """Every stationary point of ``sum_i w_i^2`` on ``prod_i w_i = beta`` (``beta > 0``), as
    ``(|w_1|, ..., |w_K|, value)``.

    Only ``t_i = w_i^2 > 0`` matter (signs can be flipped in pairs), so the problem is
    ``min sum_i t_i`` subject to ``prod_i t_i = beta^2``, solved by Lagrange multipliers. The
    objective grows without bound towards the boundary of the constraint surface, so a unique
    stationary point is the global minimum."""
    checks.integer("num_layers", num_layers, 1)
    squares = sp.symbols(f"t1:{num_layers + 1}", positive=True)
    multiplier = sp.Symbol("nu", positive=True)
    lagrangian = sum(squares) - multiplier * (sp.Mul(*squares) - beta**2)
    unknowns = (*squares, multiplier)
    solutions = sp.solve([lagrangian.diff(v) for v in unknowns], unknowns, dict=True)
    return tuple(
        tuple(sp.sqrt(s[t]) for t in squares) + (sum(s[t] for t in squares),) for s in solutions
    )


def _deep_linear_expected(num_layers: int, value: sp.Expr) -> tuple[tuple[sp.Expr, ...]]:
    minimizer = DEEP_LINEAR_L2_MINIMIZER.subs(n_layers, num_layers)
    return ((minimizer,) * num_layers + (value.subs(n_layers, num_layers),),)


identity(
    name="deep_linear_l2_minimum",
    topic="regularization",
    source="001 Sec. 5, 'Effect on deep linear networks'",
    statement=r"\min_{w_1\cdots w_K = \beta}\ \sum_{i=1}^K w_i^2 = K|\beta|^{2/K},"
    r"\ \text{attained at}\ |w_i| = |\beta|^{1/K}",
    claim=deep_linear_l2_stationary_points,
    expected=lambda n: _deep_linear_expected(n, DEEP_LINEAR_L2_MIN),
    control=lambda n: _deep_linear_expected(n, (n_layers - 1) * beta ** (2 / n_layers)),
    sizes=(2, 3, 4),
    simplifier=sp.simplify,
    note="Sizes are the number K of scalar layers; beta > 0 (a negative beta flips an odd number "
    "of signs and leaves every |w_i| and the value unchanged). The claim lists every stationary "
    "point, so the check also proves it is unique.",
)

slip(
    seed="001",
    place="Sec. 5, 'Effect on deep linear networks'",
    says=r"with $K$ layers the regularizer takes the value $\|\mathbf{w}\|^2 = L|\beta|^{2/K}$, minimized at $w_1 = \cdots = w_K = \beta^{1/K}$ up to a sign flip",
    truth=r"$\min\|\mathbf{w}\|^2 = K|\beta|^{2/K}$ ($L$ is undefined there), attained at $|w_i| = |\beta|^{1/K}$ with an even number of negative $w_i$ when $\beta > 0$, odd when $\beta < 0$",
    identity="deep_linear_l2_minimum",
)


# ---------------------------------------------------------------- deep linear networks of matrices

MATRIX_WIDTH = 2
"""Width of every layer in the symbolic checks of the footnote (``n x n`` matrices)."""


def _svd_target(width: int, singular_values: list[sp.Expr]) -> tuple[sp.Matrix, ...]:
    """``(A, P, R)``: ``A = P diag(singular_values) R^T`` with generic rotations ``P``, ``R``."""
    left, right = cayley_rotation(width, "p"), cayley_rotation(width, "q")
    return product(left, sp.diag(*singular_values), right.T), left, right


@cache
def _balanced_case(num_layers: int) -> tuple[sp.Matrix, ...]:
    """``(A, P, R, D, W_1, ..., W_K)``: the balanced factorization ``W_K = P D``, ``W_i = D``,
    ``W_1 = D R^T`` of ``A = P D^K R^T`` with ``D = diag(r_j)``, so the singular values of ``A``
    are ``sigma_j = r_j^K`` and ``D = Sigma^{1/K}``. ``K >= 2``."""
    checks.integer("num_layers", num_layers, 2)
    roots = sp.symbols(f"r1:{MATRIX_WIDTH + 1}", positive=True)
    target, left, right = _svd_target(MATRIX_WIDTH, [r**num_layers for r in roots])
    middle = sp.diag(*roots)
    layers = [middle * right.T, *[middle] * (num_layers - 2), left * middle]
    return (target, left, right, middle, *layers)


def _singular_values(num_layers: int) -> list[sp.Expr]:
    return [r**num_layers for r in _balanced_case(num_layers)[3].diagonal()]


def _chain_product(layers: list[sp.Matrix]) -> sp.Matrix:
    """``W_K ... W_1`` for ``layers = [W_1, ..., W_K]``."""
    return product(*reversed(layers))


def _balanced_value(num_layers: int) -> tuple[sp.Matrix, sp.Expr]:
    """``(W_K ... W_1, sum_i ||W_i||_F^2)`` of the balanced factorization."""
    layers = list(_balanced_case(num_layers)[4:])
    return _chain_product(layers), sum(frobenius_sq(w) for w in layers)


def _schatten_minimum(num_layers: int) -> tuple[sp.Matrix, sp.Expr]:
    """``(A, K sum_j sigma_j^{2/K})``: the scalar minimum ``K |beta|^{2/K}`` summed over the
    singular values (:data:`DEEP_LINEAR_L2_MIN`)."""
    values = _singular_values(num_layers)
    total = sum(DEEP_LINEAR_L2_MIN.subs({beta: s, n_layers: num_layers}) for s in values)
    return _balanced_case(num_layers)[0], total


def _frobenius_guess(num_layers: int) -> tuple[sp.Matrix, sp.Expr]:
    """``(A, K ||A||_F^{2/K})``: the scalar formula applied to the Frobenius norm."""
    values = _singular_values(num_layers)
    frobenius = sp.sqrt(sum(s**2 for s in values))
    return (_balanced_case(num_layers)[0],
            DEEP_LINEAR_L2_MIN.subs({beta: frobenius, n_layers: num_layers}))


identity(
    name="deep_linear_balanced_factorization",
    topic="regularization",
    source="001 Sec. 5, footnote to 'Effect on deep linear networks' (Schatten quasi-norm)",
    statement=r"\mathbf{A} = \mathbf{P}\boldsymbol{\Sigma}\mathbf{R}^\top,\ "
    r"\mathbf{W}_K = \mathbf{P}\boldsymbol{\Sigma}^{1/K},\ "
    r"\mathbf{W}_i = \boldsymbol{\Sigma}^{1/K},"
    r"\ \mathbf{W}_1 = \boldsymbol{\Sigma}^{1/K}\mathbf{R}^\top:\ "
    r"\mathbf{W}_K\cdots\mathbf{W}_1 = \mathbf{A},\ \sum_{i=1}^K\|\mathbf{W}_i\|_F^2"
    r" = K\sum_j\sigma_j^{2/K} = K\|\mathbf{A}\|_{2/K}^{2/K}",
    claim=_balanced_value,
    expected=_schatten_minimum,
    control=_frobenius_guess,
    sizes=(2, 3, 4),
    simplifier=rational_numerator,
    note="Sizes are the number K of layers; 2 x 2 matrices, A built from its SVD with generic "
    "rotations P, R and symbolic singular values. This proves the footnote's value is attained; "
    "that no factorization does better is proved exactly for K = 2 (two_layer_nuclear_norm_bound), "
    "shown to be a stationary point for every K (deep_linear_balanced_stationary), and checked "
    "numerically for K = 2, 3 by minimizing over factorizations. The footnote says L2 'penalizes' "
    "||A||_{2/K}^{2/K}: the minimum is K times it. The control applies the scalar formula to the "
    "Frobenius norm, K ||A||_F^{2/K}.",
)


def _lagrange_sides(num_layers: int, multiplier_power: sp.Expr) -> tuple[list, list]:
    """``(grad sum_i ||W_i||_F^2, grad <Lam, W_K ... W_1>)``, each a list of the gradients in
    ``W_1 ... W_K`` by differentiation, at the balanced factorization, with the multiplier
    ``Lam = 2 P D^{multiplier_power} R^T``."""
    case = _balanced_case(num_layers)
    left, right, middle, balanced = case[1], case[2], case[3], case[4:]
    generic = [matrix(f"W{i + 1}", MATRIX_WIDTH, MATRIX_WIDTH) for i in range(num_layers)]
    multiplier = 2 * left * middle**multiplier_power * right.T
    coupling = sum(multiplier.multiply_elementwise(_chain_product(generic)))
    cost = sum(frobenius_sq(w) for w in generic)
    point = {s: v for w, b in zip(generic, balanced) for s, v in zip(w, b)}

    def gradients(expr: sp.Expr) -> list[sp.Matrix]:
        return [w.applyfunc(lambda s: expr.diff(s).xreplace(point)) for w in generic]

    return gradients(cost), gradients(coupling)


identity(
    name="deep_linear_balanced_stationary",
    topic="regularization",
    source="001 Sec. 5, footnote to 'Effect on deep linear networks' (Schatten quasi-norm)",
    statement=r"\nabla_{\mathbf{W}_i}\sum_j\|\mathbf{W}_j\|_F^2 = \nabla_{\mathbf{W}_i}"
    r"\langle\boldsymbol{\Lambda}, \mathbf{W}_K\cdots\mathbf{W}_1\rangle\ (i = 1..K)"
    r"\ \text{at the balanced factorization},\ "
    r"\boldsymbol{\Lambda} = 2\mathbf{P}\boldsymbol{\Sigma}^{(2-K)/K}\mathbf{R}^\top",
    claim=lambda n: _lagrange_sides(n, 2 - n)[0],
    expected=lambda n: _lagrange_sides(n, 2 - n)[1],
    control=lambda n: _lagrange_sides(n, -n)[1],
    sizes=(2, 3, 4),
    simplifier=rational_numerator,
    note="The Lagrange conditions of min sum_i ||W_i||_F^2 subject to W_K ... W_1 = A hold at the "
    "balanced factorization (deep_linear_balanced_factorization) with the multiplier "
    "2 P Sigma^{(2-K)/K} R^T: it is a stationary point for every K, not only for K = 2 where the "
    "multiplier is 2 P R^T. Stationarity alone does not make it the minimum. The control is the "
    "multiplier 2 A^{-T} = 2 P Sigma^{-1} R^T.",
)


@cache
def _two_layer_case(width: int) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``(||W_1||^2 + ||W_2||^2 - 2 ||A||_*, ||W_2^T P - W_1 R||_F^2, ||W_2 - W_1^T||_F^2)`` for
    every factorization ``W_2 W_1 = A`` of ``A = P diag(sigma) R^T``: ``W_1`` generic invertible,
    ``W_2 = A W_1^{-1}``."""
    sigmas = list(sp.symbols(f"sigma1:{width + 1}", positive=True))
    target, left, right = _svd_target(width, sigmas)
    first = matrix("W", width, width)
    second = product(target, inverse(first))
    gap = frobenius_sq(first) + frobenius_sq(second) - 2 * sum(sigmas)
    return (gap, frobenius_sq(product(second.T, left) - product(first, right)),
            frobenius_sq(second - first.T))


identity(
    name="two_layer_nuclear_norm_bound",
    topic="regularization",
    source="001 Sec. 5, footnote to 'Effect on deep linear networks' (K = 2: nuclear norm)",
    statement=r"\mathbf{W}_2\mathbf{W}_1 = \mathbf{A}"
    r" = \mathbf{P}\boldsymbol{\Sigma}\mathbf{R}^\top:"
    r"\ \|\mathbf{W}_1\|_F^2 + \|\mathbf{W}_2\|_F^2 - 2\|\mathbf{A}\|_*"
    r" = \|\mathbf{W}_2^\top\mathbf{P} - \mathbf{W}_1\mathbf{R}\|_F^2 \ge 0",
    claim=unpack(_two_layer_case, lambda gap, _, __: gap),
    expected=unpack(_two_layer_case, lambda _, square, __: square),
    control=unpack(_two_layer_case, lambda _, __, naive: naive),
    sizes=(2,),
    simplifier=rational_numerator,
    note="Size is the width n (n x n layers; A invertible, so W_1 is invertible in every "
    "factorization). The gap is a sum of squares, so ||W_1||_F^2 + ||W_2||_F^2 >= 2 ||A||_*, with "
    "equality exactly when W_2^T P = W_1 R, the balanced factorizations (up to W_1 -> Q W_1, "
    "W_2 -> W_2 Q^T with Q orthogonal): for K = 2 the footnote's "
    "minimum 2 ||A||_* is proved exactly. The control drops the rotations, ||W_2 - W_1^T||_F^2.",
)


# ---------------------------------------------------------------- NumPy forms for sim/ and models/

_deep_linear_l2_min = sp.lambdify((beta, n_layers), DEEP_LINEAR_L2_MIN, "numpy")


def deep_linear_l2_min(slope: np.ndarray | float, num_layers: int) -> np.ndarray:
    """``K |beta|^{2/K}``: the smallest ``sum_i w_i^2`` of a ``K``-layer scalar linear network
    computing ``y = slope * x`` (identity ``deep_linear_l2_minimum``).

    >>> float(deep_linear_l2_min(-4.0, 2))
    8.0
    """
    checks.integer("num_layers", num_layers, 1)
    return _deep_linear_l2_min(np.abs(np.asarray(slope, dtype=float)), num_layers)


def deep_linear_matrix_l2_min(target: np.ndarray, num_layers: int) -> float:
    """``K sum_j sigma_j^{2/K} = K ||A||_{2/K}^{2/K}``: the smallest ``sum_i ||W_i||_F^2`` over
    factorizations ``W_K ... W_1 = A`` (001 Sec. 5, footnote): the scalar minimum
    :func:`deep_linear_l2_min` summed over the singular values of ``target``, which the balanced
    factorization attains (identity ``deep_linear_balanced_factorization``).

    >>> round(deep_linear_matrix_l2_min(np.diag([4.0, 1.0]), 2), 12)
    10.0
    """
    checks.integer("num_layers", num_layers, 1)
    singular_values = np.linalg.svd(np.asarray(target, dtype=float), compute_uv=False)
    return float(np.sum(deep_linear_l2_min(singular_values, num_layers)))
