"""Weight-norm equilibrium of a scale-invariant weight vector under SGD with momentum ``mu``
and coupled weight decay (torch SGD, dampening 0, no Nesterov), in the mean-field model of
:mod:`theory.mean_field`: the exact fixed point, the angular update, the effective learning rate
and the approach rate, each proved by an identity. At ``mu = 0`` every form is plain SGD's
(:mod:`theory.equilibrium`, 001 Eq. 23-25).
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise.theory.equilibrium import WD_EFFECTIVE_LR, WD_NORM_SQ, alpha, g, lam, x
from scalewise.theory.identity import identity
from scalewise.theory.mean_field import (
    HYPERPARAMETERS,
    derived_characteristic,
    derived_cos_angle,
    derived_norm_sq,
    leading_slope,
    mu,
    on_hyperparameter_domain,
    positive_root,
    required_step_scale,
    t,
)

SGDM_NORM_SQ = alpha * g * sp.sqrt(
    (1 + mu) / (alpha * lam * (1 - mu) * (2 * (1 + mu) - alpha * lam))
)
"""Exact mean-field equilibrium ``E||w||^2`` of SGD with momentum and coupled weight decay."""

SGDM_EFFECTIVE_LR = alpha / SGDM_NORM_SQ
"""``alpha / ||w||^2`` at equilibrium,
``sqrt(alpha lam (1-mu)(2(1+mu) - alpha lam)/(1+mu)) / g``."""

SGDM_COS_ANGLE = 1 - alpha * lam / (1 + mu)
"""``cos`` of the equilibrium angular update of momentum SGD."""

SGDM_TRACE = 1 + mu - 4 * alpha * lam + 2 * (alpha * lam) ** 2 / (1 + mu)
"""Trace ``T`` of the slow eigenvalue pair ``t^2 - T t + mu`` of momentum SGD's linearised map."""


@cache
def _sgdm_g_at_equilibrium() -> sp.Expr:
    return positive_root(sp.solve(sp.Eq(alpha, required_step_scale("sgdm")), g))


def _sgdm_eliminate(expr: sp.Expr) -> sp.Expr:
    """Replace ``g`` by its value at a given equilibrium ``x`` (SGDM's ``g`` enters as ``g^2``)."""
    return expr.subs(g, _sgdm_g_at_equilibrium())


identity(
    name="sgdm_fixed_point_norm_sq",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Eq. (23) extended to momentum (torch SGD, dampening 0)",
    statement=r"\|\mathbf{w}_\infty\|^2 = \alpha g\sqrt{\frac{1+\mu}"
    r"{\alpha\lambda(1-\mu)(2(1+\mu)-\alpha\lambda)}}",
    claim=lambda: derived_norm_sq("sgdm"),
    expected=lambda: SGDM_NORM_SQ,
    control=lambda: alpha * g * sp.sqrt((1 + mu) / (alpha * lam * (2 * (1 + mu) - alpha * lam))),
    simplifier=on_hyperparameter_domain,
    note="Fixed point of the mean-field map of (E||w||^2, E<w,m>, E||m||^2); at equilibrium "
    "E<w,m> = -lam x/(1+mu). Exact for the mean-field recurrence; the control drops (1 - mu).",
)

identity(
    name="sgdm_reduces_to_sgd",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Eq. (24)-(25), Sec. 5.1",
    statement=r"\mu = 0:\ \|\mathbf{w}_\infty\|^2,\ \hat\alpha_\infty,\ \cos\theta_\infty"
    r"\ \text{equal the SGD forms}\ \frac{\alpha g}{\sqrt{\alpha\lambda(2-\alpha\lambda)}},"
    r"\ \frac{\sqrt{\alpha\lambda(2-\alpha\lambda)}}{g},\ 1-\alpha\lambda",
    claim=lambda: (
        derived_norm_sq("sgdm").subs(mu, 0),
        (alpha / derived_norm_sq("sgdm")).subs(mu, 0),
        derived_cos_angle("sgdm").subs(x, derived_norm_sq("sgdm")).subs(mu, 0),
    ),
    expected=lambda: (WD_NORM_SQ, WD_EFFECTIVE_LR, 1 - alpha * lam),
    control=lambda: (WD_NORM_SQ, WD_EFFECTIVE_LR, 1 - 2 * alpha * lam),
    simplifier=on_hyperparameter_domain,
)

