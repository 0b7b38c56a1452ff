"""Weight decay is exactly an exponentially growing learning rate for scale-invariant costs
(Li and Arora 2020, cited in 001 Sec. 4.3 and on the 000/002 slides "Counteracting the implicit
LR effect"), for plain SGD and for momentum SGD in the ``torch.optim.SGD`` convention.

Plain SGD with weight decay, ``w_{k+1} = (1 - alpha lam) w_k - alpha grad J(w_k)``, is, after
``w~_k = w_k / (1 - alpha lam)^k``, exactly SGD without weight decay at the learning rate
``alpha_k = alpha (1 - alpha lam)^(-2k-1)`` from ``w~_0 = w_0``: ``grad J(c w) = grad J(w) / c``
for ``c > 0`` (001 Eq. 18) turns the shrinking weights into a growing step.

Momentum SGD with coupled decay (``m <- mu m + grad J(w) + lam w``, ``w <- w - alpha m``) is,
after ``w~_k = w_k / r^k`` and ``m~_k = r^k m_k - r^(k-1) (1 - r) w_k / alpha``, exactly momentum
SGD without decay (``m~ <- mu m~ + grad J(w~)``, ``w~ <- w~ - alpha_k m~``) at
``alpha_k = alpha r^(-2k-1)``, where ``r`` is a positive root of
``r^2 - (1 + mu - alpha lam) r + mu = 0`` (either root; :data:`SGDM_GROWTH` is the larger one,
which is ``1 - alpha lam`` at ``mu = 0``). Real roots need ``alpha lam <= (1 - sqrt(mu))^2``.
The initial buffer must be ``m~_0 = m_0 - (1 - r) w_0 / (alpha r)``: torch's default (an empty
buffer, i.e. ``m~_0 = 0``) breaks the equivalence (identity ``sgdm_exp_lr_three_steps``).

Since ``r > 0`` both runs point the same way at every step, ``w_k / ||w_k|| = w~_k / ||w~_k||``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.theory.equilibrium import alpha, k, lam
from scalewise.theory.identity import identity
from scalewise.theory.mean_field import HYPERPARAMETERS, mu, on_hyperparameter_domain
from scalewise.theory.symbolic import vector

r = sp.Symbol("r", positive=True)  # growth factor of the equivalent run, w~_k = w_k / r^k
_Q = sp.Symbol("Q", positive=True)  # r^k (or (1 - alpha lam)^k) in the induction step

SGD_EQUIVALENT_LR = alpha * (1 - alpha * lam) ** (-2 * k - 1)
"""Learning rate at step ``k`` of the decay-free SGD run equivalent to SGD with weight decay."""

SGD_WEIGHT_SCALE = (1 - alpha * lam) ** (-k)
"""``w~_k = SGD_WEIGHT_SCALE * w_k``."""

SGDM_GROWTH_QUADRATIC = r**2 - (1 + mu - alpha * lam) * r + mu
"""Its positive roots are the growth factors ``r`` of the momentum equivalence."""

SGDM_GROWTH = (1 + mu - alpha * lam + sp.sqrt((1 + mu - alpha * lam) ** 2 - 4 * mu)) / 2
"""The larger root of :data:`SGDM_GROWTH_QUADRATIC`."""

SGDM_EQUIVALENT_LR = alpha * r ** (-2 * k - 1)
"""Learning rate at step ``k`` of the decay-free momentum run (``r`` a growth factor)."""

SGDM_WEIGHT_SCALE = r ** (-k)
SGDM_BUFFER_SCALE = r**k
SGDM_BUFFER_SHIFT = -(r ** (k - 1)) * (1 - r) / alpha
"""``w~_k = SGDM_WEIGHT_SCALE w_k``, ``m~_k = SGDM_BUFFER_SCALE m_k + SGDM_BUFFER_SHIFT w_k``."""


# ---------------------------------------------------------------- scale-invariant gradients


def _generic_gradient(at: sp.Matrix) -> sp.Matrix:
    """The gradient of an arbitrary scale-invariant cost on ``R^3``: any field homogeneous of
    degree -1 (001 Eq. 18), ``F(w / ||w||) / ||w||`` with ``F`` undefined functions. Factoring
    the squared norm lets SymPy pull a positive scale out of the square root."""
    norm = sp.sqrt(sp.factor(at.dot(at)))
    direction = at / norm
    return sp.Matrix([sp.Function(f"F{i}")(*direction) for i in range(1, 4)]) / norm


def _cost(w: sp.Matrix) -> sp.Expr:
    """A concrete scale-invariant cost on ``R^3`` (homogeneous of degree 0, 001 Eq. 16)."""
    return (w[0] * w[1] + 2 * w[1] * w[2] - w[2] ** 2) / w.dot(w)


@cache
def _concrete_gradient_expr() -> tuple[sp.Matrix, sp.Matrix]:
    w = vector("z", 3)
    return w, sp.Matrix([sp.diff(_cost(w), wi) for wi in w])


def _concrete_gradient(at: sp.Matrix) -> sp.Matrix:
    """``grad J`` of :func:`_cost` at ``at``, differentiated once and evaluated there."""
    w, grad = _concrete_gradient_expr()
    return grad.subs(dict(zip(w, at)), simultaneous=True)


def _in_terms_of_power(expr: sp.Expr, base: sp.Expr) -> sp.Expr:
    """``expr`` with ``base^k`` named ``Q`` (``base^(-2k-1) = 1 / (Q^2 base)``)."""
    return sp.expand_power_exp(expr).subs(base**k, _Q)


# ---------------------------------------------------------------- plain SGD

_rho = sp.Symbol("rho", positive=True)  # 1 - alpha lam


def _sgd_with_decay_rescaled() -> sp.Matrix:
    """The decay run's next iterate from ``w_k = Q w~`` (``Q = (1 - alpha lam)^k``), divided by
    ``(1 - alpha lam)^(k+1)``."""
    w = _Q * vector("w", 3)
    return (_rho * w - alpha * _generic_gradient(w)) / (_Q * _rho)


def _sgd_without_decay(schedule: sp.Expr) -> sp.Matrix:
    """The decay-free run's next iterate from ``w~`` at the learning rate ``schedule(k)``."""
    lr_k = _in_terms_of_power(schedule.subs(lam, (1 - _rho) / alpha), _rho)
    w_tilde = vector("w", 3)
    return w_tilde - lr_k * _generic_gradient(w_tilde)


