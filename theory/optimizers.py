"""Weight-norm equilibria of a scale-invariant weight vector under momentum SGD, AdamW, Adam with
L2, RMSprop and Adagrad (item 7 of the identity catalogue), next to plain SGD from
:mod:`theory.equilibrium`.

Setting. ``w`` in ``R^d`` is scale-invariant: every gradient ``G_k`` is orthogonal to ``w_k`` and
has norm ``g / ||w_k||`` (001 Eqs. 16-18; ``g`` is the gradient norm at unit weight norm). In the
noise-driven model the direction of ``G_k`` is uniform in the tangent space and independent across
steps, so ``E<G_k, anything from the past> = 0``. The optimizers follow ``torch.optim`` exactly:

* SGD with momentum ``mu`` (dampening 0, no Nesterov), coupled weight decay:
  ``m <- mu m + G + lam w``, ``w <- w - alpha m``.
* AdamW: ``m <- beta1 m + (1 - beta1) G``,
  ``w <- (1 - alpha lam) w - alpha m_hat / (sqrt(v_hat) + eps)``.
* Adam (coupled L2): the same with ``G + lam w`` in place of ``G`` and no decoupled decay.
* RMSprop (coupled L2, no momentum): ``v <- beta2 v + (1 - beta2) grad^2``; torch calls the
  smoothing constant ``alpha`` (default 0.99), here it is ``beta2`` to keep ``alpha`` the learning
  rate. It is Adam with L2 at ``beta1 = 0``. (All forms are the ``beta2 -> 1`` limit below, so
  ``beta2`` appears in none of them.)
* Adagrad (coupled L2): ``f <- f + grad^2``; it has no equilibrium (:data:`NO_EQUILIBRIUM`).

Mean-field model. ``x = E||w_k||^2``, ``p = E<w_k, m_k>``, ``q = E||m_k||^2`` (``m_k`` the buffer
before step ``k``). The only approximation is ``E[g^2 / ||w||^2] = g^2 / x``. For the adaptive
methods the second moment is taken isotropic and converged, ``v_hat = E||grad||^2 / d`` per
coordinate, with ``eps -> 0`` and bias corrections ``-> 1`` (late times): that needs
``1 << 1 / (1 - beta2) << 1 / (alpha lam)``, so ``v`` averages out the noise yet follows the slow
norm. Then every method is one map, :func:`moment_step`, with its own step scale ``c`` (the factor
multiplying the buffer in the weight update).

Conventions. The *effective learning rate* is the factor in front of a unit-scale direction in the
update of ``w_hat = w / ||w||``: ``alpha / ||w||^2`` for SGD and momentum SGD (the gradient at
unit norm times ``alpha / ||w||^2``, 001 Sec. 4.3) and ``alpha / ||w||`` for the Adam family (their
update size does not depend on ``||w||``, so one power of ``||w||`` remains). The *angular
update* is the convention-free angle between ``w_k`` and ``w_{k+1}`` at equilibrium,
``arccos(E<w_k, w_{k+1}> / E||w||^2)``. The *approach rate* is the per-step contraction factor
of a small deviation from the equilibrium: the eigenvalue of largest modulus of the mean-field
map's Jacobian (its modulus ``sqrt(P)`` when the dominant pair ``t^2 - T t + P`` is complex).

The closed forms are written once as module constants, proved by the registered identities, and
collected in :data:`EQUILIBRIA` (``Equilibrium.numpy()`` lambdifies them for ``sim``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.theory.equilibrium import (
    WD_APPROACH_RATE,
    WD_EFFECTIVE_LR,
    WD_NORM_SQ,
    alpha,
    g,
    k,
    lam,
    x,
    x0,
)
from scalewise.theory.identity import identity
from scalewise.vocabulary import Optimizer

mu, beta1, beta2, d = sp.symbols("mu beta_1 beta_2 d", positive=True)
p = sp.Symbol("p", real=True)  # E<w_k, m_k>
q = sp.Symbol("q", positive=True)  # E||m_k||^2
c = sp.Symbol("c", positive=True)  # step scale: w <- decay w - c m
t = sp.Symbol("t")  # eigenvalue of the linearised map
# Adam with L2: the norm in units of its leading order, and (lam x / g)^2
y, eps = sp.symbols("y epsilon", positive=True)

rho = 1 - alpha * lam
"""Decoupled decay factor of AdamW."""

r_beta = (1 - beta1) / (1 + beta1)
"""``E||m||^2 / E||G||^2`` of the stationary EMA ``m`` of white noise,
``(1-beta1)^2 / (1-beta1^2)``."""


# ---------------------------------------------------------------- the mean-field moment map


class MomentStep(NamedTuple):
    """One step of the mean-field moments, as expressions in ``x, p, q`` and the step scale ``c``:
    ``E||w'||^2``, ``E<w', m'>``, ``E||m'||^2`` and ``E<w, w'>``."""

    norm_sq: sp.Expr
    w_dot_buffer: sp.Expr
    buffer_sq: sp.Expr
    w_dot_next: sp.Expr


