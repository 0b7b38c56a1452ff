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
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.theory.equilibrium import alpha, lam
from scalewise.theory.identity import identity, slip
from scalewise.theory.symbolic import gradient, rational_numerator, symmetric, vector

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


def inverse(matrix: sp.Matrix) -> sp.Matrix:
    """``matrix^{-1}`` by the adjugate (Cramer's rule): generic symbolic entries stay rational."""
    return matrix.adjugate() / matrix.det()


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
