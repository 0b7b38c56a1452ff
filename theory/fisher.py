"""The true Fisher matrix of a softmax output is its Gauss-Newton matrix (001 Eq. (1) and the
text after it: ``F = G`` when the output layer gives the natural parameters of an exponential
family and the loss is its negative log-likelihood).

A classifier with ``C`` classes outputs logits ``z``, ``p = softmax(z)``, and the loss of a
target ``t`` is ``-log p_t``; ``Dw = grad_w(-log p_t) = J^T (p - e_t)`` with ``J = dz/dw``.
Sampling ``t ~ p`` (the model's own distribution), the expectation over ``t`` is the finite sum
``sum_t p_t (...)``, so

    F = E_{t~p}[Dw Dw^T] = J^T (sum_t p_t (p - e_t)(p - e_t)^T) J = J^T (diag p - p p^T) J = G,

and ``diag p - p p^T`` is the Hessian ``H_z`` of ``-log p_t`` in the logits, the same for every
target: the Gauss-Newton matrix ``G = J^T H_z J``. ``E_{t~p}[Dw] = 0`` as well, which is why
``F`` is a covariance (001 Sec. 2.1). The empirical Fisher takes ``t`` from the data instead
(001 Eq. 2) and is not ``G``.

At one input and one parameter value, ``F`` and ``G`` depend on the model only through its
logits ``z`` and their Jacobian ``J``, so the model is represented exactly by its linearization
``z(w) = z + J w`` at ``w = 0``, with symbolic logits ``z`` and a generic ``(C, P)`` Jacobian
``J``; every derivative is taken by differentiation. The per-input matrices average over inputs
(the ``x ~ p_data`` of Eq. 1) term by term. :func:`models.probes.softmax_hessian` is ``H_z`` on
a real network; ``tests/test_models_probes.py`` checks ``F = G`` and ``F_emp != G`` there.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise.theory.identity import identity, unpack
from scalewise.theory.symbolic import matrix, rational_numerator, vector

PARAMETERS = 2
"""Number ``P`` of parameters in the symbolic check (``J`` is ``(C, P)``)."""


def softmax(logits: sp.Matrix) -> sp.Matrix:
    """``p = exp(z) / sum exp(z)``, a column."""
    exps = logits.applyfunc(sp.exp)
    return exps / sum(exps)


def softmax_hessian(logits: sp.Matrix) -> sp.Matrix:
    """``diag(p) - p p^T``, ``p = softmax(z)``: the closed form of the cross-entropy's Hessian in
    the logits."""
    p = softmax(logits)
    return sp.diag(*p) - p * p.T


@cache
def _softmax_fisher_case(classes: int) -> tuple[sp.Matrix, ...]:
    """``(E_{t~p}[Dw], F, H_1, ..., H_C, J, z, Dw for t = 1)``: the mean gradient and the Fisher
    from the per-target gradients ``Dw_t``, and the Hessian ``H_t`` of ``-log p_t`` in the
    logits for every target, all by differentiation."""
    z, jac, w = vector("z", classes), matrix("J", classes, PARAMETERS), vector("w", PARAMETERS)
    at_zero = dict.fromkeys(w, 0)
    logits = z + jac * w
    log_partition = sp.log(sum(logits.applyfunc(sp.exp)))
    p = softmax(z)
    grads = [sp.Matrix([(log_partition - logits[t]).diff(v) for v in w]).subs(at_zero)
             for t in range(classes)]
    mean = sum((p[t] * g for t, g in enumerate(grads)), sp.zeros(PARAMETERS, 1))
    fisher = sum((p[t] * g * g.T for t, g in enumerate(grads)), sp.zeros(PARAMETERS, PARAMETERS))
    log_partition_z = sp.log(sum(z.applyfunc(sp.exp)))
    hessians = [sp.hessian(log_partition_z - z[t], list(z)) for t in range(classes)]
    return (mean, fisher, *hessians, jac, z, grads[0] * grads[0].T)


def _gauss_newton_sides(case: tuple[sp.Matrix, ...], fisher: sp.Matrix) -> tuple[sp.Matrix, ...]:
    """``(0, fisher, H_z, ..., H_z)`` with ``H_z = diag p - p p^T`` once per target."""
    *_, z, _ = case
    return (sp.zeros(PARAMETERS, 1), fisher, *[softmax_hessian(z)] * len(z))


def _gauss_newton(case: tuple[sp.Matrix, ...]) -> sp.Matrix:
    *_, jac, z, _ = case
    return jac.T * softmax_hessian(z) * jac


identity(
    name="softmax_fisher_is_gauss_newton",
    topic="adaptive",
    source="001 Eq. (1) and the text after it (Sec. 2.1)",
    statement=r"\mathbf{F} = \mathbb{E}_{t\sim p}[\mathcal{D}\mathbf{w}\mathcal{D}\mathbf{w}^\top]"
    r" = \sum_t p_t\,\mathcal{D}\mathbf{w}_t\mathcal{D}\mathbf{w}_t^\top"
    r" = \mathbf{J}^\top(\mathrm{diag}\,\mathbf{p} - \mathbf{p}\mathbf{p}^\top)\mathbf{J}"
    r" = \mathbf{J}^\top\mathbf{H}_{\mathbf{z}}\mathbf{J} = \mathbf{G},\quad"
    r"\mathbb{E}_{t\sim p}[\mathcal{D}\mathbf{w}] = \mathbf{0}",
    claim=lambda n: _softmax_fisher_case(n)[: n + 2],
    expected=unpack(_softmax_fisher_case,
                    lambda *case: _gauss_newton_sides(case, _gauss_newton(case))),
    control=unpack(_softmax_fisher_case, lambda *case: _gauss_newton_sides(case, case[-1])),
    sizes=(2, 3),
    simplifier=rational_numerator,
    note="Sizes are the number of classes C; softmax cross-entropy -log p_t with symbolic logits z "
    "and a generic (C, 2) Jacobian J. The claim lists E_{t~p}[Dw], F, and the Hessian of -log p_t "
    "in z for every target t (by differentiation): each Hessian is diag p - p p^T, whatever t, so "
    "F is the Gauss-Newton matrix. The control is the empirical Fisher of one target from the "
    "data (t = 1): F_emp = Dw_1 Dw_1^T is not G.",
)
