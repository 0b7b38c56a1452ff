"""Homogeneous functions, scale invariance, and the effective learning rate of normalized
weights.

Sources: 001 Sec. 4.3, Eqs. (15)-(18) (homogeneity, Euler's theorem, the gradient of a
scale-invariant cost) and the display before Eq. (19) (the update of the normalized weights
``w_hat = w / ||w||``, effective learning rate and effective gradient); the same statements are on
the 'Implicit Learning Rate Decay' slides of 000 and 002.

Every positively homogeneous function of degree ``k`` on ``R^n \\ {0}`` has the form
``g(x) = ||x||^k h(x / ||x||)`` (take ``h`` = ``g`` on the unit sphere). The identities below use
exactly that form with ``h`` a :class:`~theory.symbolic.GenericFunction` (nothing known about it
but smoothness) and ``k`` a symbol, so each check covers every such function and every degree at
once, for the numbers of variables ``n`` it lists. A scale-invariant cost is the case ``k = 0``:
``J(w) = h(w / ||w||)``.

Square roots of sums of squares (norms) are compared exactly by :func:`reduce_radicals`.
"""

from __future__ import annotations

from functools import cache

import sympy as sp
from sympy.polys.fields import sfield

from scalewise.theory import equilibrium
from scalewise.theory.identity import identity, slip, unpack
from scalewise.theory.symbolic import (
    gradient,
    is_opaque,
    norm,
    partial_derivative,
    vector,
)

k = sp.Symbol("k", real=True)
gamma = sp.Symbol("gamma", positive=True)
alpha = equilibrium.alpha


h = partial_derivative(())

w_norm, grad_norm, alpha_hat, g_hat = sp.symbols("w_norm grad_norm alpha_hat g_hat", positive=True)

GRAD_NORM_AT_UNIT_NORM = w_norm * grad_norm
"""``||grad J(w_hat)||`` from ``||w||`` and ``||grad J(w)||`` for a scale-invariant ``J``: by
001 Eq. (18) with ``gamma = 1/||w||``, ``grad J(w_hat) = ||w|| grad J(w)``. This is how a probe
turns a measured gradient into the gradient at unit norm that the norm recurrences use."""

NORMALIZED_STEP_SCALE = 1 / sp.sqrt(1 + alpha_hat**2 * g_hat**2)
"""Exact SGD step of the normalized weights, ``w_hat+ = s (w_hat - alpha_hat grad J(w_hat))`` with
this ``s``; ``alpha_hat = alpha / ||w||^2`` is the effective learning rate and ``g_hat =
||grad J(w_hat)||``. ``s = 1 + O(alpha^2)``: the first-order update of 001 Sec. 4.3 drops it."""


# ---------------------------------------------------------------- exact comparison with norms


@cache
def _factor(base: sp.Expr) -> sp.Expr:
    return sp.factor(base)


def _factored_powers(expr: sp.Expr) -> sp.Expr:
    """Factor the base of every non-integer power and split off its positive factors, so that
    ``sqrt(gamma^2 x1^2 + gamma^2 x2^2)`` becomes ``gamma sqrt(x1^2 + x2^2)`` everywhere."""
    return expr.replace(
        lambda e: e.is_Pow and not e.exp.is_Integer,
        lambda e: sp.expand_power_base(sp.Pow(_factor(e.base), e.exp)),
    )


def _opaque_parts(expr: sp.Expr) -> dict[sp.Expr, sp.Dummy]:
    """Sub-expressions to treat as independent symbols: applications of generic or undefined
    functions and their derivatives (:func:`~theory.symbolic.is_opaque`)."""
    found: dict[sp.Expr, sp.Dummy] = {}

    def visit(e: sp.Expr) -> None:
        if is_opaque(e):
            found.setdefault(e, sp.Dummy())
        else:
            for arg in e.args:
                visit(arg)

    visit(expr)
    return found


def _without_symbolic_exponents(expr: sp.Expr) -> sp.Expr:
    """``b^(q + e)`` with ``q`` rational and ``e`` symbolic -> ``t_(b,e) * b^q``: one independent
    symbol per symbolic power, so ``b^(k/2 - 1) * b`` and ``b^(k/2)`` agree, while the rational
    part stays a radical that :func:`reduce_radicals` can reduce."""
    symbols: dict[tuple[sp.Expr, sp.Expr], sp.Dummy] = {}

    def opaque(e: sp.Pow) -> sp.Expr:
        rational, rest = e.exp.as_coeff_Add()
        return symbols.setdefault((e.base, rest), sp.Dummy()) * e.base**rational

    return expr.replace(lambda e: e.is_Pow and not e.exp.is_Rational, opaque)


