"""Adaptive gradient methods: Adagrad against RMSprop, Adam's bias correction, and the (batch)
empirical Fisher matrix whose diagonal they estimate.

Sources: 001 Sec. 2 (the RMSprop, Adagrad and Adam updates), 001 Eq. (2) (empirical Fisher of
per-example gradients), 001 Eq. (4) (the batch version actually computed), 000 slides 2-3.

Notation: ``beta`` the decay of an exponential moving average (EMA); ``beta1``, ``beta2`` Adam's
two decays; ``c`` a constant gradient coordinate; ``k >= 1`` the step; ``batch`` the batch size
``|B|``; ``mu`` and ``sigma**2`` the mean and variance of one per-example gradient coordinate.

The accumulators after ``k`` steps of a constant gradient ``c`` (``eps = 0``)::

    Adagrad  f_k = sum_{j<=k} c^2                        = k c^2
    RMSprop  s_k = sum_{j<=k} (1-beta) beta^(k-j) c^2     = (1 - beta^k) c^2

so the Adagrad step is smaller than RMSprop's by exactly ``sqrt((1 - beta^k)/k)``, which is
``1/sqrt(k)`` to leading order. Both accumulators are linear in the squared gradients, so the same
holds in expectation for stochastic gradients with a constant second moment ``E[g_k^2]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import sympy as sp

from scalewise import checks
from scalewise.theory.identity import identity, slip
from scalewise.theory.symbolic import lower_triangular, weighted_sum

beta, beta1, beta2, t = sp.symbols("beta beta_1 beta_2 t", positive=True)
alpha, mu, sigma, batch = sp.symbols("alpha mu sigma B", positive=True)
c = sp.Symbol("c", real=True, nonzero=True)
k = sp.Symbol("k", integer=True, positive=True)
_j = sp.Symbol("j", integer=True, positive=True)
_age = sp.Symbol("i", integer=True, nonnegative=True)

EMA_DECAYS = (beta < 1, beta1 < 1, beta2 < 1)
"""The domain of the statements about moving averages: every decay in ``(0, 1)``."""

ADAGRAD_RMSPROP_STEP_RATIO = sp.sqrt((1 - beta**k) / k)
"""``|Adagrad step| / |RMSprop step|`` after ``k`` steps of a constant gradient scale."""

BIAS_CORRECTION = 1 - beta**k
"""Adam's bias-correction divisor ``1 - beta^k`` (001 Sec. 2, Adam update)."""

RMSPROP_CONSTANT_GRADIENT_STEP = alpha * sp.sign(c) / sp.sqrt(1 - beta**k)
"""RMSprop's step ``alpha c / sqrt(s_k)`` for a constant gradient ``c`` (``eps = 0``): without
bias correction it starts ``1/sqrt(1 - beta)`` times too large and tends to ``alpha sign(c)``."""

BATCH_SECOND_MOMENT = sigma**2 / batch + mu**2
"""Diagonal entry of the batch empirical Fisher matrix: ``E[g_B^2]`` for a coordinate whose
per-example gradients have mean ``mu`` and variance ``sigma^2`` (001 Eq. 4)."""

ADAM_BATCH_STEP = alpha * mu / sp.sqrt(BATCH_SECOND_MOMENT)
"""Adam's step on a coordinate once its moment estimates have converged to their expectations
(``m_hat -> mu``, ``s_hat -> E[g_B^2]``, ``eps = 0``): it grows with the batch size."""


def on_unit_interval(expr: sp.Expr) -> sp.Expr:
    """Simplify ``expr`` for an EMA decay ``0 < beta < 1``. The substitution
    ``beta = 1/(1 + t)``, ``t > 0``, maps onto exactly that range, so SymPy can decide that
    ``beta^k -> 0`` and that geometric series converge."""
    return sp.simplify(sp.sympify(expr).subs(beta, 1 / (1 + t)))


