"""The weight norm of a scale-invariant layer under learning-rate and weight-decay schedules, in
continuous time; the gradient-to-weight ratio it implies; and the corrected decoupled decay that
keeps that ratio level.

Discrete steps (``x = ||w||^2``, step ``k`` with learning rate ``eta_k`` and decay ``lam_k``):

* SGD (001 Eq. 23): ``x' = (1 - eta lam)^2 x + eta^2 g^2 / x``, exact for any gradient
  directions (the gradient is orthogonal to ``w`` and has norm ``g / ||w||``, 001 Eq. 16-18);
* a scale-free step ``u`` of fixed energy ``||u||^2 = eta^2 C`` orthogonal in expectation to
  ``w`` (Muon at ``mu = 0``, ``C = 1``; Lion at ``beta1 = 0``, ``C = d``; AdamW's converged update,
  ``C = E||m/sqrt(v)||^2``): ``E x' = (1 - eta lam)^2 x + eta^2 C``.

Continuous time (one unit per step) keeps the first order in ``eta lam``:
``dx/dt = -2 eta lam x + eta^2 g^2 / x`` and ``dx/dt = -2 eta lam x + eta^2 C``. The two part
from the recurrences by the dropped ``(eta lam)^2 x`` per step (identity
``norm_ode_from_recurrence``): relatively ``eta lam / 2`` at equilibrium, and wherever the
schedule changes much within one step (a step decay's jump is exact in neither). Both are one
linear equation ``dz/dt = -a(t) z + b(t)``: for SGD in ``z = x^2`` (``a = 4 eta lam``,
``b = 2 eta^2 g^2``), for the scale-free step in ``z = x`` (``a = 2 eta lam``, ``b = eta^2 C``),
solved for any schedule by the integrating factor (identity ``norm_ode_solution``).

The gradient-to-weight ratio ``||grad J(w)|| / ||w|| = g / x`` at the quasi-static norm (``z`` at
the fixed point of the current ``eta_t, lam_t``, valid where the schedule is slow against the
time constant ``1 / a``) is ``sqrt(2 lam / eta_t)`` for SGD (Defazio 2025, "Why Gradients
Rapidly Increase Near the End of Training"): as ``eta_t`` decays the gradient norm rises. Defazio's
corrected decay ``lam_t = lam eta_t / eta_max`` (the per-step decay ``lam eta_t^2 / eta_max``)
makes ``a/b`` constant, so the quasi-static norm and the ratio stay level (``sqrt(2 lam /
eta_max)``), and the equation is solved in closed form for every schedule with a closed-form
``integral eta^2`` (identity ``corrected_decay_solution``).
"""

from __future__ import annotations

import sympy as sp

from scalewise.theory.equilibrium import NORM_SQ_STEP, alpha, g, lam, x
from scalewise.theory.identity import identity

t, s_, T, eta0, gamma = sp.symbols("t s T eta_0 gamma", positive=True)
C, z0, eta_max = sp.symbols("C z_0 eta_max", positive=True)
eta = sp.Function("eta", positive=True)
decay = sp.Function("lambda_t", positive=True)

TOPIC = "beyond the seeds: norms under schedules"

SCALE_FREE_STEP = (1 - alpha * lam) ** 2 * x + alpha**2 * C
"""Expected ``||w'||^2`` after a scale-free step of energy ``alpha^2 C`` orthogonal in
expectation to ``w``, with decoupled decay."""

NORM_ODE = {
    "sgd": -2 * alpha * lam * x + alpha**2 * g**2 / x,
    "scale_free": -2 * alpha * lam * x + alpha**2 * C,
}
"""``dx/dt`` at learning rate ``alpha`` and decay ``lam`` (the continuous limit of the steps)."""

DISCRETE_STEP = {"sgd": NORM_SQ_STEP, "scale_free": SCALE_FREE_STEP}
"""The exact per-step maps whose continuous limits are :data:`NORM_ODE`."""

LINEAR_FORM = {
    "sgd": (x**2, 4 * alpha * lam, 2 * alpha**2 * g**2),
    "scale_free": (x, 2 * alpha * lam, alpha**2 * C),
}
"""``(z, a, b)``: the norm equation as ``dz/dt = -a z + b`` at learning rate ``alpha`` and decay
``lam``."""