def _is_radical(e: sp.Expr) -> bool:
    return e.is_Pow and e.exp.is_Rational and e.exp.q == 2


def reduce_radicals(expr: sp.Expr) -> sp.Expr:
    """A normal form of ``expr`` that is ``0`` when ``expr`` is ``0`` (the ``simplifier`` of
    identities whose sides contain norms, where ``sp.simplify`` is slow).

    Bases of powers are factored (so ``sqrt(gamma^2 q) = gamma sqrt(q)`` for ``gamma > 0``);
    generic functions, their derivatives and powers with a symbolic exponent become independent
    symbols; each ``sqrt(b)`` becomes a positive symbol ``r`` with the relation ``r^2 = b``. The
    result is the numerator of ``expr`` as a rational function, reduced modulo the relations
    (for polynomial radicands the ``r`` come first in lex order, so the leading terms ``r^2`` are
    coprime and the relations are a Groebner basis). Zero proves ``expr == 0``. A nonzero result
    is the residual; it is conclusive only when the radicands are multiplicatively independent
    (``sqrt(p q)`` against ``sqrt(p) sqrt(q)`` would be missed), which is why each identity's
    control is a genuinely different value.
    """
    expr = _without_symbolic_exponents(_factored_powers(sp.sympify(expr)))
    if expr.is_Number:
        return expr
    expr = expr.xreplace(_opaque_parts(expr))
    roots = {p.base: sp.Dummy(positive=True) for p in expr.atoms(sp.Pow) if _is_radical(p)}
    expr = expr.replace(_is_radical, lambda e: roots[e.base] ** (2 * e.exp))
    relations = [root**2 - base for base, root in roots.items()]
    pool = [expr, *relations]
    others = set().union(*(e.free_symbols for e in pool)) - set(roots.values())
    functions = set().union(*(e.atoms(sp.Function) for e in pool))  # e.g. Abs of a batch of 2
    gens = [*roots.values(), *sorted(others, key=sp.default_sort_key),
            *sorted(functions, key=sp.default_sort_key)]
    _, (value, *divisors) = sfield(pool, *gens)
    return value.numer.rem([d.numer for d in divisors]).as_expr()


# ---------------------------------------------------------------- vectors, norms, gradients


def evaluated_at(expr: sp.Basic, x: sp.Matrix, point: sp.Matrix) -> sp.Basic:
    """``expr`` with the variables ``x`` replaced by ``point`` (simultaneously)."""
    return expr.xreplace(dict(zip(x, point)))


def homogeneous_function(x: sp.Matrix, degree: sp.Expr = k) -> sp.Expr:
    """The generic positively homogeneous function of ``degree`` (001 Eq. 15),
    ``g(x) = ||x||^degree h(x / ||x||)`` with ``h`` generic."""
    r = norm(x)
    return r**degree * h(*(x / r))


def scale_invariant_cost(w: sp.Matrix) -> sp.Expr:
    """The generic scale-invariant cost ``J(w) = h(w / ||w||)`` (degree 0, 001 Sec. 4.3)."""
    return homogeneous_function(w, 0)


# ---------------------------------------------------------------- Euler's theorem


@cache
def _homogeneous_case(n: int) -> tuple[sp.Matrix, sp.Expr, sp.Matrix]:
    x = vector("x", n)
    g = homogeneous_function(x)
    return x, g, gradient(g, x)


identity(
    name="euler_homogeneous_function",
    topic="homogeneity",
    source="001 Eq. (16)",
    statement=r"g(\gamma\mathbf{x}) = \gamma^k g(\mathbf{x})\ \forall\gamma>0"
    r" \;\Rightarrow\; \mathbf{x}^\top\nabla g(\mathbf{x}) = k\,g(\mathbf{x})",
    claim=unpack(_homogeneous_case, lambda x, g, grad: x.dot(grad)),
    expected=lambda n: k * _homogeneous_case(n)[1],
    control=lambda n: (k - 1) * _homogeneous_case(n)[1],
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="g = ||x||^k h(x/||x||) with h generic and k symbolic: every positively homogeneous "
    "function of every degree, in n = 2 and 3 variables.",
)


