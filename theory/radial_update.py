"""Where a weight norm comes from: one step split into a decay factor and the optimizer's update,
the norm balance that split obeys exactly, the moments driven by the update's measured
tangential energy, and the mean field's equilibrium radial cosine and update size.

The split. Every optimizer of :mod:`scalewise.vocabulary` steps a weight vector as
``w_{k+1} = rho w_k - u_k`` with ``rho = 1 - alpha lam`` where its weight decay multiplies the
weights (001 Eq. 22: a decoupled decay, or an L2 term no preconditioner divides) and ``rho = 1``
where the decay is part of the preconditioned update ``u`` (Adam with L2, RMSprop, K-FAC).
Then ``||w_{k+1}||^2 = rho^2 ||w_k||^2 - 2 rho <w_k, u_k> + ||u_k||^2`` holds exactly
(:func:`norm_balance`): the norm comes from the update's radial part ``<w, u>`` and its size.
For SGD ``u = alpha grad J(w)`` is orthogonal to ``w`` (001 Eq. 16), which leaves 001 Eq. (23).

The driven moments. For momentum SGD and the Adam family the radial part comes from the buffer's
memory: ``<w_k, u_k>`` is ``c`` times ``P = b p + a l x`` (``p = <w_k, m_k>``), and the buffer's
correlation with the weights follows ``<w', m'> = rho P - c Q`` (:mod:`scalewise.theory.mean_field`,
:func:`~scalewise.theory.mean_field.moment_step`). Given the *tangential* energy
``tau = ||c m'||^2 - <w_hat, c m'>^2`` of each update, measured, these two recursions are exact
for one weight vector whatever its gradients' correlations: only ``<G, w> = 0`` and, for the
Adam family, one step scale ``c`` for all coordinates (an isotropic second moment) remain
(identities ``driven_moments_*``). The mean field additionally predicts ``tau`` from the gradient
norm by assuming gradients independent across steps.

At the mean field's equilibrium (in the split above) the update's radial cosine
``cos(w, u) = E<w, u> / sqrt(E||w||^2 E||u||^2)`` and its size are
(identities ``*_update_parts``):

* momentum SGD (``u = alpha (mu m + G)``): ``cos = -mu sqrt(A / ((1 + mu)(2 - A(1 - mu))))``,
  ``||u||^2 / ||w||^2 = A (2 - A(1 - mu)) / (1 + mu)``, ``A = alpha lam``;
* AdamW (``u = alpha m_hat / sqrt(v_hat)``): ``cos = -beta1 sqrt((1 - a^2) / ((1 + a beta1)
  (1 - a beta1)))``, ``a = 1 - alpha lam``, and a per-coordinate RMS update of
  ``sqrt((1 - beta1) / (1 + beta1))`` learning rates;
* Adam with L2 (``rho = 1``, the decay inside ``u``): ``cos = sqrt(r z / (1 + r z))`` at a
  stationary norm, ``z = (lam ||w||^2 / g)^2``, ``r = (1 - beta1) / (1 + beta1)``, and the RMS
  update ``sqrt(r)`` to leading order; RMSprop is ``beta1 = 0``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from types import MappingProxyType

import sympy as sp

from scalewise.theory.equilibrium import alpha, g, lam, x
from scalewise.theory.identity import identity
from scalewise.theory.mean_field import (
    HYPERPARAMETERS,
    MOMENT_PARAMETERS,
    beta1,
    buffer_fixed_point,
    c,
    d,
    derived_norm_sq,
    mean_field_model,
    moment_step,
    mu,
    on_hyperparameter_domain,
    p,
    q,
    r_beta,
    required_step_scale,
    rho,
)
from scalewise.theory.symbolic import vector

tau = sp.Symbol("tau", nonnegative=True)
"""The tangential energy ``||c m'||^2 - <w_hat, c m'>^2`` of one update."""
decay = sp.Symbol("rho", positive=True)
"""The decay factor of the split ``w' = rho w - u``."""
z = sp.Symbol("z", positive=True)
"""``(lam ||w||^2 / g)^2``: the L2 term's share of Adam's gradient at a stationary norm."""
A = alpha * lam


