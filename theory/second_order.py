"""Second-order updates and how they are computed: the proximal objective, Hessian-free
conjugate gradient, the pullback sampling trick, and the size and estimation of K-FAC's factors.

Sources: 003 slides, 'Proximal Optimization' (natural gradient descent: a linear approximation to
the loss, a quadratic approximation to the function-space distance, the weight-space distance as
damping), 'Computation: Hessian-Free Optimization' (conjugate gradient on the quadratic model from
curvature-vector products only; ``K = 1`` is gradient descent with automatic step size
selection), 'Pullback Sampling Trick' (pseudo-gradients ``Dw = J^T Dz`` with ``Cov(Dz) = G_z``
have covariance ``G``), 'K-FAC: Compact Representation' (how many numbers each representation of
``G`` stores) and 'K-FAC: Estimating the Covariance Matrices' (the factors as exponential moving
averages of batch estimates).

Notation: ``g`` the gradient of the loss, ``d`` (or ``v``) a step; ``J`` the Jacobian of the
network's outputs in the weights; ``M`` the output-space curvature (the Hessian of the
function-space distance, or of the loss, in the outputs). ``eta`` is the decay of the moving
averages (the slides' symbol), with ``0 < eta < 1``.

The K-FAC factors in :mod:`models.kfac` start from the first batch estimate and then average
``A <- eta A + (1 - eta) A_batch``; :func:`factor_ema_weights` gives the weight each batch
estimate carries after ``k`` updates. They sum to one, so the average of estimates with a common
expectation has that expectation: no bias correction is needed, unlike the zero-started average
of :func:`theory.adaptive.ema_of_constant`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.theory.adaptive import ema_of_constant, k, standardized_expectation
from scalewise.theory.identity import identity, slip, unpack
from scalewise.theory.symbolic import (
    gradient,
    inverse,
    lower_triangular,
    matrix,
    mean_outer_product,
    rational_numerator,
    symmetric,
    vector,
    weighted_sum,
)

lam_fsd, lam_wsd = sp.symbols("lambda_FSD lambda_WSD", positive=True)
"""Weights of the function-space and the weight-space distance in the proximal objective."""

decay = sp.Symbol("eta", positive=True)
"""Decay of the moving averages of the K-FAC factors (003 'Estimating the Covariance Matrices')."""

_OUTPUTS = 2
"""Network outputs in the proximal and pullback checks (the batch's stacked outputs)."""

_BATCH, _FEATURES = 2, 2
"""Batch size ``B`` and activation width of the moving-average check."""


# ---------------------------------------------------------------- proximal optimization


@cache
def _proximal_case(n: int) -> tuple[sp.ImmutableMatrix, sp.ImmutableMatrix]:
    """``(G, d_star)``: ``G = J^T M J`` and the stationary point of
    ``g^T d + lambda_FSD (J d)^T M (J d)/2 + lambda_WSD ||d||^2/2`` for a generic ``J (2 x n)``
    and symmetric ``M``: its gradient is linear in ``d``, solved by Cramer's rule."""
    step, grad = vector("d", n), vector("g", n)
    jac, metric = matrix("J", _OUTPUTS, n), symmetric("M", _OUTPUTS)
    change = jac * step  # linearized change of the outputs
    distance = (change.T * metric * change)[0] / 2
    objective = grad.dot(step) + lam_fsd * distance + lam_wsd * step.dot(step) / 2
    system, rhs = sp.linear_eq_to_matrix(list(gradient(objective, step)), list(step))
    return sp.ImmutableMatrix(jac.T * metric * jac), sp.ImmutableMatrix(inverse(system) * rhs)


def _proximal_curvature_times_retreat(n: int, damping: sp.Expr) -> sp.Matrix:
    """``(lambda_FSD G + damping I)(-d_star)``: ``g`` exactly when ``d_star`` is the damped
    Gauss-Newton step."""
    curvature, step = _proximal_case(n)
    return (lam_fsd * curvature + damping * sp.eye(n)) * -step


identity(
    name="proximal_natural_gradient_step",
    topic="second-order",
    source="003 slides, 'Proximal Optimization' (natural gradient descent)",
    statement=r"\mathbf{d}_\star = \arg\min_{\mathbf{d}}\ \mathbf{g}^\top\mathbf{d}"
    r" + \frac{\lambda_{\mathrm{FSD}}}{2}(\mathbf{J}\mathbf{d})^\top\mathbf{M}(\mathbf{J}\mathbf{d})"
    r" + \frac{\lambda_{\mathrm{WSD}}}{2}\|\mathbf{d}\|^2"
    r" \;\Rightarrow\; (\lambda_{\mathrm{FSD}}\mathbf{J}^\top\mathbf{M}\mathbf{J}"
    r" + \lambda_{\mathrm{WSD}}\mathbf{I})(-\mathbf{d}_\star) = \mathbf{g}",
    claim=lambda n: _proximal_curvature_times_retreat(n, lam_wsd),
    expected=lambda n: vector("g", n),
    control=lambda n: _proximal_curvature_times_retreat(n, sp.Integer(0)),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="Linear loss, quadratic function-space distance (J a generic 2 x n Jacobian, M a "
    "generic symmetric output curvature: the Fisher of the outputs for a KL distance, I for the "
    "squared error), squared Euclidean weight-space distance; the stationarity equations are "
    "solved (Cramer's rule), not assumed. The step is the damped Gauss-Newton (natural "
    "gradient) step -(G + (lambda_WSD/lambda_FSD) I)^{-1} g / lambda_FSD: the function-space "
    "weight sets the learning rate 1/lambda_FSD, the weight-space one the damping. The "
    "control drops the weight-space term.",
)


# ---------------------------------------------------------------- Hessian-free optimization


def conjugate_gradient(mvp: Callable[[list], list], grad: Sequence, iterations: int) -> list:
    """``iterations`` steps of conjugate gradient on ``q(v) = v^T C v/2 + grad^T v`` from
    ``v = 0``, touching ``C`` only through the curvature-vector product ``mvp(p) = C p``, as
    Hessian-free optimization does (003 'Computation: Hessian-Free Optimization'); it stops
    early at an exact minimizer. Vectors are lists over one field: exact rationals, or the
    elements of a rational function field (``sympy.field``), which keeps every entry reduced.

    >>> conjugate_gradient(lambda p: [2 * x for x in p], [sp.Integer(4), sp.Integer(6)], 2)
    [-2, -3]
    """
    checks.integer("iterations", iterations, 0)
    zero = grad[0] * 0

    def dot(left: Sequence, right: Sequence):
        return sum((a * b for a, b in zip(left, right)), zero)

    step, residual = [zero] * len(grad), [-x for x in grad]  # residual = -grad q(v)
    direction = residual
    for _ in range(iterations):
        if not any(residual):
            break
        curved = mvp(direction)
        size = dot(residual, residual) / dot(direction, curved)
        step = [v + size * p for v, p in zip(step, direction)]
        updated = [r - size * c for r, c in zip(residual, curved)]
        conjugacy = dot(updated, updated) / dot(residual, residual)
        direction = [r + conjugacy * p for r, p in zip(updated, direction)]
        residual = updated
    return step


def _cg_curvature(n: int) -> sp.Matrix:
    """``C`` of the conjugate-gradient check: generic symmetric for ``n = 2``; for larger ``n``,
    where CG's rational functions of generic entries take minutes to reduce, the positive
    definite tridiagonal matrix with ``n + 1`` on its diagonal and ``1`` beside it."""
    if n == 2:
        return symmetric("C", n)
    return sp.Matrix(n, n, lambda i, j: n + 1 if i == j else int(abs(i - j) == 1))


@cache
def _cg_case(n: int) -> tuple[sp.ImmutableMatrix, ...]:
    """``(C v_n, C v_{n-1}, v_1, v_line)``: CG iterates ``v_K`` for symbolic ``g``, and the
    minimizer of ``q`` along ``-g``, with the step size solved for."""
    curvature, grad = _cg_curvature(n), vector("g", n)
    field, *_ = sp.field(sorted(curvature.free_symbols, key=sp.default_sort_key) + list(grad),
                         sp.QQ)
    rows = [[field.from_expr(entry) for entry in curvature.row(i)] for i in range(n)]

    def mvp(p: list) -> list:
        return [sum((c * x for c, x in zip(row, p)), field(0)) for row in rows]

    start = [field.from_expr(entry) for entry in grad]
    iterates = [sp.Matrix([e.as_expr() for e in conjugate_gradient(mvp, start, K)])
                for K in (n, n - 1, 1)]
    size = sp.Symbol("s")
    along = -size * grad
    best = sp.solve((along.T * curvature * along / 2 + grad.T * along)[0].diff(size), size)[0]
    sides = (curvature * iterates[0], curvature * iterates[1], iterates[2], along.subs(size, best))
    return tuple(sp.ImmutableMatrix(side) for side in sides)


identity(
    name="hessian_free_conjugate_gradient",
    topic="second-order",
    source="003 slides, 'Computation: Hessian-Free Optimization'",
    statement=r"\mathbf{v}_K = \mathrm{CG}_K\!\left(\mathbf{p}\mapsto\mathbf{C}\mathbf{p},\,"
    r"\mathbf{g}\right)\text{ on } \tfrac12\mathbf{v}^\top\mathbf{C}\mathbf{v}+\mathbf{g}^\top\mathbf{v}:"
    r"\quad \mathbf{C}\mathbf{v}_n = -\mathbf{g},\quad"
    r"\mathbf{v}_1 = -s_\star\mathbf{g},\ s_\star = \arg\min_s q(-s\mathbf{g})"
    r" = \frac{\mathbf{g}^\top\mathbf{g}}{\mathbf{g}^\top\mathbf{C}\mathbf{g}}",
    claim=unpack(_cg_case, lambda exact, _, first, __: (exact, first)),
    expected=unpack(_cg_case, lambda *sides: (-vector("g", sides[-1].rows), sides[-1])),
    control=unpack(_cg_case, lambda _, early, __, line: (early, -vector("g", line.rows))),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="C is a generic symmetric 2 x 2 matrix (an identity of rational functions, so it holds "
    "for every positive definite C) and, for n = 3, a fixed positive definite tridiagonal "
    "matrix; g is symbolic; C enters only through products C p. n iterations reach the "
    "minimizer -C^{-1} g exactly; one iteration is a gradient step with the exactly "
    "line-searched step size, the slide's 'K = 1 is GD with automatic step size selection'. "
    "The control is what n - 1 iterations and a unit gradient step give.",
)


# ---------------------------------------------------------------- pullback sampling trick

_INPUTS = 2
"""Inputs of the finite data distribution in the pullback check (uniform)."""


@cache
def _pullback_case(n: int) -> tuple[sp.ImmutableMatrix, ...]:
    """``(Cov(Dw), E_x[J^T G_z J], E_x[J^T J])``: ``x`` uniform over two inputs with Jacobians
    ``J_x (2 x n)`` and output curvatures ``G_z = L_x L_x^T``; ``Dz = L_x z`` with standardized
    ``z``; ``Dw`` by backprop, the gradient of ``Dz^T f(x, w)`` in ``w``."""
    weights, noise = vector("w", n), list(sp.symbols(f"z1:{_OUTPUTS + 1}"))
    mean, second, pulled, plain = (sp.zeros(n, 1), sp.zeros(n, n), sp.zeros(n, n), sp.zeros(n, n))
    for x in range(1, _INPUTS + 1):
        jac, factor = matrix(f"J{x}", _OUTPUTS, n), lower_triangular(f"L{x}", _OUTPUTS)
        outputs = vector(f"f{x}_", _OUTPUTS) + jac * weights  # f(x, w) near w = 0
        sampled = factor * sp.Matrix(noise)  # Dz, covariance L L^T
        pseudo = gradient(sampled.dot(outputs), weights)
        mean += standardized_expectation(pseudo, noise) / _INPUTS
        second += standardized_expectation(pseudo * pseudo.T, noise) / _INPUTS
        pulled += jac.T * factor * factor.T * jac / _INPUTS
        plain += jac.T * jac / _INPUTS
    return tuple(sp.ImmutableMatrix(m) for m in (second - mean * mean.T, pulled, plain))


identity(
    name="pullback_sampling_covariance",
    topic="second-order",
    source="003 slides, 'Pullback Sampling Trick'",
    statement=r"\mathcal{D}\mathbf{z} = \mathbf{L}_{\mathbf{x}}\boldsymbol{\epsilon},\ "
    r"\mathbf{L}_{\mathbf{x}}\mathbf{L}_{\mathbf{x}}^\top = \mathbf{G}_{\mathbf{z}},\ "
    r"\mathbb{E}[\boldsymbol{\epsilon}] = \mathbf{0},\ "
    r"\mathbb{E}[\boldsymbol{\epsilon}\boldsymbol{\epsilon}^\top] = \mathbf{I}:\quad"
    r"\mathrm{Cov}\!\left(\mathbf{J}_{\mathbf{z}\mathbf{w}}^\top\mathcal{D}\mathbf{z}\right)"
    r" = \mathbb{E}_{\mathbf{x}}\!\left[\mathbf{J}_{\mathbf{z}\mathbf{w}}^\top\mathbf{G}_{\mathbf{z}}"
    r"\mathbf{J}_{\mathbf{z}\mathbf{w}}\right] = \mathbf{G}_{\mathbf{w}}",
    claim=lambda n: _pullback_case(n)[0],
    expected=lambda n: _pullback_case(n)[1],
    control=lambda n: _pullback_case(n)[2],
    sizes=(2, 3),
    simplifier=sp.expand,
    note="x uniform over two inputs, each with its own generic 2 x n Jacobian and Cholesky "
    "factor of its output curvature; epsilon any standardized noise (Gaussian, Rademacher ...): "
    "only its first two moments enter. Dw is obtained by differentiating Dz^T f(x, w), i.e. "
    "backprop, and its covariance is computed with the mean subtracted (the mean is 0). The "
    "control forgets the output curvature (Dz = epsilon), which gives E[J^T J]: right only "
    "for the squared error, as models.kfac's Gauss-Newton sampling assumes.",
)

slip(
    seed="003",
    place="slide 'Pullback Sampling Trick' (third bullet of the recipe)",
    says=r"pull it back to weight space using a JVP (i.e. backprop): $\mathcal{D}\mathbf{w} = \mathbf{J}_{\mathbf{z}\mathbf{w}}^\top\mathcal{D}\mathbf{z}$",
    truth=r"$\mathbf{J}^\top\mathcal{D}\mathbf{z}$ is a vector-Jacobian product (VJP), the gradient of $\mathcal{D}\mathbf{z}^\top f(\mathbf{x}, \mathbf{w})$, which backprop computes; a JVP computes $\mathbf{J}\mathbf{v}$ (forward mode)",
    identity="pullback_sampling_covariance",
)


# ---------------------------------------------------------------- K-FAC: compact representation

n_in, n_out = sp.symbols("n_in n_out", integer=True, positive=True)


def _entries(*blocks: sp.MatrixExpr) -> sp.Expr:
    """How many numbers the matrices ``blocks`` hold together."""
    return sum((block.rows * block.cols for block in blocks), sp.Integer(0))


def representation_sizes(widths: Sequence[sp.Expr]) -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
    """Numbers held by the weights, by the full ``G``, by its layer-diagonal blocks and by the
    Kronecker factors ``A_{l-1}, S_l`` of a bias-free MLP with layer widths ``widths``; the
    blocks are counted as the products ``A_{l-1} (x) S_l`` they are represented by."""
    layers = list(enumerate(zip(widths, widths[1:])))
    weights = [sp.MatrixSymbol(f"W{l}", fan_out, fan_in) for l, (fan_in, fan_out) in layers]
    factors = [(sp.MatrixSymbol(f"A{l}", fan_in, fan_in),
                sp.MatrixSymbol(f"S{l}", fan_out, fan_out)) for l, (fan_in, fan_out) in layers]
    parameters = _entries(*weights)
    blocks = [sp.KroneckerProduct(a, s) for a, s in factors]
    full = sp.MatrixSymbol("G", parameters, parameters)
    return (parameters, _entries(full), _entries(*blocks),
            _entries(*(f for pair in factors for f in pair)))


identity(
    name="kfac_compact_representation",
    topic="second-order",
    source="003 slides, 'K-FAC: Compact Representation'; 'K-FAC: Efficient Computation'",
    statement=r"\text{3 layers of 1000 units: } (3\times1000^2)^2 = 9\cdot10^{12},\ "
    r"3\times(1000^2)^2 = 3\cdot10^{12},\ 3\times(1000^2+1000^2) = 6\cdot10^6;\quad"
    r"n_{\mathrm{in}}^2 + n_{\mathrm{out}}^2 - 2n_{\mathrm{in}}n_{\mathrm{out}}"
    r" = (n_{\mathrm{in}} - n_{\mathrm{out}})^2 \ge 0",
    claim=lambda: (
        representation_sizes((1000,) * 4)[1:],
        representation_sizes((n_in, n_out))[3] - 2 * representation_sizes((n_in, n_out))[0],
    ),
    expected=lambda: ((9 * 10**12, 3 * 10**12, 6 * 10**6), (n_in - n_out) ** 2),
    control=lambda: ((9 * 10**12, 3 * 10**12, 3 * 10**6), sp.Integer(0)),
    simplifier=sp.expand,
    note="Three 1000 x 1000 weight matrices, as on the slide. Counted from the shapes of the "
    "matrices (full G over all parameters, the blocks "
    "A (x) S, the factors A and S). The factors of a layer hold n_in^2 + n_out^2 numbers "
    "against (n_in n_out)^2 in its block and n_in n_out weights: at least twice the weights, "
    "exactly twice for square layers, the 'approximately the same size as the weights' of "
    "'Efficient Computation'. The control takes that phrase literally (factors as large as "
    "the weights). With biases A is (n_in + 1) x (n_in + 1), adding 2 n_in + 1 per layer.",
)


# ---------------------------------------------------------------- K-FAC: moving averages


def factor_ema_weights(updates: int) -> tuple[sp.Expr, ...]:
    """Weights of the batch estimates ``1 .. updates`` in a K-FAC factor after ``updates``
    averaging steps started from the first estimate (:mod:`models.kfac`):
    ``eta^(k-1)`` for the first, ``(1 - eta) eta^(k-i)`` for estimate ``i >= 2``."""
    checks.integer("updates", updates, 1)
    return (decay ** (updates - 1),
            *((1 - decay) * decay ** (updates - i) for i in range(2, updates + 1)))


def factor_ema_weights_at(updates: int, value: float) -> np.ndarray:
    """:func:`factor_ema_weights` at the decay ``value``, as floats."""
    return np.array([float(w.subs(decay, value)) for w in factor_ema_weights(updates)])


def _running_average(estimates: Sequence[sp.Matrix]) -> sp.Matrix:
    """``A <- eta A + (1 - eta) A_batch`` over ``estimates``, started from the first one."""
    average = estimates[0]
    for estimate in estimates[1:]:
        average = decay * average + (1 - decay) * estimate
    return average


@cache
def _ema_case(updates: int) -> tuple[tuple[sp.Matrix, ...], sp.Matrix]:
    """Batch estimates ``Y_i^T Y_i / B`` for generic batches ``Y_i (B x n)``, and a fixed
    symmetric ``A``."""
    batches = [matrix(f"Y{i}", _BATCH, _FEATURES) for i in range(1, updates + 1)]
    return tuple(mean_outer_product(y) for y in batches), symmetric("A", _FEATURES)


identity(
    name="kfac_factor_moving_average",
    topic="second-order",
    domain=(decay < 1,),
    source="003 slides, 'K-FAC: Estimating the Covariance Matrices'",
    statement=r"\hat{\mathbf{A}}_1 = \tfrac1B\mathbf{Y}_1^\top\mathbf{Y}_1,\ "
    r"\hat{\mathbf{A}}_k = \eta\hat{\mathbf{A}}_{k-1} + \tfrac{1-\eta}{B}\mathbf{Y}_k^\top\mathbf{Y}_k"
    r"\;\Rightarrow\;\hat{\mathbf{A}}_k = \eta^{k-1}\tfrac1B\mathbf{Y}_1^\top\mathbf{Y}_1"
    r" + \sum_{i=2}^k(1-\eta)\eta^{k-i}\tfrac1B\mathbf{Y}_i^\top\mathbf{Y}_i,"
    r"\ \text{weights summing to } 1",
    claim=unpack(_ema_case, lambda estimates, fixed: (
        _running_average(estimates), _running_average([fixed] * len(estimates)))),
    expected=unpack(_ema_case, lambda estimates, fixed: (
        weighted_sum(estimates, factor_ema_weights(len(estimates))), fixed)),
    control=unpack(_ema_case, lambda estimates, fixed: (
        weighted_sum(estimates, [(1 - decay) * decay ** (len(estimates) - i)
                              for i in range(1, len(estimates) + 1)]),
        ema_of_constant(decay, 1).subs(k, len(estimates)) * fixed)),
    sizes=(1, 2, 3, 4),
    simplifier=sp.expand,
    note="k = 1 .. 4 updates of batches of B = 2 activations of width 2 with generic entries, "
    "symbolic eta; Y^T Y / B is the batch mean of a a^T, as models.kfac's input_factor "
    "computes it (the same for S with the pseudo-gradients). Started from the first estimate, "
    "as models.kfac does, the weights sum to 1, so estimates with a common expectation A "
    "average to exactly A (second entry). The control is the average started at 0, whose "
    "weights sum to 1 - eta^k: biased towards 0 until divided by 1 - eta^k.",
)