def _homogeneous_rational(x: sp.Matrix, num_degree: int, den_degree: int) -> sp.Expr:
    """``P(x) / Q(x)`` with ``P``, ``Q`` generic homogeneous polynomials (one symbolic
    coefficient per monomial) of the given degrees: homogeneous of degree ``num - den``."""

    def generic(name: str, degree: int) -> sp.Expr:
        monomials = sorted(sp.itermonomials(list(x), degree, degree), key=sp.default_sort_key)
        coefficients = sp.symbols(f"{name}0:{len(monomials)}", real=True)
        return sum(c * m for c, m in zip(coefficients, monomials))

    return generic("p", num_degree) / generic("q", den_degree)


RATIONAL_DEGREES = ((3, 0), (2, 1), (1, 3), (2, 2))
"""``(deg P, deg Q)`` of the concrete rational examples: degrees 3, 1, -2 and 0."""


def _euler_rational(shift: int) -> tuple[sp.Expr, ...]:
    x = vector("x", 2)
    cases = [(_homogeneous_rational(x, p, q), p - q) for p, q in RATIONAL_DEGREES]
    return tuple((degree + shift) * g for g, degree in cases)


identity(
    name="euler_homogeneous_rational_examples",
    topic="homogeneity",
    source="001 Eq. (16)",
    statement=r"\mathbf{x}^\top\nabla\frac{P(\mathbf{x})}{Q(\mathbf{x})}"
    r" = (\deg P - \deg Q)\frac{P(\mathbf{x})}{Q(\mathbf{x})}",
    claim=lambda: tuple(
        x.dot(gradient(_homogeneous_rational(x, p, q), x))
        for x in [vector("x", 2)]
        for p, q in RATIONAL_DEGREES
    ),
    expected=lambda: _euler_rational(0),
    control=lambda: _euler_rational(1),
    simplifier=sp.cancel,
    note="Concrete generic examples in 2 variables, degrees 3, 1, -2, 0: P and Q with one symbolic "
    "coefficient per monomial.",
)

identity(
    name="gradient_homogeneous_degree_k_minus_1",
    topic="homogeneity",
    source="001 Eq. (17)",
    statement=r"\nabla g(\gamma\mathbf{x}) = \gamma^{k-1}\nabla g(\mathbf{x})",
    claim=unpack(_homogeneous_case, lambda x, g, grad: evaluated_at(grad, x, gamma * x)),
    expected=lambda n: gamma ** (k - 1) * _homogeneous_case(n)[2],
    control=lambda n: gamma**k * _homogeneous_case(n)[2],
    sizes=(2, 3),
    simplifier=reduce_radicals,
)


@cache
def _hessian_case(n: int) -> tuple[sp.Matrix, sp.Matrix]:
    x, g, _ = _homogeneous_case(n)
    return x, sp.hessian(g, list(x))


identity(
    name="hessian_homogeneous_degree_k_minus_2",
    topic="homogeneity",
    source="001 Eq. (17) (differentiated once more)",
    statement=r"\nabla^2 g(\gamma\mathbf{x}) = \gamma^{k-2}\nabla^2 g(\mathbf{x})",
    claim=unpack(_hessian_case, lambda x, hess: evaluated_at(hess, x, gamma * x)),
    expected=lambda n: gamma ** (k - 2) * _hessian_case(n)[1],
    control=lambda n: gamma ** (k - 1) * _hessian_case(n)[1],
    sizes=(2,),
    simplifier=reduce_radicals,
    note="Checked for n = 2 variables only: with n = 3 the symbolic Hessian of the generic "
    "function takes seconds.",
)


# ---------------------------------------------------------------- scale invariance, k = 0


@cache
def _scale_invariant_case(n: int) -> tuple[sp.Matrix, sp.Expr, sp.Matrix]:
    w = vector("w", n)
    cost = scale_invariant_cost(w)
    return w, cost, gradient(cost, w)


identity(
    name="scale_invariant_gradient_orthogonal",
    topic="homogeneity",
    source="001 Eq. (16) with k = 0",
    statement=r"\mathcal{J}(\gamma\mathbf{w}) = \mathcal{J}(\mathbf{w})"
    r" \;\Rightarrow\; \mathbf{w}^\top\nabla\mathcal{J}(\mathbf{w}) = 0",
    claim=unpack(_scale_invariant_case, lambda w, _, grad: w.dot(grad)),
    expected=lambda n: sp.Integer(0),
    control=lambda n: _scale_invariant_case(n)[1],
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="The gradient of a scale-invariant cost is tangent to the sphere (001 Fig. 5).",
)

identity(
    name="scale_invariant_gradient_degree_minus_1",
    topic="homogeneity",
    source="001 Eq. (18)",
    statement=r"\nabla\mathcal{J}(\gamma\mathbf{w}) = \gamma^{-1}\nabla\mathcal{J}(\mathbf{w})",
    claim=unpack(_scale_invariant_case, lambda w, _, grad: evaluated_at(grad, w, gamma * w)),
    expected=lambda n: _scale_invariant_case(n)[2] / gamma,
    control=lambda n: _scale_invariant_case(n)[2],
    sizes=(2, 3),
    simplifier=reduce_radicals,
)