def moment_step(
    *, buffer_decay: sp.Expr, grad_gain: sp.Expr, coupled_wd: sp.Expr, decay_factor: sp.Expr
) -> MomentStep:
    """Mean-field moments after ``m' = b m + a (G + l w)``, ``w' = rho w - c m'``.

    ``b = buffer_decay``, ``a = grad_gain``, ``l = coupled_wd``, ``rho = decay_factor``. With
    ``<G, w> = 0`` (001 Eq. 16), ``E<G, m> = 0`` (fresh noise) and ``E||G||^2 = g^2 / x``::

        P = E<w, m'>  = b p + a l x
        Q = E||m'||^2 = b^2 q + a^2 (g^2/x + l^2 x) + 2 a b l p
        E||w'||^2 = rho^2 x - 2 rho c P + c^2 Q,   E<w', m'> = rho P - c Q,   E<w, w'> = rho x - c P
    """
    w_dot_new = buffer_decay * p + grad_gain * coupled_wd * x
    new_sq = (
        buffer_decay**2 * q
        + grad_gain**2 * (g**2 / x + coupled_wd**2 * x)
        + 2 * buffer_decay * grad_gain * coupled_wd * p
    )
    return MomentStep(
        norm_sq=decay_factor**2 * x - 2 * decay_factor * c * w_dot_new + c**2 * new_sq,
        w_dot_buffer=decay_factor * w_dot_new - c * new_sq,
        buffer_sq=new_sq,
        w_dot_next=decay_factor * x - c * w_dot_new,
    )


class MeanField(NamedTuple):
    """An optimizer's mean-field model: its moment map and its step scale ``c(x)``."""

    moments: MomentStep
    step_scale: sp.Expr


ADAM_V_HAT = (g**2 / x + lam**2 * x) / d
"""Converged per-coordinate second moment of Adam/RMSprop with L2: ``E||G + lam w||^2 / d``."""

MEAN_FIELD: Mapping[str, MeanField] = MappingProxyType(
    {
        "sgdm": MeanField(
            moment_step(buffer_decay=mu, grad_gain=1, coupled_wd=lam, decay_factor=1), alpha
        ),
        # v_hat = E||G||^2 / d = g^2 / (d x): AdamW's gradient carries no decay term
        "adamw": MeanField(
            moment_step(buffer_decay=beta1, grad_gain=1 - beta1, coupled_wd=0, decay_factor=rho),
            alpha * sp.sqrt(d * x) / g,
        ),
        "adam": MeanField(
            moment_step(buffer_decay=beta1, grad_gain=1 - beta1, coupled_wd=lam, decay_factor=1),
            alpha / sp.sqrt(ADAM_V_HAT),
        ),
    }
)
"""Mean-field models by optimizer; RMSprop is ``"adam"`` at ``beta1 = 0`` and SGD ``"sgdm"`` at
``mu = 0``."""


def mean_field_map(optimizer: str) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """The map ``(x, p, q) -> (x', p', q')`` of ``optimizer`` with its step scale substituted."""
    model = mean_field_model(optimizer)
    step = model.moments
    return tuple(e.subs(c, model.step_scale) for e in step[:3])


def mean_field_model(optimizer: str) -> MeanField:
    """The mean-field model of ``optimizer`` (``"sgdm"``, ``"adamw"``, ``"adam"``, ``"rmsprop"``)."""
    if optimizer == "rmsprop":
        adam = MEAN_FIELD["adam"]
        return MeanField(MomentStep(*(e.subs(beta1, 0) for e in adam.moments)), adam.step_scale)
    if optimizer not in MEAN_FIELD:
        checks.one_of("optimizer", optimizer, sorted([*MEAN_FIELD, "rmsprop"]))
    return MEAN_FIELD[optimizer]