def standardized_expectation(
    expr: sp.Expr | sp.MatrixBase, noise: Sequence[sp.Symbol]
) -> sp.Expr | sp.MatrixBase:
    """``E[expr]`` where ``noise`` are uncorrelated standardized random variables
    (``E[z_i] = 0``, ``E[z_i z_j] = delta_ij``) and ``expr`` is a polynomial of degree at most 2
    in them: exactly what the first two moments determine. Matrices are taken entrywise.

    >>> z1, z2 = sp.symbols("z1 z2")
    >>> standardized_expectation((1 + z1 + z2) ** 2, (z1, z2))
    3
    """
    if isinstance(expr, sp.MatrixBase):
        return expr.applyfunc(lambda entry: standardized_expectation(entry, noise))
    total = sp.Integer(0)
    for powers, coefficient in sp.Poly(sp.expand(expr), *noise).terms():
        degree = sum(powers)
        if degree > 2:
            checks.fail("expr", expr, "a polynomial of degree <= 2 in the noise (only those "
                        f"are determined by two moments); it has a term of degree {degree}")
        if degree == 0 or max(powers) == 2:
            total += coefficient
    return total


@cache
def ema_of_constant(decay: sp.Symbol, value: sp.Expr) -> sp.Expr:
    """EMA after ``k`` steps of a constant input, started at 0: the solution of
    ``m_k = decay m_{k-1} + (1 - decay) value``, ``m_0 = 0`` (001 Sec. 2)."""
    m = sp.Function("m")
    return sp.rsolve(m(k) - decay * m(k - 1) - (1 - decay) * value, m(k), {m(0): 0})


@cache
def _step_ratio() -> sp.Expr:
    """``sqrt(s_k / f_k)``: the step sizes ``alpha |c| / sqrt(accumulator)`` share ``alpha |c|``."""
    rmsprop = sp.summation((1 - beta) * beta ** (k - _j) * c**2, (_j, 1, k))
    adagrad = sp.summation(c**2, (_j, 1, k))
    return sp.sqrt(rmsprop / adagrad)


# ---------------------------------------------------------------- Adagrad against RMSprop

identity(
    name="adagrad_rmsprop_step_ratio",
    topic="adaptive",
    domain=EMA_DECAYS,
    source="001 Sec. 2 (Adagrad and RMSprop updates)",
    statement=r"g_k^2 = c^2:\ \frac{\|\Delta\mathbf{w}_k^{\mathrm{Adagrad}}\|}"
    r"{\|\Delta\mathbf{w}_k^{\mathrm{RMSprop}}\|}"
    r" = \sqrt{\frac{\sum_{j\le k}(1-\beta)\beta^{k-j}c^2}{\sum_{j\le k}c^2}}"
    r" = \sqrt{\frac{1-\beta^k}{k}}",
    claim=_step_ratio,
    expected=lambda: ADAGRAD_RMSPROP_STEP_RATIO,
    control=lambda: (1 - beta**k) / k,
    note="The accumulators differ by the factor k/(1-beta^k); the steps, which divide by their "
    "square roots, by its square root. eps = 0.",
)

identity(
    name="adagrad_rmsprop_ratio_asymptotic",
    topic="adaptive",
    domain=EMA_DECAYS,
    source="001 Sec. 2 (Adagrad vs RMSprop, O(1/sqrt(k)))",
    statement=r"\lim_{k\to\infty}\sqrt{k}\,\sqrt{\frac{1-\beta^k}{k}} = 1"
    r"\quad(0<\beta<1):\ \text{Adagrad's step is RMSprop's times } 1/\sqrt{k}",
    claim=lambda: sp.limit(on_unit_interval(sp.sqrt(k) * _step_ratio()), k, sp.oo),
    expected=lambda: sp.Integer(1),
    control=lambda: sp.sqrt(1 - beta),
    note="The implicit schedule is exactly 1/sqrt(k) asymptotically, with no (1-beta) factor: "
    "sqrt(1-beta) is the ratio at k = 1 only, where RMSprop's unnormalized EMA is still small.",
)


@cache
def _ema_weight_moments() -> tuple[sp.Expr, sp.Expr]:
    """Total weight and mean position ``sum (i+1) w_i`` of the EMA weights
    ``w_i = (1-beta) beta^i`` on the gradient ``i`` steps back."""
    return tuple(
        on_unit_interval((1 - beta) * sp.summation(sp.expand(weight * beta**_age), (_age, 0, sp.oo)))
        for weight in (1, _age + 1)
    )


identity(
    name="ema_timescale",
    topic="adaptive",
    domain=EMA_DECAYS,
    source="001 Sec. 2 (footnote: averaged over about the last 1/(1-beta) iterations)",
    statement=r"\sum_{i\ge0}(1-\beta)\beta^i = 1,\quad"
    r"\sum_{i\ge0}(i+1)(1-\beta)\beta^i = \frac{1}{1-\beta}",
    claim=_ema_weight_moments,
    expected=lambda: (sp.Integer(1), on_unit_interval(1 / (1 - beta))),
    control=lambda: (sp.Integer(1), on_unit_interval(beta / (1 - beta))),
    note="The EMA weights sum to one and the mean position of a weighted gradient, counting the "
    "newest as 1, is 1/(1-beta): the averaging window of the notes, exactly.",
)