@cache
def _gradient_at_unit_norm(n: int) -> sp.Matrix:
    """``grad J`` evaluated at ``w_hat = w / ||w||``."""
    w, _, grad = _scale_invariant_case(n)
    return _factored_powers(evaluated_at(grad, w, w / norm(w)))


def _unit_norm_gradient_sq(n: int, law: sp.Expr) -> sp.Expr:
    w, _, grad = _scale_invariant_case(n)
    return law.subs({w_norm: norm(w), grad_norm: norm(grad)}) ** 2


identity(
    name="scale_invariant_gradient_at_unit_norm",
    topic="homogeneity",
    source="001 Eq. (18) with gamma = 1/||w||",
    statement=r"\|\nabla\mathcal{J}(\hat{\mathbf{w}})\|"
    r" = \|\mathbf{w}\|\,\|\nabla\mathcal{J}(\mathbf{w})\|,"
    r"\quad \hat{\mathbf{w}} = \mathbf{w}/\|\mathbf{w}\|",
    claim=lambda n: _gradient_at_unit_norm(n).dot(_gradient_at_unit_norm(n)),
    expected=lambda n: _unit_norm_gradient_sq(n, GRAD_NORM_AT_UNIT_NORM),
    control=lambda n: _unit_norm_gradient_sq(n, grad_norm / w_norm),
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="Squared norms are compared. This converts a measured gradient norm into the norm at "
    "unit weight norm (GRAD_NORM_AT_UNIT_NORM).",
)


# ---------------------------------------------------------------- effective learning rate


@cache
def _normalized_step(n: int) -> tuple[sp.Matrix, sp.Matrix]:
    """``w`` and ``w_hat+ = (w - alpha grad J(w)) / ||w - alpha grad J(w)||`` for the generic
    scale-invariant cost (001 Sec. 4.3, first line of the display before Eq. 19)."""
    w, _, grad = _scale_invariant_case(n)
    stepped = w - alpha * grad
    return w, stepped / norm(stepped)


def _effective_lr(w: sp.Matrix) -> sp.Expr:
    """``alpha / ||w||^2``: theory.equilibrium's EFFECTIVE_LR at ``x = ||w||^2``."""
    return equilibrium.EFFECTIVE_LR.subs(equilibrium.x, w.dot(w))


def _first_order_update(n: int, step_size: sp.Expr) -> sp.Matrix:
    w = vector("w", n)
    return w / norm(w) - step_size * _gradient_at_unit_norm(n)


@cache
def _first_order_derived(n: int) -> sp.Matrix:
    """Taylor polynomial of degree 1 in ``alpha`` of the exact normalized step."""
    _, stepped = _normalized_step(n)
    return stepped.subs(alpha, 0) + alpha * stepped.diff(alpha).subs(alpha, 0)


identity(
    name="normalized_update_first_order",
    topic="homogeneity",
    source="001 Sec. 4.3 (display before Eq. 19)",
    statement=r"\hat{\mathbf{w}}^{(k+1)} = \hat{\mathbf{w}}^{(k)}"
    r" - \alpha\|\mathbf{w}^{(k)}\|^{-2}\nabla\mathcal{J}(\hat{\mathbf{w}}^{(k)}) + O(\alpha^2)",
    claim=_first_order_derived,
    expected=lambda n: _first_order_update(n, _effective_lr(vector("w", n))),
    control=lambda n: _first_order_update(n, alpha / norm(vector("w", n))),
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="Derived as the first-order Taylor polynomial in alpha of the exact normalized SGD step "
    "for the generic scale-invariant cost; orthogonality and Eq. (18) are not assumed, they come "
    "out of the derivation. The control uses the display's 'effective LR' alpha/||w||.",
)


def _exact_update_parts(n: int, scale: sp.Expr) -> tuple[sp.Matrix, sp.Expr]:
    """``(||w|| (w_hat - alpha_hat grad J(w_hat)), ||w||^2 / scale^2)``: the unnormalized step and
    its squared norm if ``w_hat+ = scale (w_hat - alpha_hat grad J(w_hat))``."""
    w = vector("w", n)
    grad_hat = _gradient_at_unit_norm(n)
    rate = _effective_lr(w)
    scale = scale.subs({alpha_hat: rate, g_hat: norm(grad_hat)})
    return norm(w) * (w / norm(w) - rate * grad_hat), w.dot(w) / scale**2


