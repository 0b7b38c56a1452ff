"""Weight-norm equilibrium of a scale-invariant weight vector under AdamW (decoupled weight decay),
in the mean-field model of :mod:`theory.mean_field` (converged isotropic second moment,
``beta2 -> 1``, ``eps -> 0``): Adam's scale-free update size, the exact fixed point, the angular
update and the approach rate; and the norm growth of Adam without weight decay (001 Sec. 4.3).
Each form is proved by an identity.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise.theory.equilibrium import alpha, g, k, lam, x, x0
from scalewise.theory.identity import identity
from scalewise.theory.mean_field import (
    HYPERPARAMETERS,
    MEAN_FIELD,
    SCALE_FREE_EFFECTIVE_LR,
    beta1,
    buffer_fixed_point,
    c,
    d,
    derived_characteristic,
    derived_cos_angle,
    derived_norm_sq,
    leading_slope,
    mean_field_model,
    on_hyperparameter_domain,
    q,
    r_beta,
    required_step_scale,
    rho,
    t,
)

ADAM_UPDATE_SQ = d * r_beta
"""Stationary ``E||m / sqrt(v_hat)||^2`` in the noise-driven model: scale-free, ``beta1`` and
``d`` only."""

ADAMW_NORM_SQ = alpha**2 * d * r_beta * (1 + rho * beta1) / ((1 - rho**2) * (1 - rho * beta1))
"""Exact mean-field equilibrium ``E||w||^2`` of AdamW; ``alpha d / (2 lam)`` to leading order."""

ADAMW_EFFECTIVE_LR = SCALE_FREE_EFFECTIVE_LR.subs(x, ADAMW_NORM_SQ)
"""``alpha / ||w||`` at equilibrium; ``sqrt(2 alpha lam / d)`` to leading order."""

ADAMW_COS_ANGLE = (rho + beta1) / (1 + rho * beta1)
"""``cos`` of AdamW's equilibrium angular update, ``rho = 1 - alpha lam``."""

ADAMW_TRACE = (rho**2 + 2 * beta1 * rho + beta1**2 * (2 - rho**2)) / (1 + beta1 * rho)
ADAMW_DET = beta1 * (beta1 + rho) / (1 + beta1 * rho)
"""Trace and determinant of the slow eigenvalue pair of AdamW's linearised mean-field map."""


_ADAMW_NAMED_SCALE = {g: alpha * sp.sqrt(d * x) / c}


@cache
def _adamw_d_at_equilibrium() -> sp.Expr:
    condition = sp.Eq(c, required_step_scale("adamw").subs(_ADAMW_NAMED_SCALE))
    (d_at_x,) = sp.solve(condition, d)
    return d_at_x


def _adamw_eliminate(expr: sp.Expr) -> sp.Expr:
    """Name the equilibrium step scale ``c`` (``g = alpha sqrt(d x) / c``) and solve the
    stationarity condition for ``d``: the Jacobian entries become rational."""
    return expr.subs(_ADAMW_NAMED_SCALE).subs(d, _adamw_d_at_equilibrium())


identity(
    name="adam_update_size",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 2 (Adam), noise-driven model",
    statement=r"\mathbb{E}\|\mathbf{m}/\sqrt{\hat{\mathbf{v}}}\|^2 = d\,\frac{1-\beta_1}{1+\beta_1}"
    r"\quad(\hat v = g^2/(d\|\mathbf{w}\|^2))",
    claim=lambda: sp.factor(
        (MEAN_FIELD["adamw"].step_scale / alpha) ** 2 * buffer_fixed_point("adamw")[q]
    ),
    expected=lambda: ADAM_UPDATE_SQ,
    control=lambda: d,
    simplifier=sp.cancel,
    note="The stationary EMA of white noise has (1-beta1)/(1+beta1) of its input's power; dividing "
    "by sqrt(v_hat) removes the scale g/||w||, so the update size is scale-free.",
)

identity(
    name="adamw_fixed_point_norm_sq",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5 (AdamW), Eq. (22); 004 Mechanism I",
    statement=r"\|\mathbf{w}_\infty\|^2 = \alpha^2 d\,\frac{1-\beta_1}{1+\beta_1}\,"
    r"\frac{1+\rho\beta_1}{(1-\rho^2)(1-\rho\beta_1)},\quad \rho = 1-\alpha\lambda",
    claim=lambda: derived_norm_sq("adamw"),
    expected=lambda: ADAMW_NORM_SQ,
    control=lambda: alpha * d / (2 * lam),
    simplifier=on_hyperparameter_domain,
    note="Exact for the mean-field map with converged isotropic v_hat; independent of g (Adam "
    "removes the gradient scale). The control is the leading-order value, which is not exact.",
)

identity(
    name="adamw_norm_sq_leading_order",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5 (AdamW)",
    statement=r"\lim_{\alpha\lambda\to0}\frac{\lambda}{\alpha}\|\mathbf{w}_\infty\|^2 = \frac{d}{2}",
    claim=lambda: sp.limit(derived_norm_sq("adamw") * lam / alpha, lam, 0),
    expected=lambda: d / 2,
    control=lambda: ADAM_UPDATE_SQ / 2,
    simplifier=sp.cancel,
    note="||w||^2 ~ alpha d/(2 lam), independent of beta1: momentum's smaller update and its "
    "correlation E<w,m> cancel at leading order. Effective LR alpha/||w|| ~ sqrt(2 alpha lam/d).",
)

