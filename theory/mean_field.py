"""The mean-field model of a scale-invariant weight vector's norm under momentum SGD, AdamW, Adam
with L2 and RMSprop: one moment map for all of them, and the derivations built on it (fixed
points, angular updates, characteristic polynomials of the linearised map). The optimizers'
closed forms and identities are in :mod:`theory.momentum_sgd`, :mod:`theory.adamw` and
:mod:`theory.adam_l2`; plain SGD's, which need no mean field, in :mod:`theory.equilibrium`.

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
* Adagrad (coupled L2): ``f <- f + grad^2``; it has no equilibrium (:mod:`theory.adam_l2`).
* Nesterov SGD, Muon and Lion: the same map with a step direction other than the buffer and,
  for Muon and Lion, a step of fixed size (:func:`moment_step`'s ``direction_buffer``,
  ``direction_gain``, ``update_energy``); their forms are in :mod:`theory.lion_muon_nesterov`.

Mean-field model. ``x = E||w_k||^2``, ``p = E<w_k, m_k>``, ``q = E||m_k||^2`` (``m_k`` the buffer
before step ``k``). The only approximation is ``E[g^2 / ||w||^2] = g^2 / x``. For the adaptive
methods the second moment is taken isotropic and converged, ``v_hat = E||grad||^2 / d`` per
coordinate, with ``eps -> 0`` and bias corrections ``-> 1`` (late times): that needs
``1 << 1 / (1 - beta2) << 1 / (alpha lam)``, so ``v`` averages out the noise yet follows the slow
norm. Then every method is one map, :func:`moment_step`, with its own step scale ``c`` (the factor
multiplying the buffer in the weight update).

Conventions. The *effective learning rate* is the factor in front of a unit-scale direction in the
update of ``w_hat = w / ||w||``: ``alpha / ||w||^2`` for SGD and momentum SGD (the gradient at
unit norm times ``alpha / ||w||^2``, 001 Sec. 4.3) and ``alpha / ||w||`` for the Adam family
(:data:`SCALE_FREE_EFFECTIVE_LR`: their update size does not depend on ``||w||``, so one power of
``||w||`` remains). The *angular update* is the convention-free angle between ``w_k`` and
``w_{k+1}`` at equilibrium, ``arccos(E<w_k, w_{k+1}> / E||w||^2)``. The *approach rate* is the
per-step contraction factor of a small deviation from the equilibrium: the eigenvalue of largest
modulus of the mean-field map's Jacobian (its modulus ``sqrt(P)`` when the dominant pair
``t^2 - T t + P`` is complex).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from types import MappingProxyType
from typing import NamedTuple

import sympy as sp

from scalewise import checks
from scalewise.theory.equilibrium import STABLE, alpha, g, lam, x

mu, beta1, beta2, d = sp.symbols("mu beta_1 beta_2 d", positive=True)
p = sp.Symbol("p", real=True)  # E<w_k, m_k>
q = sp.Symbol("q", positive=True)  # E||m_k||^2
c = sp.Symbol("c", positive=True)  # step scale: w <- decay w - c m
t = sp.Symbol("t")  # eigenvalue of the linearised map

HYPERPARAMETERS = (*STABLE, mu < 1, beta1 < 1, beta2 < 1)
"""The domain of the mean-field identities beyond the symbols' positivity: weight decay shrinks
the weights (``0 < alpha lam < 1``, 001 Eq. 22), momentum, ``beta1`` and ``beta2`` below one."""

rho = 1 - alpha * lam
"""Decoupled decay factor of AdamW."""

r_beta = (1 - beta1) / (1 + beta1)
"""``E||m||^2 / E||G||^2`` of the stationary EMA ``m`` of white noise,
``(1-beta1)^2 / (1-beta1^2)``."""

SCALE_FREE_EFFECTIVE_LR = alpha / sp.sqrt(x)
"""Effective LR ``alpha / ||w||`` of the Adam family at ``x = ||w||^2`` (their update size does
not depend on ``||w||``, so only the division of the step by ``||w||`` remains)."""

scale_free_effective_lr = sp.lambdify((x, alpha), SCALE_FREE_EFFECTIVE_LR, "numpy")


# ---------------------------------------------------------------- the moment map


class MomentStep(NamedTuple):
    """One step of the mean-field moments, as expressions in ``x, p, q`` and the step scale ``c``:
    ``E||w'||^2``, ``E<w', m'>``, ``E||m'||^2`` and ``E<w, w'>``."""

    norm_sq: sp.Expr
    w_dot_buffer: sp.Expr
    buffer_sq: sp.Expr
    w_dot_next: sp.Expr