def _sgd_step_parts(n: int) -> tuple[sp.Matrix, sp.Expr]:
    w, _, grad = _scale_invariant_case(n)
    stepped = w - alpha * grad
    return stepped, stepped.dot(stepped)


identity(
    name="normalized_update_exact",
    topic="homogeneity",
    source="001 Sec. 4.3 (display before Eq. 19)",
    statement=r"\hat{\mathbf{w}}^{(k+1)}"
    r" = \frac{\hat{\mathbf{w}} - \hat\alpha\nabla\mathcal{J}(\hat{\mathbf{w}})}"
    r"{\sqrt{1 + \hat\alpha^2\|\nabla\mathcal{J}(\hat{\mathbf{w}})\|^2}},"
    r"\quad \hat\alpha = \alpha\|\mathbf{w}\|^{-2}",
    claim=_sgd_step_parts,
    expected=lambda n: _exact_update_parts(n, NORMALIZED_STEP_SCALE),
    control=lambda n: _exact_update_parts(n, sp.Integer(1)),
    sizes=(2,),
    simplifier=reduce_radicals,
    note="Checked as its two halves, for the generic scale-invariant cost: the SGD step is "
    "w - alpha grad J(w) = ||w|| (w_hat - alpha_hat grad J(w_hat)), and its squared norm is "
    "||w||^2 (1 + alpha_hat^2 ||grad J(w_hat)||^2); dividing the first by the square root of the "
    "second is the statement. The notes' approximation drops only the factor "
    "1/sqrt(1 + alpha_hat^2 g^2) = 1 + O(alpha^2) (the control). Checked for n = 2 (n = 3 "
    "takes over a second).",
)


def _effective_pair(w: sp.Matrix, n: int) -> tuple[sp.Expr, sp.Matrix]:
    """(effective LR, effective gradient) at the weight ``w`` (001 Sec. 4.3)."""
    u = vector("w", n)
    return _effective_lr(w), evaluated_at(_gradient_at_unit_norm(n) / u.dot(u), u, w)


def _scaled_pair(n: int, factor: sp.Expr) -> tuple[sp.Expr, sp.Matrix]:
    rate, grad = _effective_pair(vector("w", n), n)
    return factor * rate, factor * grad


identity(
    name="effective_lr_and_gradient_degree_minus_2",
    topic="homogeneity",
    source="001 Sec. 4.3 (after the display before Eq. 19)",
    statement=r"\hat\alpha(\gamma\mathbf{w}) = \gamma^{-2}\hat\alpha(\mathbf{w}),\quad"
    r" \|\gamma\mathbf{w}\|^{-2}\nabla\mathcal{J}(\widehat{\gamma\mathbf{w}})"
    r" = \gamma^{-2}\|\mathbf{w}\|^{-2}\nabla\mathcal{J}(\hat{\mathbf{w}})",
    claim=lambda n: _effective_pair(gamma * vector("w", n), n),
    expected=lambda n: _scaled_pair(n, gamma**-2),
    control=lambda n: _scaled_pair(n, gamma**-1),
    sizes=(2, 3),
    simplifier=reduce_radicals,
)

slip(
    seed="001",
    place="Sec. 4.3, display before Eq. (19), underbraces (same display on the 000 and 002 slides)",
    says=r"$\alpha\|\mathbf{w}^{(k)}\|^{-1}$ is labelled 'effective LR' and the scalar $\alpha\|\mathbf{w}^{(k)}\|^{-2}$ 'effective gradient'",
    truth=r"the effective learning rate is $\hat\alpha = \alpha\|\mathbf{w}\|^{-2}$ (it multiplies $\nabla\mathcal{J}(\hat{\mathbf{w}})$) and the effective gradient is the vector $\|\mathbf{w}\|^{-2}\nabla\mathcal{J}(\hat{\mathbf{w}})$, as the text right after the display says; $\alpha\|\mathbf{w}\|^{-1}$ only multiplies $\nabla\mathcal{J}(\mathbf{w})$, whose norm itself shrinks as $1/\|\mathbf{w}\|$",
    identity="normalized_update_first_order",
)


# ---------------------------------------------------------------- NumPy forms for sim/ and models/

grad_norm_at_unit_norm = sp.lambdify((w_norm, grad_norm), GRAD_NORM_AT_UNIT_NORM, "numpy")
normalized_step_scale = sp.lambdify((alpha_hat, g_hat), NORMALIZED_STEP_SCALE, "numpy")