@cache
def buffer_fixed_point(optimizer: str) -> dict[sp.Symbol, sp.Expr]:
    """Stationary ``p`` and ``q`` for given ``x`` and step scale ``c`` (two linear equations)."""
    step = mean_field_model(optimizer).moments
    solution = sp.solve([sp.Eq(p, step.w_dot_buffer), sp.Eq(q, step.buffer_sq)], [p, q], dict=True)
    return {key: sp.factor(value) for key, value in solution[0].items()}


@cache
def required_step_scale(optimizer: str) -> sp.Expr:
    """The step scale ``c*(x)`` at which ``x`` is stationary, the buffer being at its fixed point:
    the positive root ``c`` of ``E||w'||^2 = x``."""
    step = mean_field_model(optimizer).moments
    balance = sp.factor(step.norm_sq.subs(buffer_fixed_point(optimizer)) - x)
    return sp.factor(_positive_root(sp.solve(balance, c)))


@cache
def derived_norm_sq(optimizer: str) -> sp.Expr:
    """Equilibrium ``x*`` solving ``c(x) = c*(x)`` (exact for ``"sgdm"`` and ``"adamw"``)."""
    balance = sp.Eq(mean_field_model(optimizer).step_scale, required_step_scale(optimizer))
    return _positive_root(sp.solve(balance, x))


_SAMPLE = {
    alpha: sp.Rational(1, 10),
    lam: 1,
    g: 1,
    mu: sp.Rational(1, 2),
    beta1: sp.Rational(1, 2),
    d: 4,
    x: 1,
}


def _positive_root(roots: list[sp.Expr]) -> sp.Expr:
    """The root that is positive inside the hyperparameter domain (tested at one interior point;
    the roots SymPy returns differ in sign there)."""
    (root,) = [r for r in roots if r.subs(_SAMPLE).is_positive]
    return root


def derived_cos_angle(optimizer: str) -> sp.Expr:
    """``E<w, w'> / x`` at a stationary point (``E||w'||^2 = x``), as a function of ``x``."""
    step = mean_field_model(optimizer).moments
    cos = (step.w_dot_next / x).subs(buffer_fixed_point(optimizer))
    cos = cos.subs(c, required_step_scale(optimizer))
    return sp.factor(cos)


def derived_characteristic(optimizer: str, eliminate: Callable[[sp.Expr], sp.Expr]) -> sp.Expr:
    """Monic characteristic polynomial in ``t`` of the mean-field map's Jacobian at equilibrium.

    ``eliminate`` rewrites an expression at the fixed point with one parameter solved from the
    equilibrium condition, which makes every entry rational (so the factorisation is exact)."""
    model = mean_field_model(optimizer)
    jacobian = sp.Matrix(mean_field_map(optimizer)).jacobian([x, p, q])
    at_fixed_point = buffer_fixed_point(optimizer)
    entries = jacobian.subs(at_fixed_point).subs(c, model.step_scale)
    entries = entries.applyfunc(lambda e: sp.cancel(eliminate(e)))
    poly = sp.Poly(sp.cancel((t * sp.eye(3) - entries).det()), t)
    return sp.factor(poly.as_expr() / poly.LC())


def dominant_root(trace: sp.Expr, det: sp.Expr) -> sp.Expr:
    """Root of largest modulus of ``t^2 - trace t + det`` (``det > 0``), signed when real;
    ``sqrt(det)``, the common modulus, when the pair is complex. (``Max`` only keeps NumPy from
    taking the square root of the negative discriminant in the branch it does not select.)"""
    return sp.Piecewise(
        (trace / 2 + sp.sign(trace) * sp.sqrt(sp.Max(trace**2 / 4 - det, 0)), trace**2 >= 4 * det),
        (sp.sqrt(det), True),
    )


def _leading_slope(quadratic: sp.Expr) -> sp.Expr:
    """``d t / d(alpha lam)`` at ``alpha lam = 0`` for the root ``t = 1`` of ``quadratic(t) = 0``
    (implicit differentiation; ``alpha lam`` enters only through ``lam``)."""
    at_origin = {t: 1, lam: 0}
    slope = -sp.diff(quadratic, lam) / sp.diff(quadratic, t)
    return sp.factor(slope.subs(at_origin) / alpha)


_s, _m, _b = sp.symbols("sigma_lam sigma_mu sigma_beta", positive=True)


