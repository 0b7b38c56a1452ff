"""K-FAC's closed forms, with their NumPy forms for ``sim``, ``models`` and ``validation``, and
K-FAC on scale-invariant layers.

**Gauss-Newton norms of a deep linear network** (004 Lemma 2 and Theorem 1; 000 slides, 'Three
Mechanisms', Mechanism 2): with ``L + 1`` weight matrices and whitened inputs,
``theta^T G theta = (L+1)^2 ||J_x||_F^2`` exactly (:data:`GN_NORM`) and
``theta^T G_hat theta = (L+1) ||J_x||_F^2`` under K-FAC (:data:`KFAC_GN_NORM`); proved on symbolic
networks in :mod:`theory.gauss_newton`.

>>> float(gn_norm(2, 1.5)), float(kfac_gn_norm(2, 1.5))  # L = 2: (L+1)^2 and (L+1) times 1.5
(13.5, 4.5)

**K-FAC on scale-invariant layers** (001 Sec. 5.2, Eq. 26; 004 Sec. 4.3, Eq. 13-14 and
Appendix D; 003 slides, damping). Rescaling the weights of a layer followed by a normalizer
leaves ``A`` unchanged and divides ``S`` (hence ``G_hat = A (x) S``) by ``gamma^2``; a damped
K-FAC step written for the normalized weights then has the *effective damping* ``eta ||w||^2``
(:data:`EFFECTIVE_DAMPING`), while the undamped step does not depend on ``||w||`` at all; with the
renormalization included, this is the first-order update of ``w_hat`` (004 Eq. 14).
:func:`normalized_kfac_step` evaluates that step with NumPy.

**Affine reparameterizations of a layer** (001 Sec. 3.2, 'Invariance'; 003 slides,
'Invariance'). Beyond a scalar rescaling: an invertible affine map of a layer's input (a matrix
``T_bar`` in homogeneous coordinates, the bias included) and an invertible affine map
``s -> U s + d`` of its pre-activations transform K-FAC's statistics as
``A -> T_bar A T_bar^T``, ``S -> U^{-T} S U^{-1}``, and the undamped K-FAC step then changes the
network's function exactly as before; gradient descent's does not.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.theory.equilibrium import alpha, x
from scalewise.theory.identity import identity
from scalewise.theory.symbolic import (
    inverse,
    matrix,
    product,
    rational_numerator,
    symmetric,
    vector,
)

eta, gamma = sp.symbols("eta gamma", positive=True)
"""``eta``: the K-FAC damping of 001 Eq. (26); ``gamma``: a rescaling of a layer's weights."""

depth = sp.Symbol("L", integer=True, nonnegative=True)
"""``L``: the network has ``L + 1`` weight matrices ``W_0 ... W_L`` (004 Lemma 1)."""

jacobian_sq = sp.Symbol("j_F", nonnegative=True)
"""``||J_x||_F^2``, the squared Frobenius norm of the input-output Jacobian."""

GN_NORM = (depth + 1) ** 2 * jacobian_sq
"""Exact Gauss-Newton norm ``theta^T G theta`` of a deep linear network with whitened inputs
(004 Lemma 2 and Theorem 1)."""

KFAC_GN_NORM = (depth + 1) * jacobian_sq
"""K-FAC Gauss-Newton norm ``theta^T G_hat theta`` of a deep linear network with whitened
inputs (004 Theorem 1; 000 slides, Mechanism 2)."""

EFFECTIVE_DAMPING = eta * x
"""Damping seen by the normalized weights ``w_hat = w / ||w||`` when K-FAC damps ``G(w)`` by
``eta`` (004 Eq. 14); ``x = ||w||^2``."""

effective_damping = sp.lambdify((eta, x), EFFECTIVE_DAMPING, "numpy")
gn_norm = sp.lambdify((depth, jacobian_sq), GN_NORM, "numpy")
kfac_gn_norm = sp.lambdify((depth, jacobian_sq), KFAC_GN_NORM, "numpy")


# ---------------------------------------------------------------- scale-invariant layers