identity(
    name="sgd_exp_lr_equivalence",
    topic="schedules",
    domain=(_rho < 1,),
    source="001 Sec. 4.3 (Li and Arora 2020); 000 slides, 'Counteracting the implicit LR effect'",
    statement=r"\tilde{\mathbf{w}}_k = \frac{\mathbf{w}_k}{(1-\alpha\lambda)^k}:\ "
    r"\tilde{\mathbf{w}}_{k+1} = \tilde{\mathbf{w}}_k - \alpha(1-\alpha\lambda)^{-2k-1}"
    r"\nabla\mathcal{J}(\tilde{\mathbf{w}}_k)\ \text{exactly, for scale-invariant}\ \mathcal{J}",
    claim=_sgd_with_decay_rescaled,
    expected=lambda: _sgd_without_decay(SGD_EQUIVALENT_LR),
    control=lambda: _sgd_without_decay(alpha * (1 - alpha * lam) ** (-2 * k)),
    simplifier=sp.cancel,
    note="Induction step for symbolic k with the gradient of an arbitrary scale-invariant J on "
    "R^3 (any field homogeneous of degree -1); the base case is w~_0 = w_0. The control uses "
    "the schedule alpha (1 - alpha lam)^(-2k), one factor short.",
)


# ---------------------------------------------------------------- momentum SGD