def moment_step(
    *, buffer_decay: sp.Expr, grad_gain: sp.Expr, coupled_wd: sp.Expr, decay_factor: sp.Expr,
    direction_buffer: sp.Expr | None = None, direction_gain: sp.Expr = 1,
    update_energy: sp.Expr | None = None, tangent_energy: sp.Expr | None = None,
) -> MomentStep:
    """Mean-field moments after ``m' = b m + A``, ``w' = rho w - c s`` with ``A = a (G + l w)``
    and the step direction ``s = h m + k A`` (``s = m'``, the buffer, unless said otherwise).

    ``b = buffer_decay``, ``a = grad_gain``, ``l = coupled_wd``, ``rho = decay_factor``,
    ``h = direction_buffer`` (default ``b``), ``k = direction_gain`` (default 1). With
    ``<G, w> = 0`` (001 Eq. 16), ``E<G, m> = 0`` (fresh noise) and ``E||G||^2 = g^2 / x``, and
    ``S = E||A||^2 = a^2 (g^2/x + l^2 x)``::

        P = E<w, m'>  = b p + a l x          Q = E||m'||^2 = b^2 q + 2 a b l p + S
        D = E<w, s>   = h p + k a l x        M = E<s, m'>  = h b q + (h + k b) a l p + k S
        E||s||^2 = h^2 q + 2 h k a l p + k^2 S
        E||w'||^2 = rho^2 x - 2 rho c D + U,  E<w', m'> = rho P - c M,  E<w, w'> = rho x - c D

    with the update's energy ``U = c^2 E||s||^2``, or ``update_energy`` where the update's size
    is fixed whatever its direction's (Muon's normalized step, Lion's signs): then ``c`` is the
    gain of the update's *correlations* with ``w`` and ``m'``, not of its size. Nesterov's step
    (``s = A + mu m'``) is ``h = mu b``, ``k = 1 + mu``.

    With ``tangent_energy`` (``tau``, the part of ``||c m'||^2`` orthogonal to ``w``, measured)
    the buffer's energy is not the mean field's but ``Q = (tau + c^2 P^2 / x) / c^2``: the
    measured tangential energy plus the radial energy ``<w_hat, c m'>^2`` the moments imply.
    Then the map is exact for one weight vector whatever its gradients' correlations
    (:mod:`theory.radial_update`): only ``<G, w> = 0`` remains. It applies to ``s = m'`` only.

    >>> step = moment_step(buffer_decay=0, grad_gain=1, coupled_wd=lam, decay_factor=1)
    >>> sp.factor(step.norm_sq.subs(c, alpha))  # plain SGD: 001 Eq. (23)
    (alpha**2*g**2 + alpha**2*lambda**2*x**2 - 2*alpha*lambda*x**2 + x**2)/x
    """
    b, a, l, h, k = (buffer_decay, grad_gain, coupled_wd,
                     buffer_decay if direction_buffer is None else direction_buffer,
                     direction_gain)
    signal = a**2 * (g**2 / x + l**2 * x)  # E||A||^2
    w_dot_new = b * p + a * l * x
    new_sq = b**2 * q + 2 * a * b * l * p + signal
    w_dot_direction = h * p + k * a * l * x
    direction_dot_new = h * b * q + (h + k * b) * a * l * p + k * signal
    direction_sq = h**2 * q + 2 * h * k * a * l * p + k**2 * signal
    if tangent_energy is not None:
        if direction_buffer is not None or direction_gain != 1 or update_energy is not None:
            checks.fail("tangent_energy", tangent_energy, "None unless the step is the buffer "
                        "(s = m', the default direction and update energy)")
        new_sq = direction_dot_new = direction_sq = (
            tangent_energy + c**2 * w_dot_new**2 / x) / c**2
    energy = c**2 * direction_sq if update_energy is None else update_energy
    return MomentStep(
        norm_sq=decay_factor**2 * x - 2 * decay_factor * c * w_dot_direction + energy,
        w_dot_buffer=decay_factor * w_dot_new - c * direction_dot_new,
        buffer_sq=new_sq,
        w_dot_next=decay_factor * x - c * w_dot_direction,
    )


