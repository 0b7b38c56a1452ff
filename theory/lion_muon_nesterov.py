"""Weight-norm equilibria of Nesterov momentum SGD, Muon and Lion on a scale-invariant weight
vector, in the mean-field model of :mod:`theory.mean_field` (its moment map with a step
direction other than the buffer, :func:`~theory.mean_field.moment_step`).

The updates (``G`` the gradient, ``m`` the buffer, ``mu``/``beta`` their constants):

* Nesterov SGD (``torch.optim.SGD(nesterov=True)``): ``m' = mu m + G + lam w``,
  ``w' = w - alpha (G + lam w + mu m')``.
* Muon (``torch.optim.Muon``, Jordan et al. 2024): ``m' = mu m + (1 - mu) G``,
  ``s = (1 - mu) G + mu m'``, ``w' = (1 - alpha lam) w - alpha polar(s)``. For a weight vector
  (a ``1 x d`` matrix) the polar factor is ``s / ||s||``: a step of size ``alpha`` exactly.
* Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):
  ``s = beta1 m + (1 - beta1) G``, ``w' = (1 - alpha lam) w - alpha sign(s)``,
  ``m' = beta2 m + (1 - beta2) G``: a step of size ``alpha sqrt(d)`` exactly.

Assumptions (those of the mean field, :data:`theory.equilibria._MEAN_FIELD_ASSUMPTIONS`, plus):
the gradient noise dominates (the gradient direction uniform in the tangent space, independent
across steps); Muon's and Lion's steps have a fixed size, and only their *correlation* with ``w``
and ``m`` follows the linear part of the normalization: ``E<w, s/||s||> = E<w, s> / ||s||`` with
``||s||`` at its stationary value (it concentrates in high dimension ``d``), and for the sign
Bussgang's theorem for jointly Gaussian coordinates (:data:`SIGN_GAIN`, identity
``sign_correlation_gain``), which needs ``d`` large so that each coordinate of ``s`` is a sum of
many independent contributions; the buffer relaxes (``1 / (1 - beta)`` steps) fast against the
norm (``1 / (alpha lam)``). Nesterov's forms are exact for the mean-field recurrence.

Each form is derived from the moment map; the identities state the leading orders in
``alpha lam`` in closed form and check them exactly against the derivation.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise.theory.equilibrium import alpha, g, lam, x
from scalewise.theory.identity import identity
from scalewise.theory.mean_field import (
    HYPERPARAMETERS,
    SCALE_FREE_EFFECTIVE_LR,
    SIGN_GAIN,
    adiabatic_norm_map,
    beta1,
    beta2,
    d,
    derived_norm_sq,
    equilibrium_cos_angle,
    mu,
    on_hyperparameter_domain,
)

OPTIMIZERS = ("nesterov", "muon", "lion")

UPDATE_ENERGY = {"muon": alpha**2, "lion": alpha**2 * d}
"""``||u||^2`` of the scale-free steps: ``alpha`` times a unit polar factor, ``alpha`` times
``d`` signs."""

_LION_SPREAD = 1 + beta2 - 2 * beta1 * (1 + beta2 - beta1)
"""``(1 + beta2) E||s||^2 / ((1 - beta2) S)``: the stationary energy of Lion's interpolation
``s`` relative to one gradient's, up to the buffer's factor."""

ANGLE_FACTOR = {
    "nesterov": (1 + 2 * mu - 2 * mu**3) / (1 + mu),
    "muon": (1 - mu) * (1 + 2 * mu - 2 * mu**3) / (1 + mu),
    "lion": sp.pi * _LION_SPREAD / (sp.pi * _LION_SPREAD + 4 * beta1 * (1 + beta2 - beta1)),
}
"""``K`` of the leading-order angular update ``sqrt(2 K alpha lam)``
(``1 - cos = K alpha lam + O((alpha lam)^2)``); ``K = 1`` for SGD and for any scale-free step
uncorrelated with ``w``."""


@cache
def norm_sq(optimizer: str) -> sp.Expr:
    """Equilibrium ``E||w||^2`` (:func:`theory.mean_field.derived_norm_sq`)."""
    return derived_norm_sq(optimizer)


@cache
def cos_angle(optimizer: str) -> sp.Expr:
    """``E<w, w'> / E||w||^2`` at the equilibrium."""
    return equilibrium_cos_angle(optimizer)


@cache
def approach_rate(optimizer: str) -> sp.Expr:
    """The slope of the adiabatic norm map (:func:`theory.mean_field.adiabatic_norm_map`) at
    the equilibrium: the per-step contraction of a deviation of the norm once the buffer has
    relaxed."""
    return sp.diff(adiabatic_norm_map(optimizer), x).subs(x, norm_sq(optimizer))


