"""Weight-norm equilibria of a scale-invariant weight vector under Adam and RMSprop with coupled L2
weight decay, in the mean-field model of :mod:`theory.mean_field`, and Adagrad's lack of one.

The decay ``lam w`` enters the gradient, so it is divided by ``sqrt(v_hat) ~ g / sqrt(d x)``: the
balance no longer closes exactly (a quintic in ``x``). Write ``x = A y`` with the leading-order
norm ``A`` (:data:`ADAM_NORM_SQ`) and ``eps = (lam A / g)^2`` (:data:`ADAM_EPSILON`), the relative
size of the decay term in the second moment: the equilibrium is
``y = 1 + (2 r - 1) eps / 3 + O(eps^2)``, ``r = (1 - beta1)/(1 + beta1)``. RMSprop is Adam at
``beta1 = 0`` (``r = 1``). Adagrad's accumulator grows at least linearly in the step, so its step
shrinks and no stationary state exists.
"""

from __future__ import annotations

import sympy as sp

from scalewise.theory.equilibrium import alpha, g, lam, x
from scalewise.theory.identity import identity
from scalewise.theory.mean_field import (
    ADAM_V_HAT,
    HYPERPARAMETERS,
    SCALE_FREE_EFFECTIVE_LR,
    buffer_fixed_point,
    c,
    d,
    derived_cos_angle,
    mean_field_map,
    mean_field_model,
    p,
    q,
    r_beta,
    required_step_scale,
    t,
)

y, eps = sp.symbols("y epsilon", positive=True)
"""The norm in units of its leading order, ``x = A y``, and the expansion parameter."""

ADAM_NORM_SQ = (alpha * g * sp.sqrt(d) / (2 * lam)) ** sp.Rational(2, 3)
"""Leading-order equilibrium ``E||w||^2`` of Adam (and RMSprop) with coupled L2."""

ADAM_EPSILON = (alpha**2 * d * lam / (4 * g)) ** sp.Rational(2, 3)
"""``eps = (lam ||w*||^2 / g)^2``: the expansion parameter of the Adam-L2 equilibrium."""

ADAM_EFFECTIVE_LR = SCALE_FREE_EFFECTIVE_LR.subs(x, ADAM_NORM_SQ)
"""``alpha / ||w||`` at the leading-order equilibrium,
``alpha (2 lam / (alpha g sqrt(d)))^(1/3)``."""

ADAM_COS_AT = (g**2 - r_beta * lam**2 * x**2) / (g**2 + r_beta * lam**2 * x**2)
"""``cos`` of the angular update at a stationary ``x`` of Adam with L2 (exact mean field)."""

ADAM_COS_ANGLE = (1 - r_beta * ADAM_EPSILON) / (1 + r_beta * ADAM_EPSILON)
"""``ADAM_COS_AT`` at the leading-order norm (``lam^2 x^2 / g^2 = eps``)."""

ADAM_APPROACH_RATE = 1 - 6 * ADAM_EPSILON
"""Leading-order approach rate of Adam and RMSprop with L2, for any ``beta1``: the slope of
RMSprop's one-dimensional norm map (identity ``rmsprop_approach_rate_leading_order``) and the
slow eigenvalue of Adam's three-dimensional map (:func:`adam_l2_slow_eigenvalue_series`). The
next term is relatively ``O(eps / (1 - beta1)^2)``."""

_A = sp.Symbol("A", positive=True)  # the leading-order norm ADAM_NORM_SQ as a free symbol
_ADAM_SCALED = {g: lam * _A / sp.sqrt(eps), alpha: 2 * sp.sqrt(eps * _A / d)}
"""``alpha, g`` in terms of ``A = ADAM_NORM_SQ`` and ``eps = ADAM_EPSILON`` (inverting both)."""


def adam_l2_balance(optimizer: str) -> sp.Expr:
    """``c*(x) / c(x)`` in the scaled variables ``x = A y``: the equilibrium is where it is 1."""
    ratio = required_step_scale(optimizer) / mean_field_model(optimizer).step_scale
    return sp.simplify(ratio.subs(x, _A * y).subs(_ADAM_SCALED))


