"""Gauss-Newton norms of deep linear networks, exact and K-FAC (004 Sec. 4.2: Lemma 1, Lemma 2,
Theorem 1 and Appendices B, C, E; 001 Sec. 5.3 and its footnote; 000 slides, 'Three Mechanisms',
Mechanism 2).

A bias-free network ``f(x) = W_L D_{L-1} W_{L-1} ... D_0 W_0 x`` has ``L + 1`` weight matrices;
``D_l`` are the activation patterns of a ReLU network on a region where the signs of the
pre-activations are fixed (there ``relu(s) = D s`` with ``D`` a constant diagonal 0/1 matrix), and
``D_l = I`` for a linear network. The loss is ``1/2 ||f(x) - t||^2``, so the output Hessian is
``I`` and the Gauss-Newton matrix is ``G = E[J_theta^T J_theta]``. With whitened inputs
(``E[x x^T] = I``) the expectation of a quadratic form is a trace, ``E[x^T Q x] = tr(Q)``, so it
is a sum over the basis vectors (:func:`whitened_gram`). Parameters are stacked as
``theta = (vec W_0, ..., vec W_L)`` with column-major ``vec`` (003 slides, 'Kronecker product':
``vec(Ds a^T) = a (x) Ds``).

The symbolic checks use width 2 throughout (inputs, hidden units, outputs) and 2 or 3 weight
matrices with symbolic entries. The closed forms proved here, :data:`theory.kfac.GN_NORM` and
:data:`theory.kfac.KFAC_GN_NORM`, live in :mod:`theory.kfac` with K-FAC's other closed forms.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import sympy as sp

from scalewise import checks
from scalewise.theory.identity import identity, slip
from scalewise.theory.kfac import GN_NORM, KFAC_GN_NORM, depth, jacobian_sq
from scalewise.theory.symbolic import frobenius_sq, vec

WIDTH = 2
"""Width of every layer (and of the input) in the symbolic checks."""

_INPUTS = sp.Matrix(sp.symbols(f"xi1:{WIDTH + 1}", real=True))  # (WIDTH, 1)


@cache
def symbolic_weights(num_matrices: int) -> tuple[sp.Matrix, ...]:
    """``W_0 ... W_{num_matrices - 1}``, each ``(WIDTH, WIDTH)`` with its own real symbols."""
    if num_matrices < 1:
        checks.fail("num_matrices", num_matrices, "an integer >= 1")
    return tuple(
        sp.ImmutableMatrix(WIDTH, WIDTH, lambda i, j, l=l: sp.Symbol(f"w{l}_{i}{j}", real=True))
        for l in range(num_matrices)
    )


@cache
def symbolic_gates(num_matrices: int) -> tuple[sp.Matrix, ...]:
    """Diagonal activation patterns ``D_0 ... D_{L-1}`` with symbolic diagonals: a check with
    them holds for every 0/1 pattern, i.e. on every region of a ReLU network."""
    return tuple(
        sp.ImmutableMatrix(sp.diag(*sp.symbols(f"d{l}_1:{WIDTH + 1}", real=True)))
        for l in range(num_matrices - 1)
    )


def _identity_gates(num_matrices: int) -> tuple[sp.Matrix, ...]:
    return (sp.eye(WIDTH),) * (num_matrices - 1)


def chain(
    weights: Sequence[sp.Matrix], gates: Sequence[sp.Matrix], start: int, stop: int
) -> sp.Matrix:
    """The map from the input of layer ``start`` to the pre-activation of layer ``stop - 1``:
    ``W_{stop-1} D_{stop-2} ... D_start W_start`` (the identity when ``start == stop``)."""
    product = sp.eye(WIDTH)
    for l in range(start, stop):
        product = weights[l] * (gates[l - 1] if l > start else sp.eye(WIDTH)) * product
    return product


def network_output(weights: Sequence[sp.Matrix], gates: Sequence[sp.Matrix]) -> sp.Matrix:
    """``f(x) = W_L D_{L-1} ... D_0 W_0 x`` at the symbolic input, shape ``(WIDTH, 1)``."""
    return chain(weights, gates, 0, len(weights)) * _INPUTS


def parameter_vector(weights: Sequence[sp.Matrix]) -> sp.Matrix:
    """``theta = (vec W_0, ..., vec W_L)``, shape ``((L+1) WIDTH^2, 1)``."""
    return sp.Matrix.vstack(*(vec(w) for w in weights))


def whitened_gram(linear: sp.Matrix) -> sp.Matrix:
    """``E[M(x)^T M(x)]`` for a matrix ``M`` linear in the input, under ``E[x x^T] = I``.

    ``M(x) = sum_i x_i M(e_i)``, so ``E[M^T M] = sum_ij E[x_i x_j] M(e_i)^T M(e_j)
    = sum_i M(e_i)^T M(e_i)``: whitening turns the mean into a sum over the basis."""
    basis = sp.eye(WIDTH)
    at_basis = (
        linear.subs(dict(zip(_INPUTS, basis[:, i])), simultaneous=True) for i in range(WIDTH)
    )
    return sum((m.T * m for m in at_basis), sp.zeros(linear.cols, linear.cols))


def parameter_jacobian(weights: Sequence[sp.Matrix], gates: Sequence[sp.Matrix]) -> sp.Matrix:
    """``J_theta = d f(x) / d theta`` by differentiation, shape ``(WIDTH, (L+1) WIDTH^2)``."""
    return network_output(weights, gates).jacobian(parameter_vector(weights))


def input_jacobian(weights: Sequence[sp.Matrix]) -> sp.Matrix:
    """``J_x = d f(x) / d x`` of the linear network by differentiation, ``(WIDTH, WIDTH)``."""
    gates = _identity_gates(len(weights))
    return network_output(weights, gates).jacobian(_INPUTS)


@cache
def gauss_newton_matrix(num_matrices: int) -> sp.Matrix:
    """Exact ``G = E[J_theta^T J_theta]`` of the linear network (output Hessian ``I``)."""
    weights = symbolic_weights(num_matrices)
    return whitened_gram(parameter_jacobian(weights, _identity_gates(num_matrices))).as_immutable()


def kfac_factors(weights: Sequence[sp.Matrix], layer: int) -> tuple[sp.Matrix, sp.Matrix]:
    """``(A_{l-1}, S_l)`` of a linear network (001 Sec. 5.2; 003 slides, K-FAC).

    ``A_{l-1} = E[a_{l-1} a_{l-1}^T]`` with ``a_{l-1} = W_{l-1} ... W_0 x`` the layer's input;
    ``S_l = J_{f,s_l}^T J_{f,s_l}`` with ``J_{f,s_l}`` the Jacobian of the output with respect to
    the layer's pre-activation ``s_l``, obtained by differentiating ``W_L ... W_{l+1} s``. For a
    linear network it does not depend on ``x``, so no expectation is needed."""
    gates = _identity_gates(len(weights))
    activation = chain(weights, gates, 0, layer) * _INPUTS
    pre_activation = sp.Matrix(sp.symbols(f"s1:{WIDTH + 1}", real=True))
    downstream = chain(weights, gates, layer + 1, len(weights)) * pre_activation
    back = downstream.jacobian(pre_activation)
    return whitened_gram(activation.T), back.T * back


def kfac_factor_pairs(num_matrices: int) -> list[tuple[sp.Matrix, sp.Matrix]]:
    """``(A_{l-1}, S_l)`` for every layer of the symbolic linear network."""
    weights = symbolic_weights(num_matrices)
    return [kfac_factors(weights, l) for l in range(num_matrices)]


def kfac_blocks(num_matrices: int) -> list[sp.Matrix]:
    """``G_hat_ll = A_{l-1} (x) S_l`` for every layer (001 Sec. 5.2; 003 slides, K-FAC)."""
    return [sp.kronecker_product(a, s) for a, s in kfac_factor_pairs(num_matrices)]


def _swapped_kfac_blocks(num_matrices: int) -> list[sp.Matrix]:
    return [sp.kronecker_product(s, a) for a, s in kfac_factor_pairs(num_matrices)]


def _diagonal_blocks(matrix: sp.Matrix, num_matrices: int) -> list[sp.Matrix]:
    size = WIDTH * WIDTH
    spans = (slice(l * size, (l + 1) * size) for l in range(num_matrices))
    return [matrix[span, span] for span in spans]


def _kfac_norm(num_matrices: int) -> sp.Expr:
    """``sum_l vec(W_l)^T (A_{l-1} (x) S_l) vec(W_l)``."""
    weights = symbolic_weights(num_matrices)
    blocks = kfac_blocks(num_matrices)
    return sp.expand(sum((vec(w).T * b * vec(w))[0] for w, b in zip(weights, blocks)))


@cache
def _gn_norm(num_matrices: int) -> sp.Expr:
    theta = parameter_vector(symbolic_weights(num_matrices))
    return sp.expand((theta.T * gauss_newton_matrix(num_matrices) * theta)[0])


def _jacobian_norm(expr: sp.Expr, num_matrices: int) -> sp.Expr:
    """``expr`` at ``L = num_matrices - 1`` and ``||J_x||_F^2`` of the symbolic network."""
    jac_sq = frobenius_sq(input_jacobian(symbolic_weights(num_matrices)))
    return sp.expand(expr.subs({depth: num_matrices - 1, jacobian_sq: jac_sq}))


def _gradient_structure(num_matrices: int, gates: Sequence[sp.Matrix]) -> sp.Matrix:
    weights = symbolic_weights(num_matrices)
    return sp.expand(parameter_jacobian(weights, gates) * parameter_vector(weights))


def _scaled_output(num_matrices: int, gates: Sequence[sp.Matrix], factor: int) -> sp.Matrix:
    return sp.expand(factor * network_output(symbolic_weights(num_matrices), gates))


identity(
    name="gradient_structure_linear",
    topic="kfac",
    source="004 Lemma 1 (Appendix B)",
    statement=r"f(\mathbf{x}) = \mathbf{W}_L\cdots\mathbf{W}_0\mathbf{x} \Rightarrow "
    r"\mathbf{J}_{\theta}\,\theta = (L+1)\,f(\mathbf{x})",
    claim=lambda n: _gradient_structure(n, _identity_gates(n)),
    expected=lambda n: _scaled_output(n, _identity_gates(n), n),
    control=lambda n: _scaled_output(n, _identity_gates(n), n - 1),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Euler's theorem: f is homogeneous of degree L+1 in theta. Sizes are the number of "
    "weight matrices L+1 (width 2); J_theta by differentiation.",
)

identity(
    name="gradient_structure_relu",
    topic="kfac",
    source="004 Lemma 1 (Appendix B)",
    statement=r"f(\mathbf{x}) = \mathbf{W}_L\mathbf{D}_{L-1}\mathbf{W}_{L-1}\cdots\mathbf{D}_0"
    r"\mathbf{W}_0\mathbf{x} \Rightarrow \mathbf{J}_{\theta}\,\theta = (L+1)\,f(\mathbf{x})",
    claim=lambda n: _gradient_structure(n, symbolic_gates(n)),
    expected=lambda n: _scaled_output(n, symbolic_gates(n), n),
    control=lambda n: _scaled_output(n, symbolic_gates(n), n - 1),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="A bias-free ReLU network is positively homogeneous of degree L+1 in theta: on a region "
    "of fixed signs relu(s) = D s with a constant diagonal 0/1 matrix D. The D_l are symbolic, so "
    "the check covers every activation pattern.",
)

identity(
    name="gauss_newton_norm_relu_per_sample",
    topic="kfac",
    source="004 Lemma 2 and its footnote (Appendix C)",
    statement=r"\theta^\top\mathbf{J}_\theta^\top\mathbf{J}_\theta\,\theta"
    r" = (L+1)^2\|f(\mathbf{x})\|^2\ \text{per input, so}\ "
    r"\theta^\top\mathbf{G}\,\theta = (L+1)^2\,\mathbb{E}\|f(\mathbf{x})\|^2",
    claim=lambda n: frobenius_sq(_gradient_structure(n, symbolic_gates(n))),
    expected=lambda n: frobenius_sq(_scaled_output(n, symbolic_gates(n), n)),
    control=lambda n: n * frobenius_sq(network_output(symbolic_weights(n), symbolic_gates(n))),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Holds for ReLU networks (any activation pattern), with any input distribution; the "
    "output norm equals the Jacobian norm only when J_x does not depend on x (linear networks).",
)

identity(
    name="gauss_newton_norm_linear",
    topic="kfac",
    source="004 Lemma 2 and Theorem 1 (Appendix C)",
    statement=r"\theta^\top\mathbf{G}\,\theta = \mathbb{E}\|\mathbf{J}_\theta\theta\|^2"
    r" = (L+1)^2\,\|\mathbf{J}_{\mathbf{x}}\|_F^2"
    r"\quad(\mathbb{E}[\mathbf{x}\mathbf{x}^\top]=\mathbf{I})",
    claim=_gn_norm,
    expected=lambda n: _jacobian_norm(GN_NORM, n),
    control=lambda n: _jacobian_norm(KFAC_GN_NORM, n),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="G = E[J_theta^T J_theta] from differentiation and the whitened mean; J_x from "
    "differentiating f with respect to x.",
)

identity(
    name="kfac_block_exact_linear",
    topic="kfac",
    source="004 Appendix C; 003 slides, K-FAC ('push the expectation inwards')",
    statement=r"\mathbf{G}_{\ell\ell} = \mathbb{E}[\bar{\mathbf{a}}_{\ell-1}"
    r"\bar{\mathbf{a}}_{\ell-1}^\top\otimes"
    r"\mathcal{D}\mathbf{s}_\ell\mathcal{D}\mathbf{s}_\ell^\top]"
    r" = \mathbf{A}_{\ell-1}\otimes\mathbf{S}_\ell"
    r"\ \text{(linear network)}",
    claim=lambda n: _diagonal_blocks(gauss_newton_matrix(n), n),
    expected=kfac_blocks,
    control=_swapped_kfac_blocks,
    sizes=(2, 3),
    simplifier=sp.expand,
    note="For a linear network J_{f,s_l} does not depend on the input, so the expectation "
    "factorizes and the K-FAC block equals the exact Gauss-Newton block.",
)

identity(
    name="kfac_gauss_newton_norm",
    topic="kfac",
    source="004 Theorem 1; 001 Sec. 5.3 (footnote); 000 slides, Mechanism 2",
    statement=r"\theta^\top\hat{\mathbf{G}}\,\theta"
    r" = \sum_{\ell=0}^{L}\mathrm{vec}(\mathbf{W}_\ell)^\top"
    r"(\mathbf{A}_{\ell-1}\otimes\mathbf{S}_\ell)"
    r"\,\mathrm{vec}(\mathbf{W}_\ell) = (L+1)\,\|\mathbf{J}_{\mathbf{x}}\|_F^2",
    claim=_kfac_norm,
    expected=lambda n: _jacobian_norm(KFAC_GN_NORM, n),
    control=lambda n: _jacobian_norm(GN_NORM, n),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Each layer contributes tr(W^T S W A) = ||J_x||_F^2; the exact norm has (L+1)^2 "
    "because it also counts the cross-layer blocks.",
)


def _gn_norm_gradient(num_matrices: int) -> sp.Matrix:
    theta = parameter_vector(symbolic_weights(num_matrices))
    return sp.Matrix([_gn_norm(num_matrices)]).jacobian(theta).T


def _constant_metric_gradient(num_matrices: int, factor: int) -> sp.Matrix:
    theta = parameter_vector(symbolic_weights(num_matrices))
    return sp.expand(2 * factor * gauss_newton_matrix(num_matrices) * theta)


identity(
    name="gauss_newton_norm_gradient",
    topic="kfac",
    source="004 Appendix E",
    statement=r"\nabla_\theta\left[\theta^\top\mathbf{G}(\theta)\,\theta\right]"
    r" = 2(L+1)\,\mathbf{G}(\theta)\,\theta",
    claim=_gn_norm_gradient,
    expected=lambda n: _constant_metric_gradient(n, n),
    control=lambda n: _constant_metric_gradient(n, 1),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Differentiating through G(theta) only rescales the constant-metric gradient 2 G theta by "
    "L+1, so weight decay preconditioned by G is exact gradient descent on the Gauss-Newton norm "
    "with the penalty rescaled by 1/(L+1) (001 Eq. 27 treats C as fixed).",
)

slip(
    seed="000",
    place="slides 'Three Mechanisms', Mechanism 2 (lines 445-447)",
    says=r"$\mathbf{w}^\top\hat{\mathbf{G}}\mathbf{w} = (L+1)\|\mathbf{J}\|_F^2$, where $L$ is the number of layers",
    truth=r"the factor is the number of weight matrices: with $L+1$ matrices $W_0,\dots,W_L$ (004 Lemma 1, 'depth $L$') it is $L+1$; a network with $L$ weight layers has $\theta^\top\hat{\mathbf{G}}\theta = L\|\mathbf{J}\|_F^2$",
    identity="kfac_gauss_newton_norm",
)

slip(
    seed="001",
    place="Sec. 5.3, paragraph after Eq. (27)",
    says=r"for Gauss-Newton optimization of a ReLU MLP without BN, the norm regularized by WD is proportional to $\|\mathbf{J}_{\mathbf{z}\mathbf{x}}\|_F^2$",
    truth=r"for ReLU networks $\theta^\top\mathbf{G}\theta = (L+1)^2\,\mathbb{E}\|f(\mathbf{x})\|^2 = (L+1)^2\,\mathbb{E}\|\mathbf{J}_{\mathbf{x}}(\mathbf{x})\mathbf{x}\|^2$ (004 Lemma 2), which equals $(L+1)^2\|\mathbf{J}_{\mathbf{x}}\|_F^2$ only when $\mathbf{J}_{\mathbf{x}}$ does not depend on $\mathbf{x}$ (linear networks, whitened inputs: 004 Theorem 1)",
    identity="gauss_newton_norm_relu_per_sample",
)