def _factor_radicals(expr: sp.Expr) -> sp.Expr:
    """Factor the bases of powers so ``sqrt(gamma^2 s.s)`` becomes ``gamma sqrt(s.s)``."""
    return sp.cancel(expr.replace(lambda e: e.is_Pow, lambda e: sp.Pow(sp.factor(e.base), e.exp)))


@cache
def normalized_layer_factors(
    n: int, scale: sp.Expr = sp.Integer(1)
) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """``(A, S, A (x) S)`` for one input of a layer ``s = W a`` followed by a normalizer, at the
    weights ``scale * W`` (001 Sec. 5.2).

    The layer's output is ``z = s / ||s||`` (scale-invariant in ``W``) with the loss
    ``1/2 ||z - t||^2``; ``Ds = dloss/ds`` by differentiation, evaluated at the pre-activation
    ``scale * s``, since rescaling ``W`` rescales ``s = W a``.
    Shapes ``(n, n), (n, n), (n^2, n^2)``."""
    activation, target, pre = vector("a", n), vector("t", n), vector("s", n)
    normalized = pre / sp.sqrt(pre.dot(pre))
    loss = (normalized - target).dot(normalized - target) / 2
    grad = sp.Matrix([loss.diff(si) for si in pre])
    grad = grad.subs({si: scale * si for si in pre}, simultaneous=True).applyfunc(_factor_radicals)
    a_factor, s_factor = activation * activation.T, grad * grad.T
    factors = (a_factor, s_factor, sp.kronecker_product(a_factor, s_factor))
    return tuple(f.as_immutable() for f in factors)