# ---------------------------------------------------------------- the norm balance


def _balance_sides(n: int) -> tuple[sp.Expr, sp.Expr]:
    w, u = vector("w", n), vector("u", n)
    step = decay * w - u
    return sp.expand(step.dot(step)), decay**2 * w.dot(w) - 2 * decay * w.dot(u) + u.dot(u)


identity(
    name="norm_balance",
    topic="radial update",
    source="001 Eq. (22)-(23) (a step split into the decay and the update)",
    statement=r"\|\rho\mathbf{w}-\mathbf{u}\|^2 = \rho^2\|\mathbf{w}\|^2"
    r" - 2\rho\langle\mathbf{w},\mathbf{u}\rangle + \|\mathbf{u}\|^2",
    claim=lambda n: _balance_sides(n)[0],
    expected=lambda n: sp.expand(_balance_sides(n)[1]),
    control=lambda n: sp.expand(decay**2 * vector("w", n).dot(vector("w", n))
                                + vector("u", n).dot(vector("u", n))),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Exact for any optimizer: the probes' reconstruction of each step's norm. The control "
    "forgets the radial part <w, u>, which SGD's update alone lacks (001 Eq. 23).",
)


# ---------------------------------------------------------------- the driven moments


@cache
def driven_step(optimizer: str) -> tuple[sp.Expr, sp.Expr]:
    """``(||w'||^2, <w', m'>)`` of ``optimizer`` (``"sgdm"``, ``"adamw"``, ``"adam"``; RMSprop
    is ``"adam"`` at ``beta1 = 0``) as expressions in ``x = ||w||^2``, ``p = <w, m>``, the step
    scale ``c`` and the measured tangential energy ``tau`` of the update ``c m'``: theory's
    moment step with the buffer's energy taken from ``tau`` (:func:`moment_step`)."""
    step = moment_step(**MOMENT_PARAMETERS[optimizer], tangent_energy=tau)
    return sp.simplify(step.norm_sq), sp.simplify(step.w_dot_buffer)


def _one_vector_step(optimizer: str, n: int) -> tuple[tuple[sp.Expr, ...], dict[sp.Symbol, sp.Expr]]:
    """One step of one weight vector of size ``n`` with buffer ``m`` and a gradient ``G``
    orthogonal to ``w``: the exact ``(||w'||^2, <w', m'>)`` and the values of ``x, p, tau``."""
    parameters = MOMENT_PARAMETERS[optimizer]
    w, m, v = vector("w", n), vector("m", n), vector("v", n)
    grad = v - (v.dot(w) / w.dot(w)) * w  # tangent to the sphere through w (001 Eq. 16)
    new = parameters["buffer_decay"] * m + parameters["grad_gain"] * (
        grad + parameters["coupled_wd"] * w)
    after = parameters["decay_factor"] * w - c * new
    radial = (c * new).dot(w)
    values = {x: w.dot(w), p: w.dot(m), tau: (c * new).dot(c * new) - radial**2 / w.dot(w)}
    return (after.dot(after), after.dot(new)), values


def _driven_claim(optimizer: str) -> tuple[sp.Expr, ...]:
    exact, _ = _one_vector_step(optimizer, 2)
    return exact


def _driven_expected(optimizer: str, sides: tuple[sp.Expr, ...]) -> tuple[sp.Expr, ...]:
    _, values = _one_vector_step(optimizer, 2)
    return tuple(side.subs(values, simultaneous=True) for side in sides)


def _without_radial_energy(optimizer: str) -> tuple[sp.Expr, ...]:
    """The control: the buffer's energy from ``tau`` alone, its radial part forgotten."""
    P = MOMENT_PARAMETERS[optimizer]["buffer_decay"] * p + (
        MOMENT_PARAMETERS[optimizer]["grad_gain"] * MOMENT_PARAMETERS[optimizer]["coupled_wd"] * x)
    rho_k = MOMENT_PARAMETERS[optimizer]["decay_factor"]
    return rho_k**2 * x - 2 * rho_k * c * P + tau, rho_k * P - tau / c