def effective_lr(optimizer: str) -> sp.Expr:
    """``alpha / ||w||^2`` (Nesterov) or ``alpha / ||w||`` (Muon, Lion: scale-free) at the
    equilibrium."""
    if optimizer == "nesterov":
        return alpha / norm_sq(optimizer)
    return SCALE_FREE_EFFECTIVE_LR.subs(x, norm_sq(optimizer))


def _leading(expr: sp.Expr) -> sp.Expr:
    """``expr`` at ``alpha lam -> 0`` (``lam -> 0`` with ``alpha`` fixed)."""
    return sp.factor(sp.limit(sp.simplify(expr), lam, 0))


def _angle_factor(optimizer: str) -> sp.Expr:
    return _leading((1 - cos_angle(optimizer)) / (alpha * lam))


for _name, _label in (("nesterov", "Nesterov SGD"), ("muon", "Muon"), ("lion", "Lion")):
    identity(
        name=f"{_name}_angular_update_leading_order",
        topic="beyond the seeds: Nesterov, Muon, Lion",
        domain=HYPERPARAMETERS,
        source={"nesterov": "Sutskever et al. 2013 (Nesterov momentum as torch.optim.SGD); "
                            "derived here",
                "muon": "Jordan et al. 2024 (Muon; torch.optim.Muon); derived here",
                "lion": "Chen et al. 2023, Program 1 (Lion); derived here"}[_name],
        statement=rf"\text{{{_label}: }}1-\cos\theta^* = K\,\alpha\lambda + O((\alpha\lambda)^2),"
        rf"\ K = {sp.latex(ANGLE_FACTOR[_name])}",
        claim=lambda n=_name: _angle_factor(n),
        expected=lambda n=_name: ANGLE_FACTOR[n],
        control=lambda n=_name: sp.Integer(1) if n != "nesterov" else 1 / (1 + mu),
        simplifier=on_hyperparameter_domain,
        note="The claim is the limit alpha lam -> 0 of (1 - cos theta*)/(alpha lam) at the "
        "mean-field equilibrium; the angular update is sqrt(2 K alpha lam) to leading order. "
        + {"nesterov": "The control is momentum SGD's K = 1/(1+mu): Nesterov's step carries the "
           "current gradient once more, so it turns the weights faster.",
           "muon": "The control K = 1 ignores the buffer's correlation with w.",
           "lion": "The control K = 1 ignores the buffer's correlation with w (it holds at "
           "beta1 = 0)."}[_name],
    )

identity(
    name="nesterov_norm_leading_order",
    topic="beyond the seeds: Nesterov, Muon, Lion",
    domain=HYPERPARAMETERS,
    source="Sutskever et al. 2013 (Nesterov momentum as torch.optim.SGD); derived here",
    statement=r"\text{Nesterov SGD: }\|\mathbf{w}^*\|^4 = \frac{\alpha g^2}{2(1-\mu)\lambda}"
    r"\,(1+O(\alpha\lambda))",
    claim=lambda: _leading(norm_sq("nesterov") ** 2 * lam / (alpha * g**2)),
    expected=lambda: 1 / (2 * (1 - mu)),
    control=lambda: sp.Rational(1, 2),
    simplifier=on_hyperparameter_domain,
    note="The same leading order as momentum SGD's: the norm is set by the effective learning "
    "rate alpha/(1-mu) of both. The control drops the momentum (plain SGD's 1/2).",
)

identity(
    name="scale_free_norm_leading_order",
    topic="beyond the seeds: Nesterov, Muon, Lion",
    domain=HYPERPARAMETERS,
    source="Jordan et al. 2024 (Muon); Chen et al. 2023 (Lion); derived here",
    statement=r"\|\mathbf{w}^*\|^2 = \frac{\|\mathbf{u}\|^2}{2K\alpha\lambda}(1+O(\alpha\lambda)),"
    r"\ \|\mathbf{u}\|^2 = \alpha^2\ \text{(Muon)},\ \alpha^2 d\ \text{(Lion)}",
    claim=lambda: tuple(_leading(norm_sq(n) * 2 * alpha * lam / UPDATE_ENERGY[n])
                        for n in ("muon", "lion")),
    expected=lambda: tuple(1 / ANGLE_FACTOR[n] for n in ("muon", "lion")),
    control=lambda: (sp.Integer(1), sp.Integer(1)),
    simplifier=on_hyperparameter_domain,
    note="With the angular update sqrt(2 K alpha lam) this says the angle is the step's size "
    "over the norm, ||u||/||w*||: the fixed-size step is tangential to leading order. The "
    "control (K = 1) is the momentum-free balance.",
)