def _rescaled_factors(n: int, power: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    a_factor, s_factor, g_hat = normalized_layer_factors(n)
    return a_factor, s_factor / gamma**power, g_hat / gamma**power


identity(
    name="kfac_factors_rescaling",
    topic="kfac",
    source="001 Sec. 5.2 (before Eq. 26); 004 Eq. (13)",
    statement=r"\mathbf{W}\to\gamma\mathbf{W}:\ \mathbf{A}_{\ell-1}\to\mathbf{A}_{\ell-1},\ "
    r"\mathbf{S}_\ell\to\gamma^{-2}\mathbf{S}_\ell,\ "
    r"\hat{\mathbf{G}}_{\ell\ell}\to\gamma^{-2}\hat{\mathbf{G}}_{\ell\ell}",
    claim=lambda n: normalized_layer_factors(n, gamma),
    expected=lambda n: _rescaled_factors(n, 2),
    control=lambda n: _rescaled_factors(n, 1),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Layer s = W a followed by z = s/||s|| and a squared loss. Ds is homogeneous of degree "
    "-1 in s (the loss is scale invariant), so S = E[Ds Ds^T] scales as gamma^-2 while the "
    "layer's input, hence A, is untouched.",
)


def kfac_step(curvature: sp.Matrix, gradient: sp.Matrix, damping: sp.Expr) -> sp.Matrix:
    """Damped step direction ``(C + damping I)^{-1} grad`` (001 Eq. 26), symbolically, by
    Cramer's rule (adjugate over determinant) so that generic entries stay rational."""
    damped = curvature + damping * sp.eye(curvature.rows)
    return damped.adjugate() * gradient / damped.det()


def _step_in_normalized_units(n: int, damping: sp.Expr) -> sp.Matrix:
    """The K-FAC step at ``w = gamma w_hat`` (``gamma = ||w||``) divided by ``gamma``, from
    ``G(w) = G(w_hat)/gamma^2`` (identity ``kfac_factors_rescaling``) and
    ``grad J(w) = grad J(w_hat)/gamma`` (homogeneity of degree -1)."""
    curvature, gradient = symmetric("G", n), vector("g", n)
    return kfac_step(curvature / gamma**2, gradient / gamma, damping) / gamma


def _at_norm_gamma(damping: sp.Expr) -> sp.Expr:
    """``damping`` with ``x = ||w||^2`` written as ``gamma^2`` (``gamma = ||w||``)."""
    return sp.sympify(damping).subs(x, gamma**2)


def _normalized_step(n: int, damping: sp.Expr) -> sp.Matrix:
    """``(G(w_hat) + damping I)^{-1} grad J(w_hat)`` with ``||w||^2 = gamma^2``."""
    return kfac_step(symmetric("G", n), vector("g", n), _at_norm_gamma(damping))


identity(
    name="kfac_effective_damping",
    topic="kfac",
    source="004 Eq. (14) (Appendix D); 001 Eq. (26)",
    statement=r"\frac{1}{\|\mathbf{w}\|}\left(\mathbf{G}(\mathbf{w})+\eta\mathbf{I}\right)^{-1}"
    r"\nabla\mathcal{J}(\mathbf{w}) = \left(\mathbf{G}(\hat{\mathbf{w}})+\eta\|\mathbf{w}\|^2"
    r"\mathbf{I}\right)^{-1}\nabla\mathcal{J}(\hat{\mathbf{w}})",
    claim=lambda n: _step_in_normalized_units(n, eta),
    expected=lambda n: _normalized_step(n, EFFECTIVE_DAMPING),
    control=lambda n: _normalized_step(n, eta),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="Generic symmetric G(w_hat) and gradient. The control (damping eta, independent of "
    "||w||) is what a rescaling-invariant damped step would be: damping breaks the invariance.",
)

identity(
    name="kfac_undamped_rescaling_invariant",
    topic="kfac",
    source="001 Sec. 5.2 and Sec. 4.3 (K-FAC immune to implicit decay); 003 slides, invariance",
    statement=r"\eta = 0:\ \frac{1}{\|\mathbf{w}\|}\mathbf{G}(\mathbf{w})^{-1}"
    r"\nabla\mathcal{J}(\mathbf{w}) = \mathbf{G}(\hat{\mathbf{w}})^{-1}"
    r"\nabla\mathcal{J}(\hat{\mathbf{w}})\ \text{for every}\ \|\mathbf{w}\|",
    claim=lambda n: _step_in_normalized_units(n, 0),
    expected=lambda n: _normalized_step(n, 0),
    control=lambda n: _normalized_step(n, 0) / gamma**2,
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="The control is the 1/||w||^2 shrinkage SGD suffers (effective learning rate "
    "alpha/||w||^2): undamped K-FAC does not.",
)


def _tangent_layer(n: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """``(w_hat, G(w_hat), grad J(w_hat))`` of a scale-invariant layer: ``G w_hat = 0`` and
    ``grad J . w_hat = 0`` (001 Eq. 16), from a generic symmetric ``M`` and vector ``v``
    projected off ``w_hat``. Everything is rotation equivariant, so ``w_hat = e_n`` loses no
    generality; size ``n`` leaves a generic ``(n-1, n-1)`` tangent block."""
    w_hat = sp.eye(n)[:, n - 1]
    proj = sp.eye(n) - w_hat * w_hat.T
    return w_hat, proj * symmetric("M", n) * proj, proj * vector("v", n)


def _normalized_update_rate(n: int) -> sp.Matrix:
    """``d w_hat_{k+1} / d alpha`` at ``alpha = 0`` for one damped K-FAC step
    ``w_{k+1} = w - alpha (G(w) + eta I)^{-1} grad J(w)`` at ``w = gamma w_hat``, followed by
    ``w_hat_{k+1} = w_{k+1} / ||w_{k+1}||``; by differentiation."""
    w_hat, curvature, grad = _tangent_layer(n)
    w_next = gamma * w_hat - alpha * kfac_step(curvature / gamma**2, grad / gamma, eta)
    normalized = w_next / sp.sqrt(w_next.dot(w_next))
    return normalized.diff(alpha).subs(alpha, 0).applyfunc(_factor_radicals)


def _tangent_step(n: int, damping: sp.Expr) -> sp.Matrix:
    _, curvature, grad = _tangent_layer(n)
    return -kfac_step(curvature, grad, _at_norm_gamma(damping))


identity(
    name="kfac_normalized_update_first_order",
    topic="kfac",
    source="004 Eq. (14) (Appendix D)",
    statement=r"\hat{\mathbf{w}}_{k+1} = \hat{\mathbf{w}}_k"
    r" - \alpha\left(\mathbf{G}(\hat{\mathbf{w}}_k) + \eta\|\mathbf{w}_k\|^2\mathbf{I}\right)^{-1}"
    r"\nabla\mathcal{J}(\hat{\mathbf{w}}_k)"
    r" + O(\alpha^2)",
    claim=_normalized_update_rate,
    expected=lambda n: _tangent_step(n, EFFECTIVE_DAMPING),
    control=lambda n: _tangent_step(n, eta),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="Includes the renormalization: the damped step is orthogonal to w_hat (G(w_hat) w_hat = 0 "
    "and the gradient is tangent), so dividing by ||w_{k+1}|| changes w_hat only at O(alpha^2).",
)


def normalized_kfac_step(
    curvature: np.ndarray, gradient: np.ndarray, *, damping: float, norm_sq: float
) -> np.ndarray:
    """The damped K-FAC step of a scale-invariant layer in normalized units (004 Eq. 14):
    ``(G(w_hat) + eta ||w||^2 I)^{-1} grad J(w_hat)`` with ``eta = damping``,
    ``||w||^2 = norm_sq`` (identity ``kfac_effective_damping``). The update of the normalized
    weights is ``w_hat - alpha`` times this, up to ``O(alpha^2)``
    (identity ``kfac_normalized_update_first_order``).

    ``curvature``: ``G(w_hat)``, shape ``(n, n)``; ``gradient``: ``grad J(w_hat)``, shape ``(n,)``.
    The parameter step of K-FAC at ``w`` is ``||w||`` times this.

    >>> normalized_kfac_step(np.eye(2), np.ones(2), damping=1.0, norm_sq=3.0)
    array([0.25, 0.25])
    """
    curvature, gradient = np.asarray(curvature, dtype=float), np.asarray(gradient, dtype=float)
    if curvature.ndim != 2 or curvature.shape[0] != curvature.shape[1]:
        checks.fail("curvature", curvature, "a square (n, n) matrix")
    if gradient.shape != curvature.shape[:1]:
        checks.fail("gradient", gradient, f"an array of shape {curvature.shape[:1]}")
    checks.nonnegative("damping", damping)
    checks.positive("norm_sq", norm_sq)
    damped = curvature + effective_damping(damping, norm_sq) * np.eye(curvature.shape[0])
    return np.linalg.solve(damped, gradient)


# ---------------------------------------------------------------- affine reparameterizations
#
# One layer s = W a_bar (W is (n, n + 1), a_bar = [a; 1]) is reparameterized by an invertible
# affine map of its input, a_bar -> T_bar a_bar with T_bar = [[T, c], [0, 1]], and an invertible
# affine map of its pre-activations, s -> U s + d: the new layer computes
# s_new = W_new (T_bar a_bar) and the network reads s = U^{-1} (s_new - d), so
# W = U^{-1} (W_new T_bar - d e^T) represents the same function, e = (0, ..., 0, 1) picking the
# bias column (001 Sec. 3.2, 'Invariance', and Sec. 4.3; 003 slides, 'Invariance'). A change
# dW_new of the new weights is the change dW = U^{-1} dW_new T_bar of the original ones.


def _homogeneous_map(n: int) -> sp.Matrix:
    """``T_bar = [[T, c], [0, 1]]``: the affine map ``a -> T a + c`` of the layer's input in
    homogeneous coordinates, with generic ``T`` and ``c``."""
    top = matrix("T", n, n).row_join(vector("c", n))
    return top.col_join(sp.zeros(1, n).row_join(sp.ones(1, 1)))


def _layer_statistics(
    n: int, inputs: sp.Matrix, outputs: sp.Matrix, offset: sp.Matrix
) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """``(A, S, grad)`` of a layer ``s = V (inputs a_bar)`` whose loss reads
    ``outputs (s - offset)``, over ``n + 1`` examples (001 Eq. 5; 003 slides, K-FAC):
    ``A = mean a_in a_in^T`` and ``S = mean Ds Ds^T`` with ``Ds`` and ``grad = dloss/dV`` by
    differentiation.

    Example ``k`` has the input ``a_bar_k = [a_k; 1]`` and the loss gradient ``g_k`` at the
    original pre-activation; K-FAC's statistics use first derivatives only, so the loss of
    example ``k`` is ``g_k . (outputs (s - offset))``."""
    weights, pre, count = matrix("V", n, n + 1), vector("s", n), n + 1
    a_factor, s_factor, grad = sp.zeros(n + 1, n + 1), sp.zeros(n, n), sp.zeros(n, n + 1)
    for k in range(count):
        a_in = inputs * vector(f"a{k}_", n).col_join(sp.ones(1, 1))
        loss = vector(f"g{k}_", n).dot(outputs * (pre - offset))
        ds = sp.Matrix([loss.diff(v) for v in pre])
        at_input = loss.subs(dict(zip(pre, weights * a_in)), simultaneous=True)
        a_factor += a_in * a_in.T / count
        s_factor += ds * ds.T / count
        grad += weights.applyfunc(at_input.diff) / count
    return a_factor, s_factor, grad


@cache
def _affine_statistics(n: int) -> tuple[tuple[sp.Matrix, ...], tuple[sp.Matrix, ...]]:
    """``((U, T_bar, A, S, grad), (A_new, S_new, grad_new))``: the layer's statistics in the
    original and in the reparameterized layer, from the same examples."""
    outputs, t_bar = matrix("U", n, n), _homogeneous_map(n)
    old = _layer_statistics(n, sp.eye(n + 1), sp.eye(n), sp.zeros(n, 1))
    return (outputs, t_bar, *old), _layer_statistics(n, t_bar, inverse(outputs), vector("d", n))


def _transformed_statistics(
    outputs: sp.Matrix, t_bar: sp.Matrix, a_factor: sp.Matrix, s_factor: sp.Matrix,
    grad: sp.Matrix, output_side: Callable[[sp.Matrix], sp.Matrix] = inverse,
) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """``(T_bar A T_bar^T, M^T S M, M^T grad T_bar^T)`` with ``M = output_side(U)``."""
    m = output_side(outputs)
    return t_bar * a_factor * t_bar.T, m.T * s_factor * m, m.T * grad * t_bar.T


identity(
    name="kfac_statistics_affine_reparameterization",
    topic="kfac",
    source="001 Sec. 3.2 ('Invariance') and Eq. (5); 003 slides, 'Invariance' and 'K-FAC'",
    statement=r"\bar{\mathbf{a}}\to\bar{\mathbf{T}}\bar{\mathbf{a}},\ \mathbf{s}\to\mathbf{U}"
    r"\mathbf{s} + \mathbf{d}:\ \mathbf{A}\to\bar{\mathbf{T}}\mathbf{A}\bar{\mathbf{T}}^\top,\ "
    r"\mathbf{S}\to\mathbf{U}^{-\top}\mathbf{S}\mathbf{U}^{-1},\ "
    r"\nabla_{\mathbf{W}}\to\mathbf{U}^{-\top}\nabla_{\mathbf{W}}\bar{\mathbf{T}}^\top",
    claim=lambda n: _affine_statistics(n)[1],
    expected=lambda n: _transformed_statistics(*_affine_statistics(n)[0]),
    control=lambda n: _transformed_statistics(*_affine_statistics(n)[0],
                                             output_side=lambda u: u.T),
    sizes=(1, 2),
    simplifier=rational_numerator,
    note="Sizes are the layer's width n (W is n x (n+1) with the bias column), n + 1 examples "
    "with symbolic inputs and loss gradients; T_bar = [[T, c], [0, 1]] with generic T and c, "
    "generic U and offset d. Ds and the weight gradient by differentiation through "
    "s = U^{-1} (s_new - d): the offset drops out. The "
    "control transforms S and the gradient with U^T instead of U^{-1}: pseudo-gradients are "
    "covectors.",
)


@cache
def _affine_updates(n: int) -> tuple[sp.Matrix, ...]:
    """``(kfac, kfac_new, gd, gd_new)``: the undamped K-FAC direction ``-S^{-1} grad A^{-1}``
    (001 Eq. 26 with ``eta = 0``; identity ``kfac_kronecker_solve``) and the gradient-descent
    direction ``-grad`` of the layer, and the same directions taken in the reparameterized layer
    and mapped back to the original weights, ``dW = U^{-1} dW_new T_bar``.

    ``A``, ``S`` and ``grad`` are generic (symmetric ``A``, ``S``); the reparameterized layer's
    are their transforms (identity ``kfac_statistics_affine_reparameterization``). A change
    ``dW`` changes the layer's output by ``dW a_bar`` for every input, so equal ``dW`` are
    equal changes of the network's function."""
    outputs, t_bar = matrix("U", n, n), _homogeneous_map(n)
    a_factor, s_factor, grad = symmetric("A", n + 1), symmetric("S", n), matrix("G", n, n + 1)
    a_new, s_new, grad_new = _transformed_statistics(outputs, t_bar, a_factor, s_factor, grad)

    def mapped_back(change: sp.Matrix) -> sp.Matrix:
        return product(inverse(outputs), change, t_bar)

    def factored(matrix_: sp.Matrix) -> sp.Matrix:
        """The inverse over the factored determinant ``det(U)^-2 det(S)``, ``det(T)^2 det(A)``:
        products with it then cancel quickly."""
        return matrix_.adjugate() / sp.factor(matrix_.det())

    kfac_new = product(-factored(s_new), grad_new, factored(a_new))
    return (product(-inverse(s_factor), grad, inverse(a_factor)), mapped_back(kfac_new),
            -grad, mapped_back(-grad_new))


def _gd_distorted(n: int) -> sp.Matrix:
    """``-U^{-1} U^{-T} grad T_bar^T T_bar``: gradient descent in the reparameterized layer,
    seen in the original weights, is preconditioned by ``(T_bar^T T_bar) (x) (U^{-1} U^{-T})``."""
    outputs, t_bar = matrix("U", n, n), _homogeneous_map(n)
    inv = inverse(outputs)
    return -inv * inv.T * matrix("G", n, n + 1) * t_bar.T * t_bar


identity(
    name="kfac_undamped_affine_invariant",
    topic="kfac",
    source="001 Sec. 3.2 ('Invariance': undamped K-FAC is exactly invariant to affine "
    "reparameterizations) and Sec. 4.3; 003 slides, 'Invariance'",
    statement=r"\mathbf{U}^{-1}\left(-\mathbf{S}_{\mathrm{new}}^{-1}"
    r"\nabla_{\mathbf{W}_{\mathrm{new}}}"
    r"\mathbf{A}_{\mathrm{new}}^{-1}\right)\bar{\mathbf{T}}"
    r" = -\mathbf{S}^{-1}\nabla_{\mathbf{W}}\mathbf{A}^{-1},\quad"
    r"\mathbf{U}^{-1}\left(-\nabla_{\mathbf{W}_{\mathrm{new}}}\right)\bar{\mathbf{T}}"
    r" = -\mathbf{U}^{-1}\mathbf{U}^{-\top}\nabla_{\mathbf{W}}"
    r"\bar{\mathbf{T}}^\top\bar{\mathbf{T}}",
    claim=lambda n: _affine_updates(n)[1::2],
    expected=lambda n: (_affine_updates(n)[0], _gd_distorted(n)),
    control=lambda n: _affine_updates(n)[0::2],
    sizes=(1, 2),
    simplifier=rational_numerator,
    note="Undamped K-FAC on one layer with a bias (W is n x (n+1)), under an invertible affine "
    "map of its input (T_bar = [[T, c], [0, 1]], generic T, c) and an invertible affine map "
    "s -> U s + d of its pre-activations (d drops out of the statistics): the step taken in the new parameterization changes the network's function exactly "
    "as the step in the old one, beyond the scalar rescaling of kfac_undamped_rescaling_invariant. "
    "The control is gradient descent being invariant too: it is not (the second entry). Damping "
    "breaks the invariance as well (003 slides: 'only for the undamped algorithms'); that is not "
    "checked here.",
)