for _name, _label in (("sgdm", "momentum SGD"), ("adamw", "AdamW"), ("adam", "Adam with L2")):
    identity(
        name=f"driven_moments_{_name}",
        topic="radial update",
        source="001 Sec. 2 and Sec. 5 (the update rules), 001 Eq. (16)",
        statement=r"\|\mathbf{w}'\|^2 = \rho^2 x - 2\rho cP + \tau + c^2P^2/x,\ "
        r"\langle\mathbf{w}',\mathbf{m}'\rangle = \rho P - (\tau + c^2P^2/x)/c"
        rf"\ \text{{({_label}, }}\mathbf{{G}}\perp\mathbf{{w}})",
        claim=lambda name=_name: _driven_claim(name),
        expected=lambda name=_name: _driven_expected(name, driven_step(name)),
        control=lambda name=_name: _driven_expected(name, _without_radial_energy(name)),
        simplifier=sp.cancel,
        note="Checked on generic vectors of size 2 with a gradient orthogonal to w: given the "
        "update's tangential energy tau, the norm and the buffer's correlation with w follow "
        "exactly; the mean field's assumption (gradients independent across steps) enters only "
        "in predicting tau. The control drops the radial energy c^2 P^2 / x.",
    )


# ---------------------------------------------------------------- the equilibrium's update parts


def on_domain_with_radicals(expr: sp.Expr) -> sp.Expr:
    """:func:`on_hyperparameter_domain`, then the radicals' bases factored and their powers
    combined (every symbol is positive there, so ``sqrt(a) sqrt(b) = sqrt(a b)`` holds): the
    square roots of the radial cosines cancel only in that form."""
    expr = on_hyperparameter_domain(expr)
    expr = expr.replace(lambda e: e.is_Pow, lambda e: sp.Pow(sp.factor(e.base), e.exp))
    return sp.simplify(sp.powsimp(sp.powdenest(sp.factor(expr), force=True), force=True))



def _at_equilibrium(optimizer: str, expr: sp.Expr) -> sp.Expr:
    """``expr`` (in ``p, q, c, x``) at the mean field's equilibrium of ``optimizer``."""
    model = mean_field_model(optimizer)
    at = expr.subs(buffer_fixed_point(optimizer)).subs(c, model.step_scale)
    return at.subs(x, derived_norm_sq(optimizer))


SGDM_RADIAL_COSINE = -mu * sp.sqrt(A / ((1 + mu) * (2 - A * (1 - mu))))
"""``cos(w, u)`` of momentum SGD at equilibrium, ``u = alpha (mu m + G)`` (the L2 term in
``rho``): the buffer remembers gradients along directions ``w`` has left."""
SGDM_UPDATE_RATIO_SQ = A * (2 - A * (1 - mu)) / (1 + mu)
"""``E||u||^2 / E||w||^2`` of momentum SGD at equilibrium."""


def _sgdm_parts() -> tuple[sp.Expr, sp.Expr]:
    u_dot_w = alpha * mu * p
    u_sq = alpha**2 * (mu**2 * q + g**2 / x)  # E<m, G> = 0
    cosine = _at_equilibrium("sgdm", u_dot_w / sp.sqrt(x * u_sq))
    return cosine, _at_equilibrium("sgdm", u_sq / x)


