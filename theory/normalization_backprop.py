"""Backprop through batch centering and batch norm, derived by differentiating the forward
expressions of :mod:`theory.normalization` and compared with the notes' closed forms (001 Sec. 4,
Eq. 12 and Fig. 4; Sec. 4.2, Eq. 13-14 and the derivation after them): the direct path, the
statistics path, and the weight gradient's use of centered activations.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise.theory.homogeneity import reduce_radicals
from scalewise.theory.identity import identity, slip, unpack
from scalewise.theory.normalization import (
    D_OUT,
    batch_center,
    batch_center_vjp,
    batch_mean,
    batch_norm,
    batch_norm_direct_path,
    batch_norm_vjp,
    batch_std,
    divide_columns,
    generic_layer,
    ones,
    vjp,
)
from scalewise.theory.symbolic import matrix


@cache
def _batch_center_case(batch: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """Pre-activations ``R``, the output gradient ``S_bar`` and the derived ``R_bar``."""
    R, S_bar = matrix("r", batch, D_OUT), matrix("sbar", batch, D_OUT)
    return R, S_bar, vjp(batch_center(R), R, S_bar)


identity(
    name="bc_backprop_direct_minus_statistics_path",
    topic="normalization",
    source="001 Eq. (14)",
    statement=r"\mathbf{S} = \mathbf{R} - \mathbf{1}\boldsymbol{\mu}(\mathbf{R})^\top"
    r" \;\Rightarrow\;"
    r" \bar{\mathbf{R}} = \bar{\mathbf{S}} - \mathbf{1}\boldsymbol{\mu}(\bar{\mathbf{S}})^\top",
    claim=lambda n: _batch_center_case(n)[2],
    expected=lambda n: batch_center_vjp(_batch_center_case(n)[1]),
    control=lambda n: _batch_center_case(n)[1],
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Batch sizes 2 and 3, D = 2. The control keeps only the direct path.",
)

identity(
    name="bc_backprop_centers_gradients",
    topic="normalization",
    source="001 Sec. 4.2 (footnote after Eq. 14)",
    statement=r"\mathbf{1}^\top\bar{\mathbf{R}} = \mathbf{0}^\top",
    claim=lambda n: ones(n).T * _batch_center_case(n)[2],
    expected=lambda n: sp.zeros(1, D_OUT),
    control=lambda n: ones(n).T * _batch_center_case(n)[1],
    sizes=(2, 3),
    simplifier=sp.expand,
)


@cache
def _weight_gradient_case(batch: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """Activations ``A``, output gradient ``S_bar`` and the derived ``W_bar`` of
    ``S = BC(A W^T)``."""
    A, W = generic_layer(batch)
    S_bar = matrix("sbar", batch, D_OUT)
    return A, S_bar, vjp(batch_center(A * W.T), W, S_bar)


identity(
    name="bc_weight_gradient_uses_centered_activations",
    topic="normalization",
    source="001 Sec. 4.2 (derivation after Eq. 14)",
    statement=r"\bar{\mathbf{W}} = \bar{\mathbf{R}}^\top\mathbf{A}"
    r" = \bar{\mathbf{S}}^\top\tilde{\mathbf{A}},"
    r"\quad \tilde{\mathbf{A}} = \mathbf{A} - \mathbf{1}\boldsymbol{\mu}(\mathbf{A})^\top",
    claim=lambda n: _weight_gradient_case(n)[2],
    expected=unpack(_weight_gradient_case, lambda A, S_bar, _: S_bar.T * batch_center(A)),
    control=unpack(_weight_gradient_case, lambda A, S_bar, _: S_bar.T * A),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="W_bar is derived by differentiating BC(A W^T) in W. The control is the gradient without "
    "batch centering (S_bar^T A, the 000/002 slides' 'without BC'): the mean of the activations "
    "drops out of the gradient.",
)

slip(
    seed="001",
    place="Sec. 4.2, derivation of the batch gradient after Eq. (14), second and third lines",
    says=r"$\bar{\mathbf{W}} = (\bar{\mathbf{S}} - \mathbf{1}\boldsymbol{\mu}(\bar{\mathbf{S}})^\top)(\tilde{\mathbf{A}} + \mathbf{1}\mathbf{m}^\top) = [\bar{\mathbf{S}}^\top\tilde{\mathbf{A}} - \boldsymbol{\mu}(\bar{\mathbf{S}})^\top\tilde{\mathbf{A}} + \dots]$",
    truth=r"the first factor is transposed, $\bar{\mathbf{R}}^\top = (\bar{\mathbf{S}} - \mathbf{1}\boldsymbol{\mu}(\bar{\mathbf{S}})^\top)^\top$, and the second term is $\boldsymbol{\mu}(\bar{\mathbf{S}})\mathbf{1}^\top\tilde{\mathbf{A}}$ (zero because $\mathbf{1}^\top\tilde{\mathbf{A}} = \mathbf{0}$, as the footnote says); the result $\bar{\mathbf{S}}^\top\tilde{\mathbf{A}}$ is right",
    identity="bc_weight_gradient_uses_centered_activations",
)


def _generic_batch_norm(X: sp.Matrix, means: sp.Matrix, stds: sp.Matrix) -> sp.Matrix:
    """Eq. (11) with the statistics replaced by the given columns."""
    return divide_columns(X - ones(X.rows) * means.T, stds)


@cache
def _batch_norm_case(batch: int) -> tuple[sp.Matrix, sp.Matrix]:
    return matrix("x", batch, D_OUT), matrix("xtbar", batch, D_OUT)


@cache
def _direct_path_derived(batch: int) -> sp.Matrix:
    """Backprop through BN with the statistics held fixed: differentiate with independent
    symbols for ``mu`` and ``sigma``, then put the batch statistics back."""
    X, X_tilde_bar = _batch_norm_case(batch)
    means = sp.Matrix(sp.symbols(f"mu1:{D_OUT + 1}", real=True))
    stds = sp.Matrix(sp.symbols(f"sigma1:{D_OUT + 1}", positive=True))
    derived = vjp(_generic_batch_norm(X, means, stds), X, X_tilde_bar)
    values = dict(zip(means, batch_mean(X))) | dict(zip(stds, batch_std(X)))
    return derived.xreplace(values)


identity(
    name="bn_backprop_direct_path",
    topic="normalization",
    source="001 Eq. (12)",
    statement=r"\bar{\mathbf{X}}\big|_{\text{direct}}"
    r" = \bar{\tilde{\mathbf{X}}} \oslash \mathbf{1}\boldsymbol{\sigma}(\mathbf{X})^\top",
    claim=_direct_path_derived,
    expected=lambda n: batch_norm_direct_path(*_batch_norm_case(n)),
    control=lambda n: _batch_norm_case(n)[1],
    sizes=(2, 3),
    simplifier=reduce_radicals,
)


@cache
def _batch_norm_vjp_derived(batch: int) -> sp.Matrix:
    X, X_tilde_bar = _batch_norm_case(batch)
    return vjp(batch_norm(X), X, X_tilde_bar)


identity(
    name="bn_backprop_direct_and_statistics_paths",
    topic="normalization",
    source="001 Sec. 4 (Eq. 11-12 and Fig. 4)",
    statement=r"\bar{\mathbf{X}} = \big[\bar{\tilde{\mathbf{X}}}"
    r" - \mathbf{1}\boldsymbol{\mu}(\bar{\tilde{\mathbf{X}}})^\top"
    r" - \tilde{\mathbf{X}}\odot"
    r"\mathbf{1}\boldsymbol{\mu}(\tilde{\mathbf{X}}\odot\bar{\tilde{\mathbf{X}}})^\top\big]"
    r" \oslash \mathbf{1}\boldsymbol{\sigma}(\mathbf{X})^\top",
    claim=_batch_norm_vjp_derived,
    expected=lambda n: batch_norm_vjp(*_batch_norm_case(n)),
    control=lambda n: batch_norm_direct_path(*_batch_norm_case(n)),
    sizes=(3,),
    simplifier=reduce_radicals,
    note="Batch size 3, D = 2 (with 2 examples BN outputs +-1 and its derivative is zero almost "
    "everywhere). The notes name the two paths but write only the direct one (Eq. 12); the "
    "statistics path subtracts the mean of the incoming gradient (as for BC, Eq. 14) and its "
    "component along the normalized activations. The control is the direct path alone.",
)