# ---------------------------------------------------------------- Adam's bias correction

identity(
    name="ema_of_constant",
    topic="adaptive",
    domain=EMA_DECAYS,
    source="001 Sec. 2 (Adam update)",
    statement=r"m_0 = 0,\ m_k = \beta m_{k-1} + (1-\beta)c \;\Rightarrow\; m_k = (1-\beta^k)\,c",
    claim=lambda: ema_of_constant(beta, c),
    expected=lambda: BIAS_CORRECTION * c,
    control=lambda: c,
    simplifier=sp.expand,
    note="Solved with rsolve. The zero start biases the EMA towards 0 by the factor 1-beta^k.",
)

identity(
    name="rmsprop_constant_gradient_step",
    topic="adaptive",
    domain=EMA_DECAYS,
    source="001 Sec. 2 (RMSprop: updates of magnitude approximately alpha)",
    statement=r"\mathbf{g}_k = c,\ \epsilon = 0:\ \frac{\alpha c}{\sqrt{s_k}}"
    r" = \frac{\alpha\,\mathrm{sign}(c)}{\sqrt{1-\beta^k}} \xrightarrow{k\to\infty} \alpha\,\mathrm{sign}(c)",
    claim=lambda: (
        alpha * c / sp.sqrt(ema_of_constant(beta, c**2)),
        sp.limit(on_unit_interval(alpha * c / sp.sqrt(ema_of_constant(beta, c**2))), k, sp.oo),
    ),
    expected=lambda: (RMSPROP_CONSTANT_GRADIENT_STEP, alpha * sp.sign(c)),
    control=lambda: (alpha * sp.sign(c), alpha * sp.sign(c)),
    note="The notes' 'magnitude approximately alpha' holds after about 1/(1-beta) steps; the "
    "early excess is what Adam's bias correction removes.",
)

identity(
    name="adam_bias_correction",
    topic="adaptive",
    domain=EMA_DECAYS,
    source="001 Sec. 2 (Adam update, bias-corrected moments)",
    statement=r"\mathbf{g}_k = c:\ \hat m_k = \frac{m_k}{1-\beta_1^k} = c,\quad"
    r"\hat s_k = \frac{s_k}{1-\beta_2^k} = c^2",
    claim=lambda: (
        ema_of_constant(beta1, c) / BIAS_CORRECTION.subs(beta, beta1),
        ema_of_constant(beta2, c**2) / BIAS_CORRECTION.subs(beta, beta2),
    ),
    expected=lambda: (c, c**2),
    control=lambda: (ema_of_constant(beta1, c) / (1 - beta1), c**2),
    simplifier=sp.cancel,
    note="Both EMAs are linear in their inputs, so for stochastic gradients the corrected "
    "moments are unbiased for E[g] and E[g^2] whenever those are constant.",
)

identity(
    name="adam_constant_gradient_step",
    topic="adaptive",
    domain=EMA_DECAYS,
    source="001 Sec. 2 (Adam update, last line)",
    statement=r"\mathbf{g}_k = c,\ \epsilon = 0:\ "
    r"\alpha\,\hat m_k \oslash \sqrt{\hat s_k} = \alpha\,\mathrm{sign}(c)\ \text{for every } k",
    claim=lambda: alpha
    * (ema_of_constant(beta1, c) / BIAS_CORRECTION.subs(beta, beta1))
    / sp.sqrt(ema_of_constant(beta2, c**2) / BIAS_CORRECTION.subs(beta, beta2)),
    expected=lambda: alpha * sp.sign(c),
    control=lambda: alpha * c * sp.Abs(c),
    note="With bias correction every step has magnitude alpha from the first one on, which is "
    "the notes' reading of alpha as the per-weight step size. The control is the update as "
    "printed (an elementwise product with sqrt(s_hat)).",
)