def stationary_direction_sq(parameters: Mapping[str, sp.Expr]) -> sp.Expr:
    """``E||s||^2`` of :func:`moment_step`'s direction with the buffer at its stationary energy
    for the current ``x``, ``q = S / (1 - b^2)``, for a decay that is not in the gradient
    (``l = 0``): then ``q`` does not depend on the step, so neither does this."""
    if parameters.get("coupled_wd", 0) != 0:
        checks.fail("coupled_wd", parameters["coupled_wd"], "0 (a decoupled decay)")
    b = parameters["buffer_decay"]
    h = parameters.get("direction_buffer", b)
    k = parameters.get("direction_gain", 1)
    signal = parameters["grad_gain"] ** 2 * g**2 / x
    return sp.factor(signal * (h**2 / (1 - b**2) + k**2))


class MeanField(NamedTuple):
    """An optimizer's mean-field model: its moment map and its step scale ``c(x)``."""

    moments: MomentStep
    step_scale: sp.Expr


ADAM_V_HAT = (g**2 / x + lam**2 * x) / d
"""Converged per-coordinate second moment of Adam/RMSprop with L2: ``E||G + lam w||^2 / d``."""

MOMENT_PARAMETERS: Mapping[str, dict[str, sp.Expr]] = MappingProxyType({
    "sgdm": {"buffer_decay": mu, "grad_gain": 1, "coupled_wd": lam, "decay_factor": 1},
    # torch SGD with nesterov=True: s = (G + lam w) + mu m'
    "nesterov": {"buffer_decay": mu, "grad_gain": 1, "coupled_wd": lam, "decay_factor": 1,
                 "direction_buffer": mu**2, "direction_gain": 1 + mu},
    # AdamW's gradient carries no decay term; its decay is the decoupled shrink
    "adamw": {"buffer_decay": beta1, "grad_gain": 1 - beta1, "coupled_wd": 0, "decay_factor": rho},
    "adam": {"buffer_decay": beta1, "grad_gain": 1 - beta1, "coupled_wd": lam, "decay_factor": 1},
    # torch Muon (nesterov): m' = mu m + (1 - mu) G, s = (1 - mu) G + mu m', a unit-norm step
    "muon": {"buffer_decay": mu, "grad_gain": 1 - mu, "coupled_wd": 0, "decay_factor": rho,
             "direction_buffer": mu**2, "direction_gain": 1 + mu, "update_energy": alpha**2},
    # Lion: s = beta1 m + (1 - beta1) G, m' = beta2 m + (1 - beta2) G, the step sign(s)
    "lion": {"buffer_decay": beta2, "grad_gain": 1 - beta2, "coupled_wd": 0, "decay_factor": rho,
             "direction_buffer": beta1, "direction_gain": (1 - beta1) / (1 - beta2),
             "update_energy": alpha**2 * d},
})
"""The arguments of :func:`moment_step` that make each optimizer's update: torch's momentum
buffer (dampening 0) or Adam's first moment, the coupled L2 term, the decoupled shrink, and the
step's direction and energy where they are not the buffer's."""

SIGN_GAIN = sp.sqrt(2 / sp.pi)
"""``E[sign(X) Y] = sqrt(2/pi) E[X Y] / sigma_X`` for jointly Gaussian zero-mean ``X, Y``
(Bussgang's theorem; identity ``sign_correlation_gain``): the linear part of a sign."""

MEAN_FIELD: Mapping[str, MeanField] = MappingProxyType(
    {
        "sgdm": MeanField(moment_step(**MOMENT_PARAMETERS["sgdm"]), alpha),
        "nesterov": MeanField(moment_step(**MOMENT_PARAMETERS["nesterov"]), alpha),
        # v_hat = E||G||^2 / d = g^2 / (d x)
        "adamw": MeanField(moment_step(**MOMENT_PARAMETERS["adamw"]), alpha * sp.sqrt(d * x) / g),
        "adam": MeanField(moment_step(**MOMENT_PARAMETERS["adam"]), alpha / sp.sqrt(ADAM_V_HAT)),
        # the step s / ||s||: its correlations are those of s divided by ||s||
        "muon": MeanField(moment_step(**MOMENT_PARAMETERS["muon"]),
                          alpha / sp.sqrt(stationary_direction_sq(MOMENT_PARAMETERS["muon"]))),
        # the step sign(s): its correlations are those of s times sqrt(2/pi) / (||s|| / sqrt(d))
        "lion": MeanField(moment_step(**MOMENT_PARAMETERS["lion"]), alpha * SIGN_GAIN * sp.sqrt(
            d / stationary_direction_sq(MOMENT_PARAMETERS["lion"]))),
    }
)
"""Mean-field models by optimizer; RMSprop is ``"adam"`` at ``beta1 = 0`` and SGD ``"sgdm"`` at
``mu = 0``. Muon's and Lion's step scales take the direction's stationary energy at the current
norm (:func:`stationary_direction_sq`): ``||s||`` concentrates in high dimension, and the buffer
relaxes in ``1 / (1 - b)`` steps, fast against the norm's ``1 / (alpha lam)``."""


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