def on_hyperparameter_domain(expr: sp.Expr) -> sp.Expr:
    """Simplify for ``0 < alpha lam < 1``, ``0 < mu < 1``, ``0 < beta1 < 1``: each is written as
    ``s / (1 + s)`` with ``s > 0`` (``lam = s / (alpha (1 + s))``), so square roots of products
    such as ``(1 - mu)(2 + 2 mu - alpha lam)`` are real and SymPy may split them."""
    domain = {lam: _s / (alpha * (1 + _s)), mu: _m / (1 + _m), beta1: _b / (1 + _b)}
    expr = sp.sympify(expr).subs(domain)
    expr = expr.replace(lambda e: e.is_Pow, lambda e: sp.Pow(sp.factor(e.base), e.exp))
    return sp.simplify(expr)


# ---------------------------------------------------------------- momentum SGD

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
    return _positive_root(sp.solve(sp.Eq(alpha, required_step_scale("sgdm")), g))


def _sgdm_eliminate(expr: sp.Expr) -> sp.Expr:
    """Replace ``g`` by its value at a given equilibrium ``x`` (SGDM's ``g`` enters as ``g^2``)."""
    return expr.subs(g, _sgdm_g_at_equilibrium())


identity(
    name="sgdm_fixed_point_norm_sq",
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
    source="001 Sec. 5.1",
    statement=r"\lim_{\alpha\lambda\to0}\theta_\infty^2/(\alpha\lambda) = 2/(1+\mu)",
    claim=lambda: sp.limit(sp.acos(SGDM_COS_ANGLE) ** 2 / (alpha * lam), lam, 0),
    expected=lambda: 2 / (1 + mu),
    control=lambda: 2 / (1 - mu),
    simplifier=sp.cancel,
)

identity(
    name="sgdm_effective_lr_leading_order",
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
    source="001 Eq. (23) linearised, with momentum",
    statement=r"t_{\max} = 1 - \frac{4\alpha\lambda}{1-\mu} + O(\alpha^2\lambda^2)",
    claim=lambda: _leading_slope(t**2 - SGDM_TRACE * t + mu),
    expected=lambda: -4 / (1 - mu),
    control=lambda: -4 / (1 + mu),
    simplifier=sp.cancel,
    note="Momentum speeds the approach by 1/(1-mu), the terminal-velocity factor of 001 Sec. 2.",
)


# ---------------------------------------------------------------- AdamW (decoupled weight decay)

ADAM_UPDATE_SQ = d * r_beta
"""Stationary ``E||m / sqrt(v_hat)||^2`` in the noise-driven model: scale-free, ``beta1`` and
``d`` only."""

SCALE_FREE_EFFECTIVE_LR = alpha / sp.sqrt(x)
"""Effective LR ``alpha / ||w||`` of the Adam family at ``x = ||w||^2`` (their update size does
not depend on ``||w||``, so only the division of the step by ``||w||`` remains)."""

scale_free_effective_lr = sp.lambdify((x, alpha), SCALE_FREE_EFFECTIVE_LR, "numpy")

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
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
    source="001 Sec. 5 (AdamW), mean-field map linearised",
    statement=r"t_{\max} = 1 - 2\alpha\lambda + O(\alpha^2\lambda^2)\quad\text{(any }\beta_1)",
    claim=lambda: _leading_slope(t**2 - ADAMW_TRACE * t + ADAMW_DET),
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
    topic="optimizers",
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


# ---------------------------------------------------------------- Adam and RMSprop, coupled L2
# The decay lam w enters the gradient, so it is divided by sqrt(v_hat) ~ g / sqrt(d x): the
# balance no longer closes exactly (a quintic in x). Write x = A y with the leading-order norm A
# and eps = (lam A / g)^2, the relative size of the decay term in the second moment: the
# equilibrium is y = 1 + (2 r - 1) eps / 3 + O(eps^2), r = (1 - beta1)/(1 + beta1).

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
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
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
    topic="optimizers",
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

NO_EQUILIBRIUM: Mapping[str, str] = MappingProxyType(
    {
        "adagrad": "the accumulator f_k = sum of squared gradients grows at least by 2 g lam / d "
        "per step and coordinate (identity adagrad_accumulator_grows_linearly; without weight "
        "decay the norm itself grows), so the step alpha/sqrt(f_k) decays as O(1/sqrt(k)): the "
        "norm, effective LR and angular update keep drifting and have no stationary value",
    }
)
"""Optimizers without a stationary equilibrium, and why."""