def _rates(kind: str, lr: sp.Expr, wd: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    _, a, b = LINEAR_FORM[kind]
    return a.subs({alpha: lr, lam: wd}), b.subs({alpha: lr, lam: wd})


def integrating_factor_solution(kind: str, lr: sp.Expr, wd: sp.Expr) -> sp.Expr:
    """``z(t) = e^{-A(t)} (z_0 + int_0^t b(s) e^{A(s)} ds)``, ``A(t) = int_0^t a``, for the
    learning rate ``lr`` and decay ``wd`` (functions of ``t``)."""
    a, b = _rates(kind, lr, wd)
    integral_a = sp.Integral(a.subs(t, s_), (s_, 0, t))
    inner = sp.Integral(b.subs(t, s_) * sp.exp(sp.Integral(a.subs(t, s_), (s_, 0, s_))),
                        (s_, 0, t))
    return sp.exp(-integral_a) * (z0 + inner)


def _ode_residuals(kind: str, z: sp.Expr, lr: sp.Expr, wd: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """``(dz/dt + a z - b, z(0) - z_0)``, simplified (integrals with a variable limit
    differentiated, empty ones evaluated) so that what remains holds no integral."""
    a, b = _rates(kind, lr, wd)
    return sp.simplify(sp.diff(z, t) + a * z - b), sp.simplify(z.subs(t, 0).doit() - z0)


def _x_equation_as_z(kind: str) -> sp.Expr:
    """``dz/dt`` from ``dx/dt`` by the chain rule, minus ``-a z + b``."""
    z, a, b = LINEAR_FORM[kind]
    return sp.diff(z, x) * NORM_ODE[kind] - (-a * z + b)


identity(
    name="norm_ode_from_recurrence",
    topic=TOPIC,
    source="001 Eq. (23) in continuous time; Defazio 2025, Sec. 2",
    statement=r"x_{k+1}-x_k = \dot x + \alpha^2\lambda^2 x:\ "
    r"\dot x = -2\alpha\lambda x + \alpha^2 g^2/x\ \text{(SGD)},\ "
    r"-2\alpha\lambda x + \alpha^2 C\ \text{(scale-free)}",
    claim=lambda: tuple(sp.expand(DISCRETE_STEP[k] - x - NORM_ODE[k]) for k in NORM_ODE),
    expected=lambda: (alpha**2 * lam**2 * x, alpha**2 * lam**2 * x),
    control=lambda: (sp.Integer(0), sp.Integer(0)),
    note="The continuous equations drop (alpha lam)^2 x per step: where they part from the "
    "exact recurrences. The control says nothing is dropped.",
)

identity(
    name="norm_ode_linear_form",
    topic=TOPIC,
    source="Defazio 2025, Sec. 2; derived here",
    statement=r"z = x^2:\ \dot z = -4\alpha\lambda z + 2\alpha^2 g^2\ \text{(SGD)};\ "
    r"z = x:\ \dot z = -2\alpha\lambda z + \alpha^2 C\ \text{(scale-free)}",
    claim=lambda: tuple(_x_equation_as_z(k) for k in NORM_ODE),
    expected=lambda: (sp.Integer(0), sp.Integer(0)),
    control=lambda: tuple(_x_equation_as_z(k) + alpha * lam * LINEAR_FORM[k][0]
                          for k in NORM_ODE),
    note="The SGD equation is linear in the squared squared norm. The control has the decay "
    "rate of z one alpha lam short.",
)

identity(
    name="norm_ode_solution",
    topic=TOPIC,
    source="Defazio 2025, Sec. 2 (schedules); derived here",
    statement=r"z(t) = e^{-A(t)}\Big(z_0 + \int_0^t b(s)e^{A(s)}ds\Big),\ A(t) = \int_0^t a"
    r"\ \text{for any}\ \eta(t), \lambda(t)",
    claim=lambda: tuple(_ode_residuals(k, integrating_factor_solution(k, eta(t), decay(t)),
                                       eta(t), decay(t)) for k in NORM_ODE),
    expected=lambda: ((sp.Integer(0), sp.Integer(0)), (sp.Integer(0), sp.Integer(0))),
    control=lambda: tuple(_ode_residuals(k, integrating_factor_solution(k, eta(t), decay(t))
                                         + z0, eta(t), decay(t)) for k in NORM_ODE),
    note="Arbitrary learning-rate and weight-decay schedules (undefined functions of t); the "
    "residual of the equation and of the initial value. The control adds z_0 (it misses the "
    "initial value and the equation by a(t) z_0). For SGD z = ||w||^4, for the scale-free step "
    "z = ||w||^2.",
)


def corrected_solution(kind: str, lr: sp.Expr) -> sp.Expr:
    """``z(t) = z* + (z_0 - z*) exp(-(a/eta) int_0^t eta^2 / eta_max)`` under the corrected
    decay ``lam_t = lam eta_t / eta_max``, ``z* = b / a`` at ``eta = eta_max``."""
    a, b = _rates(kind, eta_max, lam)
    fixed = b / a
    rate = a / eta_max
    integral = sp.Integral((lr**2).subs(t, s_), (s_, 0, t)) / eta_max
    return fixed + (z0 - fixed) * sp.exp(-rate * integral)


identity(
    name="corrected_decay_solution",
    topic=TOPIC,
    source="Defazio 2025, corrected weight decay; derived here",
    statement=r"\lambda_t = \lambda\eta_t/\eta_{\max}:\ z(t) = z^* + (z_0-z^*)"
    r"\exp\Big(-\frac{a_{\max}}{\eta_{\max}^2}\int_0^t\eta^2\Big),\ z^* = b/a\big|_{\eta_{\max}}",
    claim=lambda: tuple(_ode_residuals(k, corrected_solution(k, eta(t)), eta(t),
                                       lam * eta(t) / eta_max) for k in NORM_ODE),
    expected=lambda: ((sp.Integer(0), sp.Integer(0)), (sp.Integer(0), sp.Integer(0))),
    control=lambda: tuple(_ode_residuals(k, corrected_solution(k, eta(t)) + z0, eta(t),
                                         lam * eta(t) / eta_max) for k in NORM_ODE),
    note="Exact for every schedule (eta an undefined function of t): a and b are both "
    "proportional to eta_t^2, so time runs as int eta^2 and the fixed point z* does not move; "
    "closed form wherever int eta^2 is. The control adds z_0 to the solution. Under the "
    "uncorrected decay no such form exists: a is proportional to eta_t, b to eta_t^2.",
)


def quasi_static_ratio(kind: str, lr: sp.Expr, wd: sp.Expr) -> sp.Expr:
    """``||grad J|| / ||w|| = g / x`` at the fixed point of the current ``lr`` and ``wd``."""
    z, a, b = LINEAR_FORM[kind]
    x_star = sp.solve(sp.Eq(z, b / a), x)
    (root,) = [r for r in x_star if r.is_positive is not False]
    return sp.simplify((g / root).subs({alpha: lr, lam: wd}))


identity(
    name="grad_weight_ratio_quasi_static",
    topic=TOPIC,
    source="Defazio 2025 (the ratio for SGD); derived here",
    statement=r"\frac{\|\nabla\mathcal J\|}{\|\mathbf w\|} = \sqrt{2\lambda/\eta_t}\ \text{(SGD)},"
    r"\ \frac{2\lambda g}{\eta_t C}\ \text{(scale-free)};\ \lambda_t=\lambda\eta_t/\eta_{\max}:\ "
    r"\sqrt{2\lambda/\eta_{\max}},\ \frac{2\lambda g}{\eta_{\max}C}",
    claim=lambda: (quasi_static_ratio("sgd", alpha, lam),
                   quasi_static_ratio("scale_free", alpha, lam),
                   quasi_static_ratio("sgd", alpha, lam * alpha / eta_max),
                   quasi_static_ratio("scale_free", alpha, lam * alpha / eta_max)),
    expected=lambda: (sp.sqrt(2 * lam / alpha), 2 * lam * g / (alpha * C),
                      sp.sqrt(2 * lam / eta_max), 2 * lam * g / (eta_max * C)),
    control=lambda: (sp.sqrt(lam / alpha), sp.sqrt(2 * lam / alpha) * g / sp.sqrt(C),
                     sp.sqrt(2 * lam / alpha), 2 * lam * g / (alpha * C)),
    note="With x = ||w||^2 and ||grad J(w)|| = g/||w||, the ratio is g/x. For the scale-free "
    "step the gradient norm itself is g sqrt(2 lam/(eta C)), so it too rises as sqrt(1/eta_t), "
    "but the ratio goes as 1/eta_t: the power differs from SGD's. Under the corrected decay "
    "both are level. The controls: a dropped 2, the gradient norm in place of the ratio, and "
    "the uncorrected values.",
)

SCHEDULES = {
    "linear": eta0 * (1 - t / T),
    "cosine": eta0 * (1 + sp.cos(sp.pi * t / T)) / 2,
    "exponential": eta0 * sp.exp(-gamma * t),
}
"""Continuous learning-rate schedules from ``eta_0`` at ``t = 0`` (to 0 at ``t = T``); the
warmup-stable-decay schedule is constant, then linear to 0 over its decay phase."""

SCHEDULE_INTEGRALS = {
    "linear": (eta0 * (t - t**2 / (2 * T)), eta0**2 * T * (1 - (1 - t / T) ** 3) / 3),
    "cosine": (eta0 * (t / 2 + T * sp.sin(sp.pi * t / T) / (2 * sp.pi)),
               eta0**2 * (3 * t / 8 + T * sp.sin(sp.pi * t / T) / (2 * sp.pi)
                          + T * sp.sin(2 * sp.pi * t / T) / (16 * sp.pi))),
    "exponential": (eta0 * (1 - sp.exp(-gamma * t)) / gamma,
                    eta0**2 * (1 - sp.exp(-2 * gamma * t)) / (2 * gamma)),
}
"""``(int_0^t eta, int_0^t eta^2)``: the decay's clock and, under the corrected decay, the
norm's."""

identity(
    name="schedule_integrals",
    topic=TOPIC,
    source="Loshchilov and Hutter 2017 (cosine); Hu et al. 2024 (warmup-stable-decay); derived "
    "here",
    statement=r"\int_0^t\eta,\ \int_0^t\eta^2\ \text{for linear, cosine and exponential "
    r"schedules (and the decay phase of warmup-stable-decay, linear)}",
    claim=lambda: tuple((sp.integrate(e.subs(t, s_), (s_, 0, t)),
                         sp.integrate((e**2).subs(t, s_), (s_, 0, t)))
                        for e in SCHEDULES.values()),
    expected=lambda: tuple(SCHEDULE_INTEGRALS.values()),
    control=lambda: tuple((first, second * 2) for first, second in SCHEDULE_INTEGRALS.values()),
    note="Integrated by SymPy and compared with the stated forms. The control doubles "
    "int eta^2.",
)

_P = sp.sqrt(eta0 * T / 2)


def linear_schedule_solution(kind: str) -> sp.Expr:
    """``z(t)`` under ``eta = eta_0 (1 - t/T)`` and a constant decay ``lam``, with
    ``a = a_0 eta``, ``b = b_0 eta^2``, ``u = 1 - t/T`` and ``p = sqrt(a_0 eta_0 T / 2)``: the
    quasi-static ``b/a`` less an erf term, the lag (identity ``linear_schedule_solution``; found
    with ``sympy.dsolve``, checked by substitution)."""
    a, b = _rates(kind, eta0, lam)
    a0, b0 = a / eta0, b / eta0**2  # a = a0 eta, b = b0 eta^2
    u = 1 - t / T
    p = sp.sqrt(a0 * eta0 * T / 2)
    quasi = b0 * eta0 * u / a0
    tail = b0 * eta0 * sp.sqrt(sp.pi) / (2 * a0 * p)

    def erf_term(v):
        return sp.exp(p**2 * v**2) * sp.erf(p * v)

    return quasi - tail * erf_term(u) + (z0 - quasi.subs(t, 0) + tail * erf_term(1)) * sp.exp(
        p**2 * (u**2 - 1))


identity(
    name="linear_schedule_solution",
    topic=TOPIC,
    source="Defazio 2025 (the equation); derived here (its solution)",
    statement=r"\eta_t=\eta_0(1-t/T),\ \lambda\ \text{constant}:\ z(t) = \frac{b_0}{a_0}\eta_t "
    r"- \frac{b_0\eta_0\sqrt\pi}{2a_0p}e^{p^2u^2}\operatorname{erf}(pu) + \Big(z_0 - "
    r"\frac{b_0\eta_0}{a_0} + \frac{b_0\eta_0\sqrt\pi}{2a_0p}e^{p^2}\operatorname{erf}p\Big)"
    r"e^{p^2(u^2-1)}",
    claim=lambda: tuple(_ode_residuals(k, linear_schedule_solution(k), SCHEDULES["linear"], lam)
                        for k in NORM_ODE),
    expected=lambda: ((sp.Integer(0), sp.Integer(0)), (sp.Integer(0), sp.Integer(0))),
    control=lambda: tuple(_ode_residuals(k, linear_schedule_solution(k) - (
        linear_schedule_solution(k) - _rates(k, SCHEDULES["linear"], lam)[1]
        / _rates(k, SCHEDULES["linear"], lam)[0]), SCHEDULES["linear"], lam) for k in NORM_ODE),
    note="u = 1 - t/T, a = a_0 eta_t, b = b_0 eta_t^2, p = sqrt(a_0 eta_0 T/2). The erf term is "
    "the lag behind the quasi-static value b/a (the control), which the solution approaches "
    "while p u >> 1 (the schedule slow against the time constant 1/a) and leaves near the "
    "end, where eta_t -> 0 freezes the norm. Cosine's int b e^A has no elementary form; "
    "sim.norm_schedules integrates it numerically.",
)