identity(
    name="sgdm_update_parts",
    topic="radial update",
    source="001 Eq. (23)-(25) extended to momentum (torch SGD, dampening 0)",
    statement=r"\cos(\mathbf{w},\mathbf{u}) = -\mu\sqrt{\frac{\alpha\lambda}{(1+\mu)"
    r"(2-\alpha\lambda(1-\mu))}},\ \frac{\|\mathbf{u}\|^2}{\|\mathbf{w}\|^2}"
    r" = \frac{\alpha\lambda(2-\alpha\lambda(1-\mu))}{1+\mu}",
    claim=_sgdm_parts,
    expected=lambda: (SGDM_RADIAL_COSINE, SGDM_UPDATE_RATIO_SQ),
    control=lambda: (-mu * sp.sqrt(A / (2 * (1 + mu))), SGDM_UPDATE_RATIO_SQ),
    domain=HYPERPARAMETERS,
    simplifier=on_domain_with_radicals,
    note="Mean field, the decay's L2 term in rho = 1 - alpha lam and u = alpha (mu m + G). At "
    "mu = 0 the update is tangent (SGD) and ||u||^2 = (1 - rho^2) ||w||^2. The control drops "
    "the finite-alpha-lambda term.",
)

ADAMW_RADIAL_COSINE = -beta1 * sp.sqrt((1 - rho**2) / ((1 + rho * beta1) * (1 - rho * beta1)))
"""``cos(w, u)`` of AdamW at equilibrium, ``u = alpha m_hat / sqrt(v_hat)``."""
ADAM_UPDATE_RMS = sp.sqrt(r_beta)
"""Per-coordinate RMS of Adam's update in learning rates, ``sqrt(E||u||^2 / d) / alpha``, for
noise-dominated gradients."""


def _adamw_parts() -> tuple[sp.Expr, sp.Expr]:
    u_dot_w, u_sq = c * beta1 * p, c**2 * mean_field_model("adamw").moments.buffer_sq
    cosine = _at_equilibrium("adamw", u_dot_w / sp.sqrt(x * u_sq))
    return cosine, _at_equilibrium("adamw", u_sq / (alpha**2 * d))


identity(
    name="adamw_update_parts",
    topic="radial update",
    source="001 Sec. 2 (Adam), Sec. 5 (AdamW)",
    statement=r"\cos(\mathbf{w},\mathbf{u}) = -\beta_1\sqrt{\frac{1-a^2}{(1+a\beta_1)"
    r"(1-a\beta_1)}},\ \frac{\mathbb{E}\|\mathbf{u}\|^2}{d\,\alpha^2} = \frac{1-\beta_1}{1+\beta_1},"
    r"\ a = 1-\alpha\lambda",
    claim=_adamw_parts,
    expected=lambda: (ADAMW_RADIAL_COSINE, ADAM_UPDATE_RMS**2),
    control=lambda: (-beta1 * sp.sqrt(1 - rho**2), ADAM_UPDATE_RMS**2),
    domain=HYPERPARAMETERS,
    simplifier=on_domain_with_radicals,
    note="Mean field with a converged isotropic v_hat. The buffer's memory of gradients along "
    "directions w has left makes E<w, m> < 0: the update pushes w outward, against the decay.",
)


def _adam_l2_parts() -> tuple[sp.Expr, sp.Expr]:
    """``cos(w, u)`` and ``E||u||^2 / (d alpha^2)`` in units of ``4 x z / (d alpha^2)`` (which
    tends to 1 at leading order) of Adam with L2 at a stationary norm, as functions of ``z``,
    from the buffer's fixed point and the step scale that keeps ``x`` stationary."""
    at = {**buffer_fixed_point("adam")}
    scale = required_step_scale("adam")
    P = (beta1 * p + (1 - beta1) * lam * x).subs(at).subs(c, scale)
    Q = at[q].subs(c, scale)
    in_z = {g: lam * x / sp.sqrt(z)}
    rms_sq = scale**2 * Q / (alpha**2 * d)
    return (P / sp.sqrt(x * Q)).subs(in_z), (rms_sq / (4 * x * z / (alpha**2 * d))).subs(in_z)