identity(
    name="sgdm_angular_update",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5.1 (rotational equilibrium with momentum)",
    statement=r"\cos\theta_\infty = 1 - \frac{\alpha\lambda}{1+\mu},\quad"
    r"\theta_\infty \approx \sqrt{2\alpha\lambda/(1+\mu)}",
    claim=lambda: derived_cos_angle("sgdm").subs(x, derived_norm_sq("sgdm")),
    expected=lambda: SGDM_COS_ANGLE,
    control=lambda: 1 - alpha * lam / (1 - mu),
    simplifier=on_hyperparameter_domain,
    note="E<w_k, w_{k+1}> / E||w||^2 at the fixed point: the angle depends on alpha*lambda and mu "
    "only, not on g. Agrees with the leading order sqrt(2 alpha lam/(1+mu)) reported "
    "by Wan et al. (2021) and Kosson et al. (2023).",
)

identity(
    name="sgdm_angular_update_leading_order",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5.1",
    statement=r"\lim_{\alpha\lambda\to0}\theta_\infty^2/(\alpha\lambda) = 2/(1+\mu)",
    claim=lambda: sp.limit(sp.acos(SGDM_COS_ANGLE) ** 2 / (alpha * lam), lam, 0),
    expected=lambda: 2 / (1 + mu),
    control=lambda: 2 / (1 - mu),
    simplifier=sp.cancel,
)

identity(
    name="sgdm_effective_lr_leading_order",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Eq. (25) extended to momentum",
    statement=r"\lim_{\alpha\lambda\to0}\hat\alpha_\infty/\sqrt{\alpha\lambda} = \sqrt{2(1-\mu)}/g",
    claim=lambda: sp.limit(alpha / derived_norm_sq("sgdm") / sp.sqrt(alpha * lam), lam, 0),
    expected=lambda: sp.sqrt(2 * (1 - mu)) / g,
    control=lambda: sp.sqrt(2 / (1 - mu)) / g,
    simplifier=on_hyperparameter_domain,
    note="alpha/||w||^2 is sqrt(1-mu) times SGD's at equal alpha*lam (momentum makes the weights "
    "larger); the convention-free angular update is sqrt(2 alpha lam/(1+mu)) instead.",
)

identity(
    name="sgdm_approach_rate_characteristic",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Eq. (23) linearised, with momentum",
    statement=r"\det(tI - \partial F) = (t-\mu^2)\left(t^2 - Tt + \mu\right),\ "
    r"T = 1+\mu-4\alpha\lambda+\frac{2\alpha^2\lambda^2}{1+\mu}",
    claim=lambda: derived_characteristic("sgdm", _sgdm_eliminate),
    expected=lambda: (t - mu**2) * (t**2 - SGDM_TRACE * t + mu),
    control=lambda: (t - mu**2) * (t**2 - (1 + mu - 4 * alpha * lam) * t + mu),
    simplifier=sp.cancel,
    note="Jacobian of the (x, p, q) map at the fixed point; the slow root of the quadratic is the "
    "approach rate (mu = 0: 1 - 4 alpha lam + 2 alpha^2 lam^2, the SGD rate).",
)

identity(
    name="sgdm_approach_rate_leading_order",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Eq. (23) linearised, with momentum",
    statement=r"t_{\max} = 1 - \frac{4\alpha\lambda}{1-\mu} + O(\alpha^2\lambda^2)",
    claim=lambda: leading_slope(t**2 - SGDM_TRACE * t + mu),
    expected=lambda: -4 / (1 - mu),
    control=lambda: -4 / (1 + mu),
    simplifier=sp.cancel,
    note="Momentum speeds the approach by 1/(1-mu), the terminal-velocity factor of 001 Sec. 2.",
)