def _sgdm_state(w: sp.Matrix, m: sp.Matrix, power: sp.Expr) -> tuple[sp.Matrix, sp.Matrix]:
    """Decay-free state ``(w~, m~)`` matching the decay state ``(w, m)`` when ``r^k = power``."""
    weight, buffer, shift = (
        _in_terms_of_power(e, r).subs(_Q, power)
        for e in (SGDM_WEIGHT_SCALE, SGDM_BUFFER_SCALE, SGDM_BUFFER_SHIFT)
    )
    return weight * w, buffer * m + shift * w


def _sgdm_step(w: sp.Matrix, m: sp.Matrix, lr, decay, momentum, gradient=_generic_gradient):
    """One ``torch.optim.SGD`` step: ``m <- momentum m + grad J(w) + decay w``,
    ``w <- w - lr m``."""
    m_next = momentum * m + gradient(w) + decay * w
    return w - lr * m_next, m_next


_LAM_OF_R = (1 + mu - r - mu / r) / alpha
"""``lam`` for which ``r`` solves :data:`SGDM_GROWTH_QUADRATIC` (so ``r`` may stay symbolic)."""

_GROWTH_DOMAIN = (mu < r, r < 1, mu < 1)
"""``mu < r < 1``: exactly where :data:`_LAM_OF_R` is a weight decay, ``0 < alpha lam < 1``
(``alpha lam = (1 - r)(r - mu) / r``)."""


def _sgdm_induction(buffer_shift: sp.Expr) -> sp.Matrix:
    """Decay-free state ``(w~, m~)`` one step after the state matched to a generic ``(w, m)`` at
    step ``k`` (``r^k = Q``), with ``buffer_shift w`` added to the matched buffer."""
    w, m = vector("w", 3), vector("m", 3)
    w_tilde, m_tilde = _sgdm_state(w, m, _Q)
    lr_k = _in_terms_of_power(SGDM_EQUIVALENT_LR, r)
    step = _sgdm_step(w_tilde, m_tilde + buffer_shift * w, lr_k, 0, mu)
    return sp.Matrix.vstack(*step)


def _sgdm_induction_target() -> sp.Matrix:
    """The decay run's next state ``(w, m)``, mapped with ``r^(k+1) = Q r``."""
    w, m = vector("w", 3), vector("m", 3)
    w_next, m_next = _sgdm_step(w, m, alpha, _LAM_OF_R, mu)
    return sp.Matrix.vstack(*_sgdm_state(w_next, m_next, _Q * r))


identity(
    name="sgdm_exp_lr_equivalence",
    topic="schedules",
    domain=_GROWTH_DOMAIN,
    source="001 Sec. 4.3 (Li and Arora 2020, momentum case); 000 slides, 'Counteracting the "
    "implicit LR effect'",
    statement=r"r^2-(1+\mu-\alpha\lambda)r+\mu=0,\ \tilde{\mathbf{w}}_k=r^{-k}\mathbf{w}_k,\ "
    r"\tilde{\mathbf{m}}_k = r^k\mathbf{m}_k - \frac{r^{k-1}(1-r)}{\alpha}\mathbf{w}_k:\ "
    r"\text{SGDM}(\alpha,\lambda,\mu)\equiv\text{SGDM}(\alpha r^{-2k-1}, 0, \mu)",
    claim=lambda: _sgdm_induction(0),
    expected=_sgdm_induction_target,
    control=lambda: _sgdm_induction((1 - r) * _Q / (alpha * r)),
    simplifier=sp.cancel,
    note="Induction step for symbolic k and symbolic growth factor r (lam eliminated through the "
    "quadratic, so it holds for either root), with the gradient of an arbitrary scale-invariant "
    "J on R^3 (any field homogeneous of degree -1). The "
    "control drops the buffer shift (m~_k = r^k m_k), which is wrong.",
)

_EXAMPLE = {alpha: sp.Rational(1, 10), mu: sp.Rational(1, 2), r: sp.Rational(9, 10)}
"""Exact rational hyperparameters of the three-step check (``lam = 4/9``; ``r`` the larger
root)."""