# ---------------------------------------------------------------- the catalogue of equilibria


@dataclass(frozen=True)
class Equilibrium:
    """Closed forms of one optimizer's equilibrium, as SymPy expressions in ``alpha`` (lr),
    ``lam`` (weight decay), ``g`` (gradient norm at unit weight norm), ``mu`` (momentum),
    ``beta_1`` and ``d`` (dimension); see the module docstring for the conventions."""

    optimizer: str
    norm_sq: sp.Expr
    effective_lr: sp.Expr
    angular_update: sp.Expr
    approach_rate: sp.Expr | None
    exact: bool
    assumptions: str
    source: str

    def numpy(self) -> Callable[..., dict[str, np.ndarray]]:
        """``f(*, lr, weight_decay, grad_norm=1.0, momentum=0.0, beta1=0.9, beta2=0.999,
        dim=None) -> {"norm_sq", "effective_lr", "angular_update", "approach_rate"}``,
        broadcasting over array arguments (``approach_rate`` is NaN where not derived).
        ``beta2`` is validated only: the forms are its ``beta2 -> 1`` limit. ``dim`` is
        required by the Adam family. Lambdified once per equilibrium."""
        return _numpy_form(self)


_SYMBOLS = (alpha, lam, g, mu, beta1, d)
def _validated(
    optimizer: str, *, lr, weight_decay, grad_norm, momentum, beta1_value, beta2_value, dim
):
    """The arguments of :data:`_SYMBOLS` as float arrays, or a ``ValueError`` naming the culprit."""
    properties = Optimizer(optimizer).properties
    lr_array = checks.positive("lr", lr)
    wd_array = checks.positive("weight_decay", weight_decay)
    if properties.shrinks(properties.decay):
        checks.decay_factor(lr_array, wd_array)
    momentum_array = checks.unit_interval("momentum", momentum)
    if not properties.uses_momentum and np.any(momentum_array != 0):
        checks.fail("momentum", momentum, f"0 for {optimizer!r} (momentum SGD is 'sgdm')")
    checks.unit_interval("beta2", beta2_value)
    dim_array = np.asarray(np.nan)
    if properties.adaptive:
        if dim is None or np.any(np.asarray(dim) != np.round(dim)):
            checks.fail("dim", dim, f"an integer >= 2 for {optimizer!r}")
        dim_array = checks.in_interval("dim", dim, 2.0)
    return (lr_array, wd_array, checks.positive("grad_norm", grad_norm), momentum_array,
            checks.unit_interval("beta1", beta1_value), dim_array)


@cache
def _numpy_form(equilibrium: Equilibrium) -> Callable[..., dict[str, np.ndarray]]:
    approach = sp.nan if equilibrium.approach_rate is None else equilibrium.approach_rate
    expressions = {
        "norm_sq": equilibrium.norm_sq,
        "effective_lr": equilibrium.effective_lr,
        "angular_update": equilibrium.angular_update,
        "approach_rate": approach,
    }
    functions = {key: sp.lambdify(_SYMBOLS, e, "numpy") for key, e in expressions.items()}

    def evaluate(
        *, lr, weight_decay, grad_norm=1.0, momentum=0.0, beta1=0.9, beta2=0.999, dim=None
    ):
        args = _validated(
            equilibrium.optimizer,
            lr=lr,
            weight_decay=weight_decay,
            grad_norm=grad_norm,
            momentum=momentum,
            beta1_value=beta1,
            beta2_value=beta2,
            dim=dim,
        )
        shape = np.broadcast_shapes(*(a.shape for a in args))
        return {
            key: np.broadcast_to(np.asarray(f(*args), dtype=float), shape).copy()
            for key, f in functions.items()
        }

    return evaluate


_MEAN_FIELD_ASSUMPTIONS = (
    "scale-invariant w (gradient orthogonal to w, norm g/||w||); gradient direction uniform in "
    "the tangent space and independent across steps; mean field E[g^2/||w||^2] = g^2/E||w||^2"
)
_ADAPTIVE_ASSUMPTIONS = (
    _MEAN_FIELD_ASSUMPTIONS + "; v_hat converged and isotropic, E||grad||^2/d per coordinate "
    "(beta2 -> 1 with 1/(1-beta2) << 1/(alpha lam), so v follows ||w||); eps -> 0; late times "
    "(bias corrections -> 1)"
)

