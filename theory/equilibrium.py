"""Norm dynamics of a scale-invariant weight vector under SGD: growth without weight decay and
the weight-decay equilibrium, its effective learning rate, angular update and approach rate.

Notation (001 = the lecture notes): ``x = ||w||^2``, ``alpha`` the learning rate, ``lam`` the
weight decay, ``g = ||grad J(w_hat)||`` the gradient norm at unit weight norm, ``k`` the step.

The one recurrence everything here derives from, and which ``sim`` iterates, is
:data:`NORM_SQ_STEP` (001 Eq. 23; Eq. 19 when ``lam = 0``)::

    x_{k+1} = (1 - alpha lam)^2 x_k + alpha^2 g^2 / x_k

It is exact for SGD because the gradient of a scale-invariant cost is orthogonal to ``w`` (001
Eq. 16 with degree 0) and has norm ``g / ||w||`` (001 Eq. 18).
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise.theory.identity import identity, slip
from scalewise.theory.symbolic import vector

alpha, lam, g, x, x0, k = sp.symbols("alpha lambda g x x_0 k", positive=True)

NORM_SQ_STEP = (1 - alpha * lam) ** 2 * x + alpha**2 * g**2 / x
"""``||w_{k+1}||^2`` as a function of ``x = ||w_k||^2`` (001 Eq. 23)."""

EFFECTIVE_LR = alpha / x
"""Effective learning rate ``alpha / ||w||^2`` of the normalized weights (001 Sec. 4.3)."""

ANGULAR_UPDATE = sp.atan(alpha * g / ((1 - alpha * lam) * x))
"""Angle between ``w_k`` and ``w_{k+1}`` for one SGD step: the step ``alpha ||grad J(w)||
= alpha g / ||w||`` is orthogonal to the decayed weight ``(1 - alpha lam) w``."""


STABLE = (alpha * lam < 1,)
"""The domain of the weight-decay statements beyond positivity: ``0 < alpha lam < 1``, the only
range where weight decay shrinks the weights (001 Eq. 22)."""

_s = sp.Symbol("s", positive=True)


def on_stable_domain(expr: sp.Expr) -> sp.Expr:
    """Simplify ``expr`` on :data:`STABLE`, ``0 < alpha lam < 1``. The substitution ``lam = s / (alpha (1 + s))``, ``s > 0``, maps
    onto exactly that range, so SymPy may take square roots such as ``sqrt(2 - alpha lam)`` as
    real; powers are factored first so that ``sqrt((1 + s)^2)`` becomes ``1 + s``."""
    expr = sp.sympify(expr).subs(lam, _s / (alpha * (1 + _s)))
    expr = expr.replace(lambda e: e.is_Pow, lambda e: sp.Pow(sp.factor(e.base), e.exp))
    return sp.simplify(expr)


def _tangent_pair(n: int) -> tuple[sp.Matrix, sp.Matrix]:
    """A generic ``w`` and a generic vector ``v`` orthogonal to it (``u`` with its ``w``
    component removed), as the gradient of a scale-invariant cost is (001 Eq. 16)."""
    w, u = vector("w", n), vector("u", n)
    v = u - (u.dot(w) / w.dot(w)) * w
    return w, v


def _pythagoras_sum(n: int, step_power: int) -> sp.Expr:
    """``||w||^2 + alpha^step_power ||v||^2`` for the tangent pair of size ``n``."""
    w, v = _tangent_pair(n)
    return w.dot(w) + alpha**step_power * v.dot(v)


# ---------------------------------------------------------------- norm growth without WD

identity(
    name="norm_growth_pythagoras",
    topic="equilibrium",
    source="001 Eq. (19)",
    statement=r"\mathbf{w}\perp\nabla\mathcal{J}(\mathbf{w}) \Rightarrow "
    r"\|\mathbf{w}-\alpha\nabla\mathcal{J}(\mathbf{w})\|^2"
    r" = \|\mathbf{w}\|^2 + \alpha^2\|\nabla\mathcal{J}(\mathbf{w})\|^2",
    claim=lambda n: sp.expand(sum((wi - alpha * vi) ** 2 for wi, vi in zip(*_tangent_pair(n)))),
    expected=lambda n: _pythagoras_sum(n, 2),
    control=lambda n: _pythagoras_sum(n, 1),
    sizes=(2, 3),
    simplifier=sp.cancel,
    note="The step is orthogonal to w, so the squared norm grows by exactly the squared step.",
)

slip(
    seed="001",
    place="Eq. (19), first line",
    says=r"$\|\mathbf{w}^{(k+1)}\|^2 = \|\mathbf{w}^{(k)} + \alpha\nabla\mathcal{J}\|^2$",
    truth=r"the SGD step subtracts the gradient: $\|\mathbf{w}^{(k)} - \alpha\nabla\mathcal{J}\|^2$;"
    r" the result is the same because the cross term vanishes either way",
    identity="norm_growth_pythagoras",
)

identity(
    name="norm_growth_recurrence",
    topic="equilibrium",
    source="001 Eq. (19), Eq. (18)",
    statement=r"\|\mathbf{w}_{k+1}\|^2 = \|\mathbf{w}_k\|^2"
    r" + \alpha^2\|\nabla\mathcal{J}(\hat{\mathbf{w}}_k)\|^2 / \|\mathbf{w}_k\|^2",
    # ||grad J(w)||^2 = g^2 / ||w||^2 by homogeneity of degree -1 (001 Eq. 18)
    claim=lambda: x + alpha**2 * (g / sp.sqrt(x)) ** 2,
    expected=lambda: NORM_SQ_STEP.subs(lam, 0),
    control=lambda: x + alpha**2 * g**2,
    note="Pythagoras with ||grad J(w)|| = ||grad J(w_hat)|| / ||w||.",
)


@cache
def growth_solution() -> sp.Expr:
    """Continuous-time solution ``x(k)`` of ``dx/dk = alpha^2 g^2 / x``, ``x(0) = x0``: the
    limit of the recurrence when each step changes ``x`` little (001 Sec. 4.3)."""
    f = sp.Function("f")
    ode = sp.Eq(f(k).diff(k), alpha**2 * g**2 / f(k))
    solutions = sp.dsolve(ode, f(k), ics={f(0): x0})
    solutions = solutions if isinstance(solutions, list) else [solutions]
    return next(s.rhs for s in solutions if s.rhs.subs(k, 0) == x0)


GROWTH_K0 = x0**2 / (2 * alpha**2 * g**2)
"""The time scale ``k0`` of 001 Sec. 4.3: ``||w_k||^2 = ||w_0||^2 sqrt(1 + k/k0)``."""

identity(
    name="norm_growth_sqrt_law",
    topic="equilibrium",
    source="001 Sec. 4.3 (after Eq. 19)",
    statement=r"\|\mathbf{w}_k\|^2 = \|\mathbf{w}_0\|^2\sqrt{1 + k/k_0},\quad"
    r" k_0 = \frac{\|\mathbf{w}_0\|^4}{2\alpha^2\|\nabla\mathcal{J}(\hat{\mathbf{w}})\|^2}",
    claim=growth_solution,
    expected=lambda: x0 * sp.sqrt(1 + k / GROWTH_K0),
    control=lambda: x0 * sp.sqrt(1 + k / (2 * GROWTH_K0)),
    note="Solved with dsolve from the continuous limit of the recurrence; the notes state the "
    "law with an unspecified k0, derived here.",
)

identity(
    name="norm_growth_discrete_lower_bound",
    topic="equilibrium",
    source="001 Eq. (19)",
    statement=r"x_{k+1}^2 - x_k^2 = 2\alpha^2 g^2 + \alpha^4 g^4 / x_k^2"
    r" \;\Rightarrow\; x_k^2 \ge x_0^2 + 2\alpha^2 g^2 k",
    claim=lambda: sp.expand(NORM_SQ_STEP.subs(lam, 0) ** 2 - x**2),
    expected=lambda: 2 * alpha**2 * g**2 + alpha**4 * g**4 / x**2,
    control=lambda: 2 * alpha**2 * g**2,
    note="The discrete recurrence grows x^2 by at least the continuous rate each step, so the "
    "square-root law is a lower bound that becomes tight as x grows.",
)

identity(
    name="effective_lr_decay_law",
    topic="equilibrium",
    source="001 Sec. 4.3 (after Eq. 19)",
    statement=r"\hat\alpha_k = \frac{\hat\alpha_0}{\sqrt{1 + k/k_0}}",
    claim=lambda: EFFECTIVE_LR.subs(x, growth_solution()),
    expected=lambda: (alpha / x0) / sp.sqrt(1 + k / GROWTH_K0),
    control=lambda: (alpha / x0) / (1 + k / GROWTH_K0),
)

identity(
    name="effective_lr_late_time_independent_of_lr",
    topic="equilibrium",
    source="001 Sec. 4.3 and Fig. 6",
    statement=r"\lim_{k\to\infty}\sqrt{k}\,\hat\alpha_k"
    r" = \frac{1}{\sqrt{2}\,\|\nabla\mathcal{J}(\hat{\mathbf{w}})\|}"
    r"\quad\text{(no dependence on }\alpha)",
    claim=lambda: sp.limit(sp.sqrt(k) * EFFECTIVE_LR.subs(x, growth_solution()), k, sp.oo),
    expected=lambda: 1 / (sp.sqrt(2) * g),
    control=lambda: alpha / (sp.sqrt(2) * g),
    note="All learning rates share one late-time trend: alpha only sets the transient.",
)

# ---------------------------------------------------------------- weight-decay equilibrium


@cache
def wd_fixed_point() -> sp.Expr:
    """Positive fixed point ``x*`` of :data:`NORM_SQ_STEP` for ``0 < alpha lam < 1``
    (001 Eq. 24, exact form)."""
    roots = sp.solve(sp.Eq(x, NORM_SQ_STEP), x)
    return next(r for r in roots if r.subs({alpha: 1, lam: sp.Rational(1, 2), g: 1}).is_positive)


WD_NORM_SQ = alpha * g / sp.sqrt(alpha * lam * (2 - alpha * lam))
"""Exact equilibrium ``||w||^2`` under SGD with weight decay."""

WD_EFFECTIVE_LR = sp.sqrt(alpha * lam * (2 - alpha * lam)) / g
"""Exact equilibrium effective learning rate ``alpha / ||w*||^2``."""

WD_APPROACH_RATE = (1 - alpha * lam) ** 2 - alpha * lam * (2 - alpha * lam)
"""Contraction factor of the deviation from ``x*`` per step (the map's slope at ``x*``)."""

identity(
    name="wd_fixed_point_exact",
    topic="equilibrium",
    domain=STABLE,
    source="001 Eq. (23)-(24)",
    statement=r"\|\mathbf{w}_\infty\|^2 = \frac{\alpha g}{\sqrt{\alpha\lambda(2-\alpha\lambda)}}",
    claim=wd_fixed_point,
    expected=lambda: WD_NORM_SQ,
    control=lambda: alpha * g / sp.sqrt(2 * alpha * lam),
    note="Solved exactly with sympy.solve; valid for 0 < alpha*lambda < 1.",
    simplifier=on_stable_domain,
)

identity(
    name="wd_fixed_point_leading_order",
    topic="equilibrium",
    domain=STABLE,
    source="001 Eq. (24)",
    statement=r"\|\mathbf{w}_\infty\|^2 \approx g\sqrt{\alpha/(2\lambda)}"
    r"\quad(\text{ratio}\to 1 \text{ as } \alpha\lambda\to 0)",
    claim=lambda: sp.limit(wd_fixed_point() / (g * sp.sqrt(alpha / (2 * lam))), lam, 0),
    expected=lambda: sp.Integer(1),
    control=lambda: sp.limit(wd_fixed_point() / (g * sp.sqrt(alpha / lam)), lam, 0),
)

identity(
    name="wd_effective_lr",
    topic="equilibrium",
    domain=STABLE,
    source="001 Eq. (25)",
    statement=r"\hat\alpha_\infty = \sqrt{\alpha\lambda(2-\alpha\lambda)}/g"
    r" \approx \sqrt{2\alpha\lambda}/g",
    claim=lambda: EFFECTIVE_LR.subs(x, wd_fixed_point()),
    expected=lambda: WD_EFFECTIVE_LR,
    control=lambda: sp.sqrt(alpha * lam) / g,
    simplifier=on_stable_domain,
)

identity(
    name="wd_effective_lr_leading_order",
    topic="equilibrium",
    domain=STABLE,
    source="001 Eq. (25)",
    statement=r"\lim_{\alpha\lambda\to0}\hat\alpha_\infty / \sqrt{2\alpha\lambda} = 1/g",
    claim=lambda: sp.limit(EFFECTIVE_LR.subs(x, wd_fixed_point()) / sp.sqrt(2 * alpha * lam), lam, 0),
    expected=lambda: 1 / g,
    # the slides' asymptote alpha lam (000, Mechanism I): its ratio to sqrt(2 alpha lam) vanishes
    control=lambda: sp.limit(alpha * lam / g / sp.sqrt(2 * alpha * lam), lam, 0),
    note="The control is the slides' asymptote alpha lam / g, of lower order than "
    "sqrt(2 alpha lam) / g.",
)

slip(
    seed="000",
    place="weight decay slides, Mechanism I (line 412)",
    says=r"the effective learning rate asymptotes to $\alpha\lambda$",
    truth=r"$\hat\alpha_\infty = \sqrt{\alpha\lambda(2-\alpha\lambda)} \approx \sqrt{2\alpha\lambda}$"
    r" (unit gradient norm), as the notes' Eq. (25) states",
    identity="wd_effective_lr",
)

slip(
    seed="001",
    place="Eq. (24)-(25)",
    says=r"$\|\mathbf{w}_\infty\|^2 \approx \sqrt{\alpha/2\lambda}$, $\hat\alpha_\infty \approx \sqrt{2\alpha\lambda}$",
    truth=r"with gradient norm $g$ at unit weight norm: $\|\mathbf{w}_\infty\|^2 \approx g\sqrt{\alpha/2\lambda}$"
    r" and $\hat\alpha_\infty \approx \sqrt{2\alpha\lambda}/g$; the notes' values are the case $g = 1$"
    r" they assume, and both are leading order in $\alpha\lambda$ (exact: $\alpha g/\sqrt{\alpha\lambda(2-\alpha\lambda)}$)",
    identity="wd_fixed_point_exact",
)

identity(
    name="wd_equilibrium_angular_update",
    topic="equilibrium",
    domain=STABLE,
    source="001 Sec. 5.1 (Eq. 23-25)",
    statement=r"\cos\theta_\infty = 1 - \alpha\lambda,\quad"
    r"\theta_\infty = \arccos(1-\alpha\lambda) \approx \sqrt{2\alpha\lambda}",
    claim=lambda: sp.cos(ANGULAR_UPDATE.subs(x, wd_fixed_point())),
    expected=lambda: 1 - alpha * lam,
    control=lambda: 1 - 2 * alpha * lam,
    note="At equilibrium each step rotates w by an angle fixed by alpha*lambda alone, "
    "independent of the gradient norm.",
    simplifier=on_stable_domain,
)

identity(
    name="wd_approach_rate",
    topic="equilibrium",
    domain=STABLE,
    source="001 Eq. (23) (linearised at the fixed point)",
    statement=r"\frac{x_{k+1}-x_\infty}{x_k-x_\infty}\to (1-\alpha\lambda)^2 - \alpha\lambda(2-\alpha\lambda)"
    r" = 1 - 4\alpha\lambda + 2\alpha^2\lambda^2",
    claim=lambda: sp.diff(NORM_SQ_STEP, x).subs(x, wd_fixed_point()),
    expected=lambda: WD_APPROACH_RATE,
    control=lambda: (1 - alpha * lam) ** 2,
    note="Deviations shrink by this factor per step: about 1/(4 alpha lambda) steps per e-fold.",
    simplifier=on_stable_domain,
)


# ---------------------------------------------------------------- read back from measurements

theta = sp.Symbol("theta", positive=True)

UNIT_STEP_FROM_ANGLE = (1 - alpha * lam) * x * sp.tan(theta) / alpha
"""The step at unit weight norm ``g`` that turns ``w`` (``x = ||w||^2``) by ``theta`` in one
step ``w+ = (1 - alpha lam) w - alpha d``, ``d`` orthogonal to ``w``: :data:`ANGULAR_UPDATE`
solved for ``g``."""

identity(
    name="unit_step_from_angle",
    topic="equilibrium",
    domain=(*STABLE, theta < sp.pi / 2),
    source="001 Eq. (23) (the step orthogonal to the decayed weight)",
    statement=r"\tan\theta = \frac{\alpha g}{(1-\alpha\lambda)\|\mathbf{w}\|^2}"
    r"\iff g = \frac{(1-\alpha\lambda)\|\mathbf{w}\|^2\tan\theta}{\alpha}",
    claim=lambda: sp.solve(sp.Eq(sp.tan(theta), sp.tan(ANGULAR_UPDATE)), g),
    expected=lambda: [UNIT_STEP_FROM_ANGLE],
    control=lambda: [x * sp.tan(theta) / alpha],
    note="Reads the gradient norm at unit weight norm back from a measured angular update "
    "(K-FAC's steps, whose norm is not the gradient's); the control forgets the decay.",
)

GROWTH_LINEAR_VARIABLE = (x / x0) ** 2 - 1
"""``(x_k / x_0)^2 - 1``: along the square-root law it is ``k / k0``, a line through the origin
of slope ``1 / k0``, the form in which ``k0`` is fitted to a measured curve."""

identity(
    name="norm_growth_linearized",
    topic="equilibrium",
    source="001 Sec. 4.3 (after Eq. 19)",
    statement=r"\left(\frac{\|\mathbf{w}_k\|^2}{\|\mathbf{w}_0\|^2}\right)^2 - 1 = \frac{k}{k_0}",
    claim=lambda: sp.expand(GROWTH_LINEAR_VARIABLE.subs(x, growth_solution())),
    expected=lambda: k / GROWTH_K0,
    control=lambda: k / (2 * GROWTH_K0),
    note="The square-root law is a line through the origin in these variables.",
)

rate = sp.Symbol("t", real=True)

TIME_CONSTANT = -1 / sp.log(sp.Abs(rate))
"""Steps per e-fold of a deviation that shrinks by the approach rate ``t`` per step; for
``t < 0`` (an oscillating approach, SGD at ``alpha lam > 1 - 1/sqrt(2)``) the envelope's."""

identity(
    name="wd_time_constant_leading_order",
    topic="equilibrium",
    domain=STABLE,
    source="001 Eq. (23) (linearised at the fixed point)",
    statement=r"\tau = -\frac{1}{\ln|1-4\alpha\lambda+2\alpha^2\lambda^2|}"
    r"\approx\frac{1}{4\alpha\lambda}",
    claim=lambda: sp.limit(alpha * lam * TIME_CONSTANT.subs(rate, WD_APPROACH_RATE), lam, 0),
    expected=lambda: sp.Rational(1, 4),
    control=lambda: sp.Rational(1, 2),
    note="The settling time a run needs: a few time constants.",
)


# ---------------------------------------------------------------- NumPy forms for sim/ and models/
# Lambdified once from the expressions above: the simulators never retype a formula.

norm_sq_step = sp.lambdify((x, alpha, lam, g), NORM_SQ_STEP, "numpy")
effective_lr = sp.lambdify((x, alpha), EFFECTIVE_LR, "numpy")
angular_update = sp.lambdify((x, alpha, lam, g), ANGULAR_UPDATE, "numpy")
growth_k0 = sp.lambdify((x0, alpha, g), GROWTH_K0, "numpy")
growth_norm_sq = sp.lambdify((k, x0, alpha, g), x0 * sp.sqrt(1 + k / GROWTH_K0), "numpy")
wd_norm_sq = sp.lambdify((alpha, lam, g), WD_NORM_SQ, "numpy")
wd_effective_lr = sp.lambdify((alpha, lam, g), WD_EFFECTIVE_LR, "numpy")
wd_angular_update = sp.lambdify((alpha, lam), sp.acos(1 - alpha * lam), "numpy")
wd_approach_rate = sp.lambdify((alpha, lam), WD_APPROACH_RATE, "numpy")
unit_step_from_angle = sp.lambdify((theta, x, alpha, lam), UNIT_STEP_FROM_ANGLE, "numpy")
growth_linear_variable = sp.lambdify((x, x0), GROWTH_LINEAR_VARIABLE, "numpy")
time_constant = sp.lambdify(rate, TIME_CONSTANT, "numpy")