def _sgdm_runs(initial_buffer: str, steps: int = 3) -> tuple[sp.Matrix, sp.Matrix]:
    """``w_3 / r^3`` of the decay run from ``(w_0, 0)`` and ``w~_3`` of the decay-free run from
    ``w_0`` with the ``"matched"`` buffer ``-(1 - r) w_0 / (alpha r)`` or torch's ``"empty"``
    one."""
    lr, momentum, growth = (_EXAMPLE[s] for s in (alpha, mu, r))
    decay = _LAM_OF_R.subs(_EXAMPLE)
    w, m = sp.Matrix([1, 2, -1]), sp.zeros(3, 1)
    w_tilde, m_tilde = (e.subs(_EXAMPLE) for e in _sgdm_state(w, m, sp.Integer(1)))
    if initial_buffer == "empty":
        m_tilde = sp.zeros(3, 1)
    for step in range(steps):
        w, m = _sgdm_step(w, m, lr, decay, momentum, _concrete_gradient)
        lr_step = lr * growth ** (-2 * step - 1)
        w_tilde, m_tilde = _sgdm_step(w_tilde, m_tilde, lr_step, 0, momentum, _concrete_gradient)
    return w / growth**steps, w_tilde


identity(
    name="sgdm_exp_lr_three_steps",
    topic="schedules",
    source="001 Sec. 4.3 (Li and Arora 2020, momentum case)",
    statement=r"\mathbf{m}_0 = 0,\ \tilde{\mathbf{m}}_0 = -\frac{1-r}{\alpha r}\mathbf{w}_0:\ "
    r"\tilde{\mathbf{w}}_3 = \mathbf{w}_3/r^3\ \text{exactly}\ (\alpha=\tfrac1{10},\ \mu=\tfrac12,"
    r"\ \lambda=\tfrac49,\ r=\tfrac9{10})",
    claim=lambda: _sgdm_runs("matched")[0],
    expected=lambda: _sgdm_runs("matched")[1],
    control=lambda: _sgdm_runs("empty")[1],
    simplifier=sp.cancel,
    note="Both runs in exact rational arithmetic from w_0 = (1, 2, -1) with the concrete "
    "scale-invariant J = (w1 w2 + 2 w2 w3 - w3^2)/||w||^2. The control starts the "
    "decay-free run with torch's empty buffer (m~_0 = 0): the equivalence then fails, so the "
    "initial buffer is part of the theorem.",
)

identity(
    name="sgdm_exp_lr_growth_factor",
    topic="schedules",
    domain=HYPERPARAMETERS,
    source="001 Sec. 4.3 (Li and Arora 2020)",
    statement=r"r = \frac{1+\mu-\alpha\lambda+\sqrt{(1+\mu-\alpha\lambda)^2-4\mu}}{2}"
    r"\ \text{solves}\ r^2-(1+\mu-\alpha\lambda)r+\mu=0;\ \mu=0:\ r = 1-\alpha\lambda",
    claim=lambda: (SGDM_GROWTH_QUADRATIC.subs(r, SGDM_GROWTH), SGDM_GROWTH.subs(mu, 0)),
    expected=lambda: (sp.Integer(0), 1 - alpha * lam),
    control=lambda: (sp.Integer(0), sp.Integer(0)),
    simplifier=on_hyperparameter_domain,
    note="The larger root reduces to plain SGD's factor 1 - alpha lam (the smaller one to 0, "
    "the control), so the momentum theorem contains the plain one.",
)


# ---------------------------------------------------------------- NumPy forms for sim/


def _lambdified(expr: sp.Expr, *symbols: sp.Symbol):
    return sp.lambdify(symbols, expr, "numpy")


_sgd_lr = _lambdified(SGD_EQUIVALENT_LR, k, alpha, lam)
_sgd_weight_scale = _lambdified(SGD_WEIGHT_SCALE, k, alpha, lam)
_sgdm_growth = _lambdified(SGDM_GROWTH, alpha, lam, mu)
_sgdm_lr = _lambdified(SGDM_EQUIVALENT_LR, k, alpha, r)
_sgdm_scales = _lambdified((SGDM_WEIGHT_SCALE, SGDM_BUFFER_SCALE, SGDM_BUFFER_SHIFT), k, alpha, r)