identity(
    name="adamw_angular_update",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5 (AdamW)",
    statement=r"\cos\theta_\infty = \frac{\rho+\beta_1}{1+\rho\beta_1},\quad"
    r"1-\cos\theta_\infty = \frac{\alpha\lambda(1-\beta_1)}{1+\rho\beta_1}",
    claim=lambda: derived_cos_angle("adamw").subs(x, derived_norm_sq("adamw")),
    expected=lambda: ADAMW_COS_ANGLE,
    control=lambda: rho,
    simplifier=on_hyperparameter_domain,
    note="Derived with the momentum correlation E<w,m> = -c q/(1 - rho beta1). The control "
    "cos = 1 - alpha lam (angle ~ sqrt(2 alpha lam)) holds only at beta1 = 0.",
)

identity(
    name="adamw_angular_update_leading_order",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5 (AdamW)",
    statement=r"\lim_{\alpha\lambda\to0}\theta_\infty^2/(\alpha\lambda) = 2\,\frac{1-\beta_1}{1+\beta_1}",
    claim=lambda: sp.limit(sp.acos(ADAMW_COS_ANGLE) ** 2 / (alpha * lam), lam, 0),
    expected=lambda: 2 * r_beta,
    control=lambda: sp.Integer(2),
    simplifier=sp.cancel,
    note="theta ~ sqrt(2 alpha lam (1-beta1)/(1+beta1)) (Kosson et al. 2023 report the same): "
    "sqrt(2 alpha lam) is the beta1 = 0 case only.",
)

identity(
    name="adamw_approach_rate_characteristic",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5 (AdamW), mean-field map linearised",
    statement=r"\det(tI-\partial F) = (t-\beta_1^2\rho^2)(t^2 - Tt + D),\ "
    r"T = \frac{\rho^2+2\beta_1\rho+\beta_1^2(2-\rho^2)}{1+\beta_1\rho},\ "
    r"D = \frac{\beta_1(\beta_1+\rho)}{1+\beta_1\rho}",
    claim=lambda: derived_characteristic("adamw", _adamw_eliminate),
    expected=lambda: (t - beta1**2 * rho**2) * (t**2 - ADAMW_TRACE * t + ADAMW_DET),
    control=lambda: (t - beta1**2 * rho**2) * (t**2 - ADAMW_TRACE * t + beta1),
    simplifier=sp.cancel,
    note="v_hat follows ||w|| adiabatically (1/(1-beta2) << 1/(alpha lam)); at beta1 = 0 the "
    "rate is rho^2 = (1 - alpha lam)^2.",
)

identity(
    name="adamw_approach_rate_leading_order",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 5 (AdamW), mean-field map linearised",
    statement=r"t_{\max} = 1 - 2\alpha\lambda + O(\alpha^2\lambda^2)\quad\text{(any }\beta_1)",
    claim=lambda: leading_slope(t**2 - ADAMW_TRACE * t + ADAMW_DET),
    expected=lambda: sp.Integer(-2),
    control=lambda: -2 * r_beta,
    simplifier=sp.cancel,
    note="Half SGD's rate 1 - 4 alpha lam: Adam's step grows with ||w|| and partly offsets the "
    "decay.",
)

ADAM_NORM_GROWTH = alpha**2 * d
"""Per-step growth of ``E||w||^2`` under Adam (or RMSprop) without weight decay."""


def _growth_without_decay() -> sp.Expr:
    """``E||w'||^2 - x`` at ``lam = 0`` with the buffer at its (quasi-)stationary point."""
    model, no_decay = mean_field_model("adamw"), {lam: 0}
    buffer = {key: value.subs(no_decay) for key, value in buffer_fixed_point("adamw").items()}
    growth = (model.moments.norm_sq - x).subs(no_decay).subs(buffer)
    return sp.factor(growth.subs(c, model.step_scale))


identity(
    name="adam_norm_growth_without_weight_decay",
    topic="mean field",
    domain=HYPERPARAMETERS,
    source="001 Sec. 4.3 ('A similar analysis for Adam also gives ... O(1/sqrt(k))')",
    statement=r"\lambda = 0:\ \|\mathbf{w}_{k+1}\|^2 - \|\mathbf{w}_k\|^2 = \alpha^2 d"
    r"\ \Rightarrow\ \sqrt{k}\,\frac{\alpha}{\|\mathbf{w}_k\|}\to\frac{1}{\sqrt d}",
    claim=lambda: (
        _growth_without_decay(),
        sp.limit(sp.sqrt(k) * alpha / sp.sqrt(x0 + _growth_without_decay() * k), k, sp.oo),
    ),
    expected=lambda: (ADAM_NORM_GROWTH, 1 / sp.sqrt(d)),
    control=lambda: (ADAM_UPDATE_SQ * alpha**2, 1 / sp.sqrt(d)),
    simplifier=sp.cancel,
    note="The notes' claim holds with Adam's effective LR alpha/||w||: it decays as "
    "1/sqrt(d k), and, as for SGD, its late-time trend does not depend on alpha. The buffer's "
    "correlation with w (E<w,m> < 0, so -2 c E<w,m'> > 0) adds to the squared update size (the "
    "control, alpha^2 d (1-beta1)/(1+beta1)): the growth is alpha^2 d for any beta1.",
)