_PER_COORDINATE = (
    "the decay term is divided by the per-coordinate sqrt(v_hat_i), whose true noise part is "
    "(g^2/x)(1 - w_hat_i^2)/(d - 1), not the isotropic g^2/(d x): this and the fluctuations of "
    "v give O(1/d) relative corrections (about 1% at d = 32 on a sphere simulation)"
)

EQUILIBRIA: Mapping[str, Equilibrium] = MappingProxyType(
    {
        "sgd": Equilibrium(
            optimizer="sgd",
            norm_sq=WD_NORM_SQ,
            effective_lr=WD_EFFECTIVE_LR,
            angular_update=sp.acos(1 - alpha * lam),
            approach_rate=WD_APPROACH_RATE,
            exact=True,
            assumptions="scale-invariant w (gradient orthogonal to w, norm g/||w||); the norm "
            "recurrence is then deterministic and exact for any gradient directions",
            source="001 Eq. (23)-(25), Sec. 5.1; theory.equilibrium",
        ),
        "sgdm": Equilibrium(
            optimizer="sgdm",
            norm_sq=SGDM_NORM_SQ,
            effective_lr=SGDM_EFFECTIVE_LR,
            angular_update=sp.acos(SGDM_COS_ANGLE),
            approach_rate=dominant_root(SGDM_TRACE, mu),
            exact=True,
            assumptions=_MEAN_FIELD_ASSUMPTIONS + "; torch SGD momentum (dampening 0, no "
            "Nesterov), coupled weight decay; exact for the mean-field recurrence",
            source="001 Eq. (23)-(25) with momentum; identities sgdm_*",
        ),
        "adamw": Equilibrium(
            optimizer="adamw",
            norm_sq=ADAMW_NORM_SQ,
            effective_lr=ADAMW_EFFECTIVE_LR,
            angular_update=sp.acos(ADAMW_COS_ANGLE),
            approach_rate=dominant_root(ADAMW_TRACE, ADAMW_DET),
            exact=True,
            assumptions=_ADAPTIVE_ASSUMPTIONS + "; decoupled decay w <- (1 - alpha lam) w; exact "
            "for the mean-field recurrence in these limits",
            source="001 Sec. 2 (Adam), Sec. 5 (AdamW); identities adamw_*, adam_update_size",
        ),
        "adam": Equilibrium(
            optimizer="adam",
            norm_sq=ADAM_NORM_SQ,
            effective_lr=ADAM_EFFECTIVE_LR,
            angular_update=sp.acos(ADAM_COS_ANGLE),
            approach_rate=ADAM_APPROACH_RATE,
            exact=False,
            assumptions=_ADAPTIVE_ASSUMPTIONS + "; coupled L2 (grad + lam w, also inside v_hat); "
            "leading order in eps = (alpha^2 d lam/(4 g))^(2/3), next term "
            "x* = A(1 + (2r-1) eps/3) with r = (1-beta1)/(1+beta1); the exact mean-field balance "
            "is a quintic in x; the approach rate's next term is relatively O(eps/(1-beta1)^2); "
            + _PER_COORDINATE,
            source="001 Sec. 2 (Adam), Sec. 5 (AdamW paragraph); identities adam_l2_*",
        ),
        "rmsprop": Equilibrium(
            optimizer="rmsprop",
            norm_sq=ADAM_NORM_SQ,
            effective_lr=ADAM_EFFECTIVE_LR,
            angular_update=sp.acos(ADAM_COS_ANGLE.subs(beta1, 0)),
            approach_rate=ADAM_APPROACH_RATE,
            exact=False,
            assumptions=_ADAPTIVE_ASSUMPTIONS + "; torch RMSprop with smoothing constant beta2 "
            "(torch's alpha), no momentum, no bias correction (irrelevant at late times), coupled "
            "L2; leading order in eps = (alpha^2 d lam/(4 g))^(2/3), next term "
            "x* = A(1 + eps/3); beta1 is not used; " + _PER_COORDINATE,
            source="001 Sec. 2 (RMSprop); identities adam_l2_*, "
            "rmsprop_approach_rate_leading_order",
        ),
    }
)
"""Equilibrium closed forms by optimizer name (``"sgd"``, ``"sgdm"``, ``"adam"``, ``"adamw"``,
``"rmsprop"``)."""