def _checked(step, lr, weight_decay, momentum=0.0):
    """Float arrays of the arguments, or a ``ValueError`` naming the offending one."""
    step_array = checks.nonnegative("step", step)
    if np.any(step_array != np.round(step_array)):
        checks.fail("step", step, "non-negative integers")
    lr, weight_decay = checks.positive("lr", lr), checks.nonnegative("weight_decay", weight_decay)
    checks.decay_factor(lr, weight_decay)
    momentum = checks.unit_interval("momentum", momentum)
    if np.any(lr * weight_decay > (1 - np.sqrt(momentum)) ** 2):
        checks.fail("weight_decay", weight_decay, "lr * weight_decay <= (1 - sqrt(momentum))^2 "
                    "for a real growth factor (the momentum equivalence has no real exponential "
                    "schedule beyond it)")
    return step_array, lr, weight_decay, momentum


def sgd_equivalent_lr(step, *, lr, weight_decay) -> np.ndarray:
    """Learning rate ``lr (1 - lr wd)^(-2 step - 1)`` of the decay-free SGD run that follows SGD
    with weight decay exactly (in direction); broadcasts."""
    step, lr, weight_decay, _ = _checked(step, lr, weight_decay)
    return np.asarray(_sgd_lr(step, lr, weight_decay))


def sgd_equivalent_weights(weights, step, *, lr, weight_decay) -> np.ndarray:
    """``w~_k = w_k / (1 - lr wd)^k`` for the weights ``w_k`` of the decay run at ``step``
    (weights ``(..., d)``, the scalars broadcast against ``weights[..., 0]``)."""
    step, lr, weight_decay, _ = _checked(step, lr, weight_decay)
    return np.asarray(_sgd_weight_scale(step, lr, weight_decay))[..., None] * np.asarray(weights)


def _step_lr_growth(step, lr, weight_decay, momentum) -> tuple[np.ndarray, ...]:
    step, lr, weight_decay, momentum = _checked(step, lr, weight_decay, momentum)
    return step, lr, np.asarray(_sgdm_growth(lr, weight_decay, momentum))


def sgdm_growth_factor(*, lr, weight_decay, momentum) -> np.ndarray:
    """The growth factor ``r`` (:data:`SGDM_GROWTH`) of the momentum equivalence; broadcasts."""
    return _step_lr_growth(0, lr, weight_decay, momentum)[2]


def sgdm_equivalent_lr(step, *, lr, weight_decay, momentum) -> np.ndarray:
    """Learning rate ``lr r^(-2 step - 1)`` of the decay-free momentum run; broadcasts."""
    return np.asarray(_sgdm_lr(*_step_lr_growth(step, lr, weight_decay, momentum)))


def sgdm_equivalent_state(
    weights, buffer, step, *, lr, weight_decay, momentum
) -> tuple[np.ndarray, np.ndarray]:
    """The decay-free state ``(w~_k, m~_k)`` matching the decay run's ``(w_k, m_k)`` at ``step``
    (arrays ``(..., d)``; the scalars broadcast against ``weights[..., 0]``):
    ``w~ = r^-k w``, ``m~ = r^k m - r^(k-1) (1 - r) w / lr``. At ``step = 0`` with torch's empty
    buffer (``m_0 = 0``) it gives the initial buffer the decay-free run must start from (set
    ``optimizer.state[p]["momentum_buffer"]`` before its first step)."""
    scales = _sgdm_scales(*_step_lr_growth(step, lr, weight_decay, momentum))
    weight_scale, buffer_scale, shift = (np.asarray(s)[..., None] for s in scales)
    weights, buffer = np.asarray(weights, dtype=float), np.asarray(buffer, dtype=float)
    return weight_scale * weights, buffer_scale * buffer + shift * weights
