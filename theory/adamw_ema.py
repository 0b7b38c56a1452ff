"""AdamW's weights as an exponential moving average of its updates (Wang and Aitchison 2024,
"How to set AdamW's weight decay as you scale model and dataset size").

The decoupled step ``w' = (1 - eta lam) w - eta u`` is ``w' = (1 - eps) w + eps (-u / lam)`` with
``eps = eta lam``: an exponential moving average of ``-u / lam`` whose time constant is
``tau = 1 / (eta lam)`` iterations. After ``t`` steps the weights are the initial weights'
share ``(1 - eps)^t`` plus the updates' weights ``eps (1 - eps)^(t-1-s)``, and the shares sum to
one (a proper average). In epochs of ``N / B`` iterations (dataset size ``N``, batch size
``B``) the time constant is ``tau_epoch = B / (eta lam N)``; holding it fixed as the dataset or
the batch changes sets ``lam = B / (eta N tau_epoch)``: ``lam`` falls as ``1 / N`` with the
dataset and rises with the batch at a fixed learning rate.
"""

from __future__ import annotations

import sympy as sp

from scalewise.theory.equilibrium import alpha, lam
from scalewise.theory.identity import identity

N, B, tau_epoch = sp.symbols("N B tau_epoch", positive=True)
steps = sp.Symbol("t", integer=True, positive=True)
_j = sp.Symbol("j", integer=True, nonnegative=True)

TOPIC = "beyond the seeds: AdamW as a moving average"

TIME_CONSTANT = 1 / (alpha * lam)
"""``tau`` in iterations."""

EPOCH_TIME_CONSTANT = TIME_CONSTANT * B / N
"""``tau`` in epochs of ``N / B`` iterations."""

_STEPS = 4
_w0 = sp.Symbol("w_0")
_u = sp.symbols(f"u_0:{_STEPS}")


def _unrolled_recurrence() -> sp.Expr:
    """``w_4`` by four decoupled steps (one coordinate; the updates arbitrary)."""
    w = _w0
    for u in _u:
        w = (1 - alpha * lam) * w - alpha * u
    return w


def _moving_average(eps: sp.Expr) -> sp.Expr:
    """``(1 - eps)^4 w_0 + sum_s eps (1 - eps)^(3-s) (-u_s / lam)``."""
    return (1 - eps) ** _STEPS * _w0 + sum(
        eps * (1 - eps) ** (_STEPS - 1 - i) * (-u / lam) for i, u in enumerate(_u))


identity(
    name="adamw_moving_average",
    topic=TOPIC,
    source="Wang and Aitchison 2024, Sec. 3; derived here",
    statement=r"\mathbf w_t = (1-\eta\lambda)^t\mathbf w_0 + \sum_{s<t}\eta\lambda"
    r"(1-\eta\lambda)^{t-1-s}\Big(-\frac{\mathbf u_s}{\lambda}\Big)\ (t = 4)",
    claim=_unrolled_recurrence,
    expected=lambda: _moving_average(alpha * lam),
    control=lambda: _moving_average(alpha),
    simplifier=sp.expand,
    note="Four AdamW steps with arbitrary updates u_s (the shrink, then the step) against the "
    "moving average of -u/lambda with coefficient eta lambda. The control uses the learning "
    "rate alone as the coefficient.",
)

_keep = sp.Symbol("rho", positive=True)  # 1 - eta lam


def _shares(shift: int) -> sp.Expr:
    """``rho^t + sum_{s<t} (1 - rho) rho^(t-1-s+shift)``: the shares of ``w_0`` and the
    updates."""
    return sp.simplify(_keep**steps + sp.summation(
        (1 - _keep) * _keep ** (steps - 1 - _j + shift), (_j, 0, steps - 1)))


identity(
    name="adamw_average_weights_sum_to_one",
    topic=TOPIC,
    source="Wang and Aitchison 2024, Sec. 3; derived here",
    statement=r"(1-\epsilon)^t + \sum_{s=0}^{t-1}\epsilon(1-\epsilon)^{t-1-s} = 1,"
    r"\ \epsilon = \eta\lambda\ \text{(any}\ t)",
    claim=lambda: _shares(0),
    expected=lambda: sp.Integer(1),
    control=lambda: _shares(1),
    domain=(_keep < 1,),
    note="Symbolic t, with 1 - eta lambda written as one positive symbol rho < 1: the weights "
    "form a proper average, so -u/lambda is what w tracks. The control shifts the exponent "
    "by one.",
)

identity(
    name="adamw_decay_for_dataset_and_batch",
    topic=TOPIC,
    source="Wang and Aitchison 2024, Sec. 4 (the scaling rule); derived here",
    statement=r"\tau_{\text{epoch}} = \frac{B}{\eta\lambda N}\ \Rightarrow\ "
    r"\lambda = \frac{B}{\eta N\tau_{\text{epoch}}};\ \lambda(2N)/\lambda(N) = \tfrac12,\ "
    r"\lambda(2B)/\lambda(B) = 2",
    claim=lambda: (sp.solve(sp.Eq(EPOCH_TIME_CONSTANT, tau_epoch), lam)[0],),
    expected=lambda: (B / (alpha * N * tau_epoch),),
    control=lambda: (B / (alpha * sp.sqrt(N) * tau_epoch),),
    note="Holding the time constant in epochs fixed: a dataset twice as large halves lambda, a "
    "batch twice as large doubles it (at a fixed learning rate; where eta is scaled with B, "
    "lambda follows B/eta). The control scales lambda as 1/sqrt(N).",
)

decay_for = sp.lambdify((alpha, N, B, tau_epoch), B / (alpha * N * tau_epoch), "numpy")
"""``lam = B / (eta N tau_epoch)``, NumPy form for sim/ and the explorer."""
