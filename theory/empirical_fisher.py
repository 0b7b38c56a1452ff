"""Preconditioning by the empirical Fisher matrix against the true Fisher: why the step
``-F_emp^{-1} grad J`` of 001 Eq. (3) behaves oddly, why adaptive methods use ``F_emp^{-1/2}``,
and why natural gradient descent solves least squares in one step (001 Fig. 2, after Kunstner et
al. 2019).

Notation: ``N`` examples with per-example gradients ``g_i`` (the rows of ``G``, ``(N, 2)``),
``F_emp = (1/N) sum_i g_i g_i^T = G^T G / N`` and ``grad J = (1/N) sum_i g_i``. Scaling every
per-example gradient by ``c > 0`` scales ``F_emp`` by ``c^2`` (001 Eq. 3: "F_emp scales
quadratically in the size of the gradient"), so the step ``F_emp^{-1} grad J`` is homogeneous of
degree ``-1`` in the gradients (smaller steps where the gradient signal is larger) and the step
``F_emp^{-1/2} grad J`` of degree ``0``.

The ``2 x 2`` square root is exact: for symmetric ``M`` positive definite,
``M^{1/2} = (M + sqrt(det M) I) / sqrt(tr M + 2 sqrt(det M))`` (Cayley-Hamilton: ``M^2 = tr(M) M
- det(M) I``), the form :func:`sqrt_2x2` writes.

Least squares with a Gaussian likelihood: example ``i`` has features ``x_i`` (the rows of ``X``,
``(N, 2)``) and target ``y_i``; its loss is the negative log-likelihood
``l_i(w, t) = (t - x_i^T w)^2 / (2 sigma^2)`` up to a constant, and ``J(w) = (1/N) sum_i
l_i(w, y_i)`` (``sigma = 1`` is the plain least-squares cost). The true Fisher samples the
targets from the model, ``t_i = x_i^T w + sigma z_i`` with standard normal ``z_i`` (001 Eq. 1);
only two moments of ``z_i`` enter, so the expectation is exact
(:func:`theory.adaptive.standardized_expectation`).
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise.theory.adaptive import standardized_expectation
from scalewise.theory.identity import identity, unpack
from scalewise.theory.symbolic import (
    gradient,
    inverse,
    matrix,
    mean_outer_product,
    rational_numerator,
    vector,
)

DIM = 2
"""Number of parameters in the checks (the slope and intercept of 001 Fig. 2's regression)."""

c = sp.Symbol("c", positive=True)
sigma = sp.Symbol("sigma", positive=True)


def mean_gradient(gradients: sp.Matrix) -> sp.Matrix:
    """``grad J = (1/N) sum_i g_i``, a column."""
    return gradients.T * sp.ones(gradients.rows, 1) / gradients.rows


def sqrt_2x2(square: sp.Matrix) -> sp.Matrix:
    """``M^{1/2} = (M + s I) / sqrt(tr M + 2 s)``, ``s = sqrt(det M)``, for a symmetric positive
    definite ``2 x 2`` matrix ``M``. Determinant and trace are factored, so positive factors
    (``c^2`` of a scaled matrix) leave the square roots."""
    root_det = sp.sqrt(sp.factor(square.det()))
    return (square + root_det * sp.eye(2)) / sp.sqrt(sp.factor(square.trace() + 2 * root_det))


def _step(gradients: sp.Matrix) -> sp.Matrix:
    """``F_emp^{-1} grad J``, the step of 001 Eq. (3) without its sign."""
    return inverse(mean_outer_product(gradients)) * mean_gradient(gradients)


def _sqrt_step(gradients: sp.Matrix) -> sp.Matrix:
    """``F_emp^{-1/2} grad J`` with the exact square root."""
    return inverse(sqrt_2x2(mean_outer_product(gradients))) * mean_gradient(gradients)


@cache
def _per_example_gradients(examples: int) -> sp.Matrix:
    return sp.ImmutableMatrix(matrix("g", examples, DIM))


identity(
    name="empirical_fisher_step_degree_minus_one",
    topic="adaptive",
    source="001 Eq. (3) and the text after it",
    statement=r"\mathbf{F}_{\mathrm{emp}}(c\mathbf{g})^{-1}\nabla\mathcal{J}(c\mathbf{g})"
    r" = \tfrac1c\,\mathbf{F}_{\mathrm{emp}}(\mathbf{g})^{-1}\nabla\mathcal{J}(\mathbf{g}),\quad"
    r"\mathbf{F}_{\mathrm{emp}} = \tfrac1N\textstyle\sum_i\mathbf{g}_i\mathbf{g}_i^\top",
    claim=lambda n: _step(c * _per_example_gradients(n)),
    expected=lambda n: _step(_per_example_gradients(n)) / c,
    control=lambda n: _step(_per_example_gradients(n)),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="Sizes are the number N of per-example gradients g_i in R^2 (generic symbols; N >= 2 "
    "makes F_emp invertible). Scaling every g_i by c > 0 divides the step by c: the larger the "
    "gradient signal, the smaller the step. The control is the scale-free step (degree 0).",
)


@cache
def _sqrt_case(examples: int) -> tuple[sp.Matrix, ...]:
    """``(S^2, F_emp^{-1/2}(c g) grad J(c g), F_emp, F_emp^{-1/2}(g) grad J(g))``,
    ``S = sqrt_2x2(F_emp)``."""
    gradients = _per_example_gradients(examples)
    fisher = mean_outer_product(gradients)
    return sqrt_2x2(fisher) ** 2, _sqrt_step(c * gradients), fisher, _sqrt_step(gradients)


identity(
    name="empirical_fisher_sqrt_step_degree_zero",
    topic="adaptive",
    source="001 Eq. (3) and the text after it (F_emp^{-1/2}, as RMSprop and Adam)",
    statement=r"\Big(\tfrac{\mathbf{F}+\sqrt{\det\mathbf{F}}\,\mathbf{I}}"
    r"{\sqrt{\mathrm{tr}\,\mathbf{F}+2\sqrt{\det\mathbf{F}}}}\Big)^2 = \mathbf{F},\quad"
    r"\mathbf{F}_{\mathrm{emp}}(c\mathbf{g})^{-1/2}\nabla\mathcal{J}(c\mathbf{g})"
    r" = \mathbf{F}_{\mathrm{emp}}(\mathbf{g})^{-1/2}\nabla\mathcal{J}(\mathbf{g})",
    claim=lambda n: _sqrt_case(n)[:2],
    expected=lambda n: _sqrt_case(n)[2:],
    control=unpack(_sqrt_case, lambda root_sq, _, fisher, step: (root_sq, step / c)),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="Sizes are the number N of per-example gradients g_i in R^2. The claim lists the square "
    "of the exact 2 x 2 square root of F_emp (it is F_emp) and the F_emp^{-1/2} step of the "
    "scaled gradients c g_i: it does not change with c (degree 0). The control is the degree -1 "
    "behaviour of the F_emp^{-1} step.",
)


@cache
def _least_squares_case(examples: int) -> tuple[sp.Matrix, ...]:
    """``(F, H, F_emp, grad J, w, X, y)`` at a generic ``w``: the true Fisher by its expectation
    over model-sampled targets, the Hessian of ``J`` by differentiation, and the empirical Fisher
    with the data's targets."""
    features, targets = matrix("x", examples, DIM), vector("y", examples)
    w, noise = vector("w", DIM), vector("z", examples)

    target = sp.Symbol("t", real=True)

    def loss(i: int) -> sp.Expr:
        return (target - (features[i, :] * w)[0]) ** 2 / (2 * sigma**2)

    # the sampled target is fixed while differentiating in w, then drawn at the current w
    sampled = [gradient(loss(i), w).subs(target, (features[i, :] * w)[0] + sigma * noise[i])
               for i in range(examples)]
    data = [gradient(loss(i), w).subs(target, targets[i]) for i in range(examples)]
    fisher = sum((standardized_expectation(g * g.T, list(noise)) for g in sampled),
                 sp.zeros(DIM, DIM)) / examples
    cost = sum(loss(i).subs(target, targets[i]) for i in range(examples)) / examples
    data_grads = sp.Matrix.vstack(*(g.T for g in data))
    return (fisher, sp.hessian(cost, list(w)), mean_outer_product(data_grads), gradient(cost, w),
            w, features, targets)


identity(
    name="least_squares_fisher_is_hessian",
    topic="adaptive",
    source="001 Eq. (1); 001 Fig. 2 (deterministic least squares)",
    statement=r"\mathbf{F} = \tfrac1N\textstyle\sum_i\mathbb{E}_{t\sim\mathcal{N}"
    r"(\mathbf{x}_i^\top\mathbf{w},\sigma^2)}[\nabla\ell_i\nabla\ell_i^\top]"
    r" = \tfrac{1}{N\sigma^2}\mathbf{X}^\top\mathbf{X} = \nabla^2\mathcal{J}"
    r" \ne \mathbf{F}_{\mathrm{emp}} = \tfrac{1}{N\sigma^4}\textstyle\sum_i r_i^2"
    r"\mathbf{x}_i\mathbf{x}_i^\top",
    claim=lambda n: _least_squares_case(n)[0],
    expected=lambda n: _least_squares_case(n)[1],
    control=lambda n: _least_squares_case(n)[2],
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Sizes are the number N of examples; generic features x_i in R^2, targets y_i and "
    "parameters w. The Fisher takes the expectation over targets sampled from the Gaussian "
    "model (two moments of the noise), the Hessian is by differentiation. The control is the "
    "empirical Fisher with the data's targets: residuals r_i = x_i^T w - y_i weight it.",
)


def _minimizer(features: sp.Matrix, targets: sp.Matrix) -> sp.Matrix:
    """``(X^T X)^{-1} X^T y``, the least-squares solution (the normal equations)."""
    return inverse(features.T * features) * features.T * targets


identity(
    name="natural_gradient_least_squares_one_step",
    topic="adaptive",
    source="001 Fig. 2 (natural gradient on deterministic least squares)",
    statement=r"\mathbf{w} - \mathbf{F}^{-1}\nabla\mathcal{J}(\mathbf{w})"
    r" = (\mathbf{X}^\top\mathbf{X})^{-1}\mathbf{X}^\top\mathbf{y}"
    r" \ne \mathbf{w} - \mathbf{F}_{\mathrm{emp}}^{-1}\nabla\mathcal{J}(\mathbf{w})",
    claim=unpack(_least_squares_case,
                 lambda fisher, _h, _e, grad, w, _x, _y: w - inverse(fisher) * grad),
    expected=unpack(_least_squares_case, lambda *case: _minimizer(*case[-2:])),
    control=unpack(_least_squares_case,
                   lambda _f, _h, empirical, grad, w, _x, _y: w - inverse(empirical) * grad),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="Sizes are the number N of examples; generic features, targets and starting point w. "
    "With unit step size the natural-gradient step lands on the minimizer from every w (the "
    "Fisher is the Hessian of a quadratic). The control is the step of 001 Eq. (3) with the "
    "empirical Fisher: it does not.",
)