ADAM_L2_RADIAL_COSINE = sp.sqrt(r_beta * z / (1 + r_beta * z))
"""``cos(w, u)`` of Adam with L2 at a stationary norm, ``z = (lam ||w||^2 / g)^2``."""
ADAM_L2_UPDATE_SQ_SHARE = r_beta / (1 + r_beta * z)
"""``E||u||^2 / (d alpha^2)`` of Adam with L2 at a stationary norm, in units of
``4 z ||w||^2 / (d alpha^2)``, which is 1 at leading order (:data:`~scalewise.theory.adam_l2.
ADAM_NORM_SQ`): the RMS update tends to ``sqrt(r)``, as AdamW's."""

identity(
    name="adam_l2_update_parts",
    topic="radial update",
    source="001 Sec. 2 (Adam, RMSprop) and Sec. 5 (L2 in Adam)",
    statement=r"\cos(\mathbf{w},\mathbf{u}) = \sqrt{\frac{rz}{1+rz}},\ "
    r"\frac{\mathbb{E}\|\mathbf{u}\|^2}{d\,\alpha^2} = \frac{4z\|\mathbf{w}\|^2}{d\alpha^2}"
    r"\frac{r}{1+rz},\ z = \frac{\lambda^2\|\mathbf{w}\|^4}{g^2}",
    claim=_adam_l2_parts,
    expected=lambda: (ADAM_L2_RADIAL_COSINE, ADAM_L2_UPDATE_SQ_SHARE),
    control=lambda: (sp.sqrt(z / (1 + z)), ADAM_L2_UPDATE_SQ_SHARE),
    domain=HYPERPARAMETERS,
    simplifier=on_domain_with_radicals,
    note="At any stationary norm; with x = (alpha g sqrt(d) / (2 lam))^(2/3) to leading order, "
    "z is the expansion parameter eps of adam_l2_balance and the RMS update sqrt(r), as for "
    "AdamW. The L2 term makes u point along w (cos > 0). RMSprop: beta1 = 0, r = 1.",
)


# ---------------------------------------------------------------- NumPy forms

w_dot_u, u_sq = sp.symbols("w_dot_u u_sq", real=True)
balanced_norm_sq = sp.lambdify((decay, x, w_dot_u, u_sq),
                               decay**2 * x - 2 * decay * w_dot_u + u_sq, "numpy")
"""``||w_{k+1}||^2`` from ``(rho, ||w_k||^2, <w_k, u_k>, ||u_k||^2)``: the right side of
:func:`norm_balance`'s identity, for per-unit or per-layer sums."""

sgdm_update_parts = sp.lambdify((alpha, lam, mu), (SGDM_RADIAL_COSINE, sp.sqrt(
    SGDM_UPDATE_RATIO_SQ)), "numpy")
"""``(cos(w, u), ||u|| / ||w||)`` of momentum SGD at equilibrium."""
adamw_update_parts = sp.lambdify((alpha, lam, beta1), (ADAMW_RADIAL_COSINE, ADAM_UPDATE_RMS),
                                 "numpy")
"""``(cos(w, u), RMS update / lr)`` of AdamW at equilibrium."""
adam_l2_update_parts = sp.lambdify(
    (z, x, alpha, d, beta1),
    (ADAM_L2_RADIAL_COSINE, sp.sqrt(4 * z * x / (d * alpha**2) * ADAM_L2_UPDATE_SQ_SHARE)), "numpy")
"""``(cos(w, u), RMS update / lr)`` of Adam with L2 at a stationary norm ``x`` with the measured
``z = (lam x / g)^2``."""

DRIVEN_ARGUMENTS = (x, p, tau, c, alpha, lam, mu, beta1)


@cache
def numpy_driven_step(optimizer: str) -> Callable[..., tuple]:
    """:func:`driven_step` as a NumPy function of :data:`DRIVEN_ARGUMENTS`."""
    return sp.lambdify(DRIVEN_ARGUMENTS, driven_step(optimizer), "numpy")


DRIVEN: Mapping[str, str] = MappingProxyType({
    "sgdm": "sgdm", "adamw": "adamw", "adam": "adam", "rmsprop": "adam"})
"""The moment step each optimizer's driven model iterates (RMSprop: Adam's at ``beta1 = 0``)."""