# ---------------------------------------------------------------- derivations on the map


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
    return sp.factor(positive_root(sp.solve(balance, c)))


@cache
def derived_norm_sq(optimizer: str) -> sp.Expr:
    """Equilibrium ``x*``: the positive root of ``E||w'||^2 = x`` with the buffer at its fixed
    point and the step scale ``c(x)`` substituted (exact where the balance is a polynomial SymPy
    solves: every optimizer but Adam with L2, whose balance is a quintic)."""
    model = mean_field_model(optimizer)
    balance = (model.moments.norm_sq - x).subs(buffer_fixed_point(optimizer))
    return positive_root(sp.solve(sp.numer(sp.together(balance.subs(c, model.step_scale))), x))


def equilibrium_cos_angle(optimizer: str) -> sp.Expr:
    """``E<w, w'> / x`` at the equilibrium :func:`derived_norm_sq`."""
    model = mean_field_model(optimizer)
    cos = (model.moments.w_dot_next / x).subs(buffer_fixed_point(optimizer))
    return cos.subs(c, model.step_scale).subs(x, derived_norm_sq(optimizer))


def adiabatic_norm_map(optimizer: str) -> sp.Expr:
    """``E||w'||^2`` as a function of ``x`` alone, the buffer at its fixed point for that ``x``:
    the norm's map where the buffer relaxes (in ``1 / (1 - b)`` steps) fast against the norm
    (``1 / (alpha lam)``). Its slope at the equilibrium is the approach rate to leading order."""
    model = mean_field_model(optimizer)
    return model.moments.norm_sq.subs(buffer_fixed_point(optimizer)).subs(c, model.step_scale)


_SAMPLE = {
    alpha: sp.Rational(1, 10),
    lam: 1,
    g: 1,
    mu: sp.Rational(1, 2),
    beta1: sp.Rational(1, 2),
    beta2: sp.Rational(3, 4),
    d: 4,
    x: 1,
}


def positive_root(roots: list[sp.Expr]) -> sp.Expr:
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
    taking the square root of the negative discriminant in the branch it does not select.)

    >>> dominant_root(sp.Integer(3), sp.Integer(2)), dominant_root(sp.Integer(1), sp.Integer(4))
    (2, 2)
    """
    return sp.Piecewise(
        (trace / 2 + sp.sign(trace) * sp.sqrt(sp.Max(trace**2 / 4 - det, 0)), trace**2 >= 4 * det),
        (sp.sqrt(det), True),
    )


def leading_slope(quadratic: sp.Expr) -> sp.Expr:
    """``d t / d(alpha lam)`` at ``alpha lam = 0`` for the root ``t = 1`` of ``quadratic(t) = 0``
    (implicit differentiation; ``alpha lam`` enters only through ``lam``)."""
    at_origin = {t: 1, lam: 0}
    slope = -sp.diff(quadratic, lam) / sp.diff(quadratic, t)
    return sp.factor(slope.subs(at_origin) / alpha)


_s, _m, _b, _b2 = sp.symbols("sigma_lam sigma_mu sigma_beta sigma_beta2", positive=True)


def on_hyperparameter_domain(expr: sp.Expr) -> sp.Expr:
    """Simplify on :data:`HYPERPARAMETERS`, ``0 < alpha lam < 1``, ``0 < mu < 1``,
    ``0 < beta1 < 1``: each is written as ``s / (1 + s)`` with ``s > 0``
    (``lam = s / (alpha (1 + s))``), so square roots of products such as
    ``(1 - mu)(2 + 2 mu - alpha lam)`` are real and SymPy may split them."""
    domain = {lam: _s / (alpha * (1 + _s)), mu: _m / (1 + _m), beta1: _b / (1 + _b),
              beta2: _b2 / (1 + _b2)}
    expr = sp.sympify(expr).subs(domain)
    expr = expr.replace(lambda e: e.is_Pow, lambda e: sp.Pow(sp.factor(e.base), e.exp))
    return sp.simplify(expr)