slip(
    seed="001",
    place="Sec. 2, Adam update, last line",
    says=r"$\mathbf{w}_k \leftarrow \mathbf{w}_{k-1} - \alpha\hat{\mathbf{m}}_k \odot (\sqrt{\hat{\mathbf{s}}_k} + \epsilon\mathbf{I})$",
    truth=r"$\mathbf{w}_k \leftarrow \mathbf{w}_{k-1} - \alpha\hat{\mathbf{m}}_k \oslash (\sqrt{\hat{\mathbf{s}}_k} + \epsilon\mathbf{1})$: an elementwise division (as in RMSprop), with the all-ones vector; only then is the step $\alpha\,\mathrm{sign}(c)$ for a constant gradient $c$",
    identity="adam_constant_gradient_step",
)

# ---------------------------------------------------------------- empirical Fisher (Eq. 2 and 4)

_SUPPORT = 3
"""Support size of the discrete gradient distribution used for Eq. (2); any size works."""


def _discrete_gradient_law(dim: int) -> tuple[list[sp.Matrix], list[sp.Expr]]:
    """A generic discrete distribution of per-example gradients in ``R^dim``: symbolic support
    points and probabilities ``p_1, p_2, 1 - p_1 - p_2``."""
    points = [sp.Matrix(sp.symbols(f"g{i}_1:{dim + 1}", real=True)) for i in range(_SUPPORT)]
    free = list(sp.symbols(f"p1:{_SUPPORT}", positive=True))
    return points, free + [1 - sum(free)]