def _implicit_root(balance: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """Root ``y0`` of ``balance(y, 0) = 1`` and ``dy/deps`` there (implicit differentiation)."""
    (y0,) = sp.solve(sp.Eq(balance.subs(eps, 0), 1), y)
    slope = -sp.diff(balance, eps) / sp.diff(balance, y)
    return y0, sp.simplify(slope.subs({y: y0, eps: 0}))


def _rmsprop_slope() -> sp.Expr:
    """``d eps``-derivative at ``eps = 0`` of the slope of RMSprop's norm map at its equilibrium."""
    norm_map = mean_field_map("rmsprop")[0]
    slope = sp.diff(norm_map, x).subs(x, _A * y).subs(_ADAM_SCALED)
    y0, dy = _implicit_root(adam_l2_balance("rmsprop"))
    total = sp.simplify((sp.diff(slope, eps) + sp.diff(slope, y) * dy).subs(y, y0))
    return sp.limit(total, eps, 0)


def adam_l2_slow_eigenvalue_series() -> tuple[sp.Expr, sp.Expr]:
    """``(a1, a2)`` in ``t = 1 + a1 sqrt(eps) + a2 eps + ...``, the slow eigenvalue of Adam-L2's
    mean-field Jacobian at equilibrium, for symbolic ``beta1``. The Jacobian is conjugated by
    ``diag(1, s, s^2)`` (``s = sqrt(eps)``) so its entries are regular, expanded entrywise to
    ``O(eps)``, and ``t`` is solved order by order in the characteristic polynomial. It takes
    seconds, too slow for the identity catalogue; the tests run it."""
    s, a1, a2 = sp.symbols("s a_1 a_2")
    model = mean_field_model("adam")
    jacobian = sp.Matrix(mean_field_map("adam")).jacobian([x, p, q])
    jacobian = jacobian.subs(buffer_fixed_point("adam")).subs(c, model.step_scale)
    jacobian = jacobian.subs(x, _A * y).subs(_ADAM_SCALED).subs(eps, s**2)
    _, dy = _implicit_root(adam_l2_balance("adam"))
    jacobian = jacobian.subs(y, 1 + dy * s**2)  # the equilibrium to the order that matters
    scale = sp.diag(1, s, s**2)
    jacobian = (scale * jacobian * scale.inv()).applyfunc(lambda e: sp.series(e, s, 0, 3).removeO())
    characteristic = (t * sp.eye(3) - jacobian).det(method="berkowitz")
    poly = sp.expand(characteristic.subs(t, 1 + a1 * s + a2 * s**2))
    (first,) = sp.solve(poly.coeff(s, 1), a1)
    (second,) = sp.solve(poly.coeff(s, 2).subs(a1, first), a2)
    return first, sp.factor(second)


identity(
    name="adam_l2_balance",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 2 (Adam) and Sec. 5 (AdamW paragraph: L2 in Adam)",
    statement=r"x = Ay:\ \frac{c^*(x)}{c(x)} = \frac{y^{3/2}\sqrt{1+\epsilon y^2}}{1+r\epsilon y^2},\ "
    r"A = \left(\frac{\alpha g\sqrt d}{2\lambda}\right)^{2/3},\ \epsilon = \frac{\lambda^2A^2}{g^2}"
    r" = \left(\frac{\alpha^2 d\lambda}{4g}\right)^{2/3},\ r = \frac{1-\beta_1}{1+\beta_1}",
    claim=lambda: (
        adam_l2_balance("adam"),
        ADAM_NORM_SQ.subs(_ADAM_SCALED),
        ADAM_EPSILON.subs(_ADAM_SCALED),
    ),
    expected=lambda: (
        y ** sp.Rational(3, 2) * sp.sqrt(1 + eps * y**2) / (1 + r_beta * eps * y**2),
        _A,
        eps,
    ),
    control=lambda: (y ** sp.Rational(3, 2) / (1 + r_beta * eps * y**2), _A, eps),
    note="c(x) = alpha/sqrt(v_hat) is Adam's step scale, c*(x) the one that makes x stationary "
    "(buffer at its fixed point). The last two entries check that (A, eps) invert to (alpha, g).",
)

identity(
    name="adam_l2_norm_sq_leading_order",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5 (AdamW paragraph: L2 in Adam)",
    statement=r"\|\mathbf{w}_\infty\|^2 = \left(\frac{\alpha g\sqrt d}{2\lambda}\right)^{2/3}"
    r"\left(1 + \frac{2r-1}{3}\epsilon + O(\epsilon^2)\right)",
    claim=lambda: _implicit_root(adam_l2_balance("adam")),
    expected=lambda: (sp.Integer(1), (2 * r_beta - 1) / 3),
    control=lambda: (sp.Integer(1), (1 - 2 * r_beta) / 3),
    note="Implicit function theorem on the balance: y(0) = 1 and dy/deps = (2r - 1)/3. The "
    "exact balance is a quintic in x, so only the expansion closes. RMSprop is r = 1.",
)

identity(
    name="adam_l2_angular_update",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5 (AdamW paragraph: L2 in Adam)",
    statement=r"\cos\theta = \frac{g^2 - r\lambda^2x^2}{g^2 + r\lambda^2x^2}\ \text{at a stationary } x,"
    r"\quad\theta_\infty \approx 2\sqrt{r\epsilon}",
    claim=lambda: derived_cos_angle("adam"),
    expected=lambda: ADAM_COS_AT,
    control=lambda: (g**2 - lam**2 * x**2) / (g**2 + lam**2 * x**2),
    simplifier=sp.cancel,
)

identity(
    name="rmsprop_approach_rate_leading_order",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 2 (RMSprop) with coupled L2",
    statement=r"\frac{\partial x_{k+1}}{\partial x_k}\Big|_{x_\infty} = 1 - 6\epsilon + O(\epsilon^2)",
    claim=_rmsprop_slope,
    expected=lambda: sp.Integer(-6),
    control=lambda: sp.Integer(-4),
    note="beta1 = 0 leaves a one-dimensional map for x; v_hat follows x adiabatically.",
)


# ---------------------------------------------------------------- Adagrad: no equilibrium


def _adagrad_min_increment() -> sp.Expr:
    """Minimum over ``x > 0`` of the per-step growth ``E||G + lam w||^2 / d`` of Adagrad's
    per-coordinate accumulator."""
    increment = ADAM_V_HAT
    (x_min,) = sp.solve(sp.diff(increment, x), x)
    return sp.simplify(increment.subs(x, x_min))


identity(
    name="adagrad_accumulator_grows_linearly",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 2 (Adagrad vs RMSprop)",
    statement=r"\min_{x>0}\frac{g^2/x + \lambda^2 x}{d} = \frac{2g\lambda}{d}"
    r"\ \Rightarrow\ f_k \ge \frac{2g\lambda k}{d},\ \ \frac{\alpha}{\sqrt{f_k}} \le"
    r"\alpha\sqrt{\frac{d}{2g\lambda k}} \to 0",
    claim=_adagrad_min_increment,
    expected=lambda: 2 * g * lam / d,
    control=lambda: sp.Integer(0),
    note="Whatever the norm does, the accumulated squared gradient grows at least linearly in k, "
    "so Adagrad's step shrinks as O(1/sqrt(k)) and no stationary equilibrium exists.",
)