identity(
    name="scale_free_norm_exact_without_momentum",
    topic="beyond the seeds: Nesterov, Muon, Lion",
    domain=HYPERPARAMETERS,
    source="Jordan et al. 2024 (Muon at mu = 0: normalized descent with decoupled decay); "
    "derived here",
    statement=r"\|\mathbf{w}^+\|^2 = (1-\alpha\lambda)^2\|\mathbf{w}\|^2 + \alpha^2:\ "
    r"\|\mathbf{w}^*\|^2 = \frac{\alpha}{\lambda(2-\alpha\lambda)},\ "
    r"\cos\theta^* = 1-\alpha\lambda",
    claim=lambda: (norm_sq("muon").subs(mu, 0), cos_angle("muon").subs(mu, 0)),
    expected=lambda: (alpha / (lam * (2 - alpha * lam)), 1 - alpha * lam),
    control=lambda: (alpha / (2 * lam), 1 - alpha * lam),
    simplifier=on_hyperparameter_domain,
    note="Exact: a step of fixed size orthogonal in expectation to w. The control is the "
    "leading order alpha/(2 lam), which is not the fixed point.",
)

identity(
    name="scale_free_approach_rate_leading_order",
    topic="beyond the seeds: Nesterov, Muon, Lion",
    domain=HYPERPARAMETERS,
    source="Jordan et al. 2024 (Muon); Chen et al. 2023 (Lion); Sutskever et al. 2013 "
    "(Nesterov); derived here",
    statement=r"1-\partial_x\mathbb{E}\|\mathbf{w}^+\|^2 = c\,\alpha\lambda + O((\alpha\lambda)^2):"
    r"\ c = 2\ \text{(Muon, Lion)},\ c = \frac{4}{1-\mu}\ \text{(Nesterov)}",
    claim=lambda: tuple(_leading((1 - approach_rate(n)) / (alpha * lam)) for n in OPTIMIZERS),
    expected=lambda: (4 / (1 - mu), sp.Integer(2), sp.Integer(2)),
    control=lambda: (sp.Integer(4), sp.Integer(4), sp.Integer(4)),
    simplifier=on_hyperparameter_domain,
    note="The slope of the adiabatic norm map at the equilibrium (the buffer relaxed): "
    "deviations of a scale-free step's norm decay at 2 alpha lam per step whatever the "
    "momentum (the map is affine in x), half SGD's 4 alpha lam (the control), since SGD's "
    "update energy alpha^2 g^2/x also falls as the norm grows.",
)

_X, _Y, _Z = sp.symbols("X Y Z", real=True)
_sx, _sy = sp.symbols("sigma_X sigma_Y", positive=True)
_r = sp.Symbol("r", real=True)


def _sign_times_y() -> sp.Expr:
    """``E[sign(X) Y]`` for ``X ~ N(0, sx^2)``, ``Y = r (sy/sx) X + sqrt(1 - r^2) sy Z``,
    ``Z ~ N(0, 1)`` independent (any zero-mean Gaussian pair with correlation ``r``)."""
    def phi(u):
        return sp.exp(-u**2 / 2) / sp.sqrt(2 * sp.pi)

    y = _r * _sy / _sx * _X + sp.sqrt(1 - _r**2) * _sy * _Z
    given_x = sp.integrate(y * phi(_Z), (_Z, -sp.oo, sp.oo)) * phi(_X / _sx) / _sx
    return sp.integrate(given_x, (_X, 0, sp.oo)) - sp.integrate(given_x, (_X, -sp.oo, 0))


identity(
    name="sign_correlation_gain",
    topic="beyond the seeds: Nesterov, Muon, Lion",
    source="Bussgang 1952 (Bussgang's theorem), used for Lion's sign; derived here",
    statement=r"\mathbb{E}[\operatorname{sign}(X)Y] = \sqrt{2/\pi}\,\mathbb{E}[XY]/\sigma_X"
    r"\ \text{for zero-mean jointly Gaussian } X, Y",
    claim=_sign_times_y,
    expected=lambda: SIGN_GAIN * (_r * _sx * _sy) / _sx,
    control=lambda: (_r * _sx * _sy) / _sx,
    domain=(_r < 1, _r > -1),
    note="By integration over the Gaussian pair. The control omits the gain sqrt(2/pi): a sign "
    "keeps only that fraction of a Gaussian coordinate's correlation.",
)