def _fisher_sides(dim: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """``E[g g^T]``, ``Cov(g)`` and ``E[g] E[g]^T`` of the discrete law."""
    points, probabilities = _discrete_gradient_law(dim)
    mean = weighted_sum(points, probabilities)
    second = weighted_sum([g * g.T for g in points], probabilities)
    covariance = weighted_sum([(g - mean) * (g - mean).T for g in points], probabilities)
    return second, covariance, mean * mean.T


identity(
    name="empirical_fisher_decomposition",
    topic="adaptive",
    source="001 Eq. (2)",
    statement=r"\mathbb{E}[\nabla\mathcal{J}_{\mathbf{x},t}\nabla\mathcal{J}_{\mathbf{x},t}^\top]"
    r" = \mathrm{Cov}(\nabla\mathcal{J}_{\mathbf{x},t}) + \nabla\mathcal{J}\nabla\mathcal{J}^\top",
    claim=lambda n: _fisher_sides(n)[0],
    expected=lambda n: _fisher_sides(n)[1] + _fisher_sides(n)[2],
    control=lambda n: _fisher_sides(n)[1],
    sizes=(1, 2),
    simplifier=sp.expand,
    note="Checked for a generic discrete law of gradients (3 support points, symbolic "
    "probabilities) in dimensions 1 and 2.",
)

_DIM = 2
"""Gradient dimension for the batch Fisher check."""


def _batch_fisher(size: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """``E[g_B g_B^T]``, the per-example covariance and ``grad J grad J^T`` for a batch mean of
    ``size`` iid per-example gradients ``g_b = mean + L z_b`` (``Cov = L L^T``, any law with
    these two moments)."""
    mean = sp.Matrix(sp.symbols(f"mu1:{_DIM + 1}", real=True))
    factor = lower_triangular("L", _DIM)
    noise = [sp.Matrix(sp.symbols(f"z{b}_1:{_DIM + 1}")) for b in range(size)]
    flat = [z for zb in noise for z in zb]
    batch_mean = sum((mean + factor * zb for zb in noise), start=sp.zeros(_DIM, 1)) / size
    covariance = standardized_expectation(factor * noise[0] * (factor * noise[0]).T, flat)
    return standardized_expectation(batch_mean * batch_mean.T, flat), covariance, mean * mean.T


identity(
    name="batch_empirical_fisher",
    topic="adaptive",
    source="001 Eq. (4)",
    statement=r"\mathbb{E}_{\mathcal{B}}[\nabla\mathcal{J}_{\mathcal{B}}\nabla\mathcal{J}_{\mathcal{B}}^\top]"
    r" = \frac{1}{|\mathcal{B}|}\mathrm{Cov}(\nabla\mathcal{J}_{\mathbf{x},t})"
    r" + \nabla\mathcal{J}\nabla\mathcal{J}^\top",
    claim=lambda n: _batch_fisher(n)[0],
    expected=lambda n: _batch_fisher(n)[1] / n + _batch_fisher(n)[2],
    control=lambda n: _batch_fisher(n)[1] + _batch_fisher(n)[2],
    sizes=(1, 2, 3),
    simplifier=sp.expand,
    note="Size = batch size |B|; gradients in R^2 with a full covariance L L^T. Only the first "
    "two moments of the per-example law enter.",
)

def _scalar_batch_second_moment(size: int) -> sp.Expr:
    """``E[g_B^2]`` for the mean of ``size`` iid per-example gradients ``mu + sigma z_b``."""
    noise = sp.symbols(f"z1:{size + 1}")
    return standardized_expectation((sum(mu + sigma * z for z in noise) / size) ** 2, noise)


identity(
    name="batch_second_moment",
    topic="adaptive",
    source="001 Eq. (4), one coordinate (the diagonal RMSprop and Adam estimate)",
    statement=r"\mathbb{E}[g_{\mathcal{B}}^2] = \frac{\sigma^2}{|\mathcal{B}|} + \mu^2",
    claim=_scalar_batch_second_moment,
    expected=lambda n: BATCH_SECOND_MOMENT.subs(batch, n),
    control=lambda n: BATCH_SECOND_MOMENT.subs(batch, 1),
    sizes=(1, 2, 3),
    simplifier=sp.expand,
    note="The closed form exported as BATCH_SECOND_MOMENT, derived for batch sizes 1, 2, 3.",
)

identity(
    name="adam_step_grows_with_batch",
    topic="adaptive",
    source="001 Sec. 2.1 (after Eq. 4: larger batches, larger effective learning rates)",
    statement=r"\frac{\partial}{\partial|\mathcal{B}|}\mathbb{E}[g_{\mathcal{B}}^2]"
    r" = -\frac{\sigma^2}{|\mathcal{B}|^2},\quad"
    r"\frac{\partial}{\partial|\mathcal{B}|}\frac{\alpha\mu}{\sqrt{\mathbb{E}[g_{\mathcal{B}}^2]}}"
    r" = \frac{\alpha\mu\sigma^2}{2|\mathcal{B}|^2(\mu^2+\sigma^2/|\mathcal{B}|)^{3/2}} > 0,\quad"
    r"\lim_{|\mathcal{B}|\to\infty} = \alpha",
    claim=lambda: (
        sp.diff(BATCH_SECOND_MOMENT, batch),
        sp.diff(ADAM_BATCH_STEP, batch),
        sp.limit(ADAM_BATCH_STEP, batch, sp.oo),
    ),
    expected=lambda: (
        -(sigma**2) / batch**2,
        alpha * mu * sigma**2 / (2 * batch**2 * (mu**2 + sigma**2 / batch) ** sp.Rational(3, 2)),
        alpha,
    ),
    control=lambda: (-(sigma**2) / batch**2, sp.Integer(0), alpha),
    note="The control is SGD's behaviour (expected step alpha*mu, independent of |B|): the batch "
    "dependence is Adam's alone. Every term of the derivative is positive.",
)


slip(
    seed="001",
    place="Sec. 6 (Discussion), first item of the list of confounds",
    says=r"For Adam, RMSprop, etc., larger batch sizes result in more gradient noise, and hence smaller steps",
    truth=r"larger batches give less gradient noise: the covariance term of $\mathbf{F}_{\mathrm{emp}}^{\mathrm{batch}}$ is $\frac{1}{|\mathcal{B}|}\mathrm{Cov}$ (Eq. 4), so $\mathbb{E}[g_{\mathcal{B}}^2] = \sigma^2/|\mathcal{B}| + \mu^2$ falls and the step $\alpha\mu/\sqrt{\mathbb{E}[g_{\mathcal{B}}^2]}$ grows with $|\mathcal{B}|$ towards $\alpha$: larger steps, as Sec. 2.1 says after Eq. (4)",
    identity="adam_step_grows_with_batch",
)

# ---------------------------------------------------------------- NumPy forms for sim/ and models/

adagrad_rmsprop_step_ratio = sp.lambdify((k, beta), ADAGRAD_RMSPROP_STEP_RATIO, "numpy")
bias_correction = sp.lambdify((k, beta), BIAS_CORRECTION, "numpy")
rmsprop_constant_gradient_step = sp.lambdify(
    (k, beta, alpha, c), RMSPROP_CONSTANT_GRADIENT_STEP, "numpy"
)
batch_second_moment = sp.lambdify((batch, mu, sigma), BATCH_SECOND_MOMENT, "numpy")
adam_batch_step = sp.lambdify((batch, mu, sigma, alpha), ADAM_BATCH_STEP, "numpy")
