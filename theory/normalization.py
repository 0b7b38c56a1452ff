"""Normalization layers as SymPy functions of generic symbolic batches, and the closed forms of
their backprop that the notes state: batch centering and batch norm (001 Sec. 4, Eq. 11-14),
weight norm (001 Eq. 20) and layer norm (001 Eq. 21). The identities about them are in
:mod:`theory.normalization_invariance` (what each layer is invariant to) and
:mod:`theory.normalization_backprop` (backprop derived against the notes' closed forms).

Conventions (001 Sec. 4): a batch is a ``B x D`` matrix, one row per example; ``mu(X)`` and
``sigma(X)`` are the column means and (population) standard deviations, as columns of length
``D``; ``1`` is the all-ones column of length ``B``; a layer computes ``R = A W^T`` with ``W`` of
shape ``D_out x D_in``. Backprop is derived, never assumed: :func:`vjp` differentiates the forward
expression entrywise, and the identities compare it with the closed forms of the notes.

>>> batch_norm(sp.Matrix([[1], [3]])).T
Matrix([[-1, 1]])
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise import checks
from scalewise.theory.symbolic import matrix, norm

D_IN = D_OUT = 2
"""Widths of the generic layer of the invariance and backprop checks; the batch size is the
identity's size ``n``."""


def positive_diagonal(name: str, n: int) -> sp.Matrix:
    """``diag(name_1, ..., name_n)`` with positive symbols: the ``Gamma > 0`` of 001 Sec. 4.3."""
    return sp.diag(*sp.symbols(f"{name}_1:{n + 1}", positive=True))


def ones(rows: int) -> sp.Matrix:
    """The all-ones column ``1`` of length ``rows``."""
    return sp.ones(rows, 1)


@cache
def generic_layer(batch: int) -> tuple[sp.Matrix, sp.Matrix]:
    """Generic activations ``A`` (``batch x D_IN``) and weights ``W`` (``D_OUT x D_IN``)."""
    return matrix("a", batch, D_IN), matrix("w", D_OUT, D_IN)


def _check_batch(X: sp.Matrix) -> None:
    if X.rows < 2:
        checks.fail("X", X.shape, "a matrix of at least 2 rows (examples) to normalize")


def divide_columns(X: sp.Matrix, column_scales: sp.Matrix) -> sp.Matrix:
    """``X ⊘ 1 c^T``: column ``j`` of ``X`` divided by ``c_j``."""
    return sp.Matrix(X.rows, X.cols, lambda i, j: X[i, j] / column_scales[j])


def batch_mean(X: sp.Matrix) -> sp.Matrix:
    """``mu(X)``: the column means of the ``B x D`` batch ``X``, a column of length ``D``."""
    return X.T * ones(X.rows) / X.rows


def batch_center(X: sp.Matrix) -> sp.Matrix:
    """Batch centering ``BC(X) = X - 1 mu(X)^T`` (001 Eq. 13)."""
    return X - ones(X.rows) * batch_mean(X).T


def batch_std(X: sp.Matrix) -> sp.Matrix:
    """``sigma(X)``: the column standard deviations (dividing by ``B``, as BN does in training)."""
    _check_batch(X)
    centered = batch_center(X)
    variances = batch_mean(centered.multiply_elementwise(centered))  # (D, 1)
    return variances.applyfunc(sp.sqrt)


def batch_norm(X: sp.Matrix) -> sp.Matrix:
    """``BN(X) = (X - 1 mu(X)^T) ⊘ 1 sigma(X)^T`` (001 Eq. 11; gain 1 and bias 0, as the notes
    assume)."""
    return divide_columns(batch_center(X), batch_std(X))


def weight_norm(v: sp.Matrix, g: sp.Expr) -> sp.Matrix:
    """``WN(v; g) = g v / ||v||`` (001 Eq. 20): the weights of one unit with norm ``g``."""
    return g * v / norm(v)


def layer_norm(a: sp.Matrix, gains: sp.Matrix, biases: sp.Matrix) -> sp.Matrix:
    """``LN(a; b, g) = g/sigma ⊙ (a - mu 1) + b`` over the ``D`` units of one example
    (001 Eq. 21): ``a``, ``gains`` and ``biases`` are columns of length ``D >= 2``."""
    if a.cols != 1 or a.rows < 2:
        checks.fail("a", a.shape, "a column of at least 2 units")
    if gains.shape != a.shape or biases.shape != a.shape:
        checks.fail("gains, biases", (gains.shape, biases.shape), f"the shape of a, {a.shape}")
    centered = batch_center(a)  # (D, 1): the D units play the role of the batch rows
    return centered.multiply_elementwise(gains) / batch_std(a)[0] + biases


def vjp(output: sp.Matrix, inputs: sp.Matrix, output_bar: sp.Matrix) -> sp.Matrix:
    """Backprop ``inputs_bar[i, j] = sum_{k l} output_bar[k, l] d output[k, l] / d inputs[i, j]``,
    derived by differentiating every entry (the bar notation of 001 Sec. 4)."""
    if output_bar.shape != output.shape:
        checks.fail("output_bar", output_bar.shape, f"the output's shape {output.shape}")
    return sp.Matrix(
        inputs.rows,
        inputs.cols,
        lambda i, j: sum(b * o.diff(inputs[i, j]) for b, o in zip(output_bar, output)),
    )


# ---------------------------------------------------------------- closed forms of the notes


def batch_center_vjp(S_bar: sp.Matrix) -> sp.Matrix:
    """``R_bar = S_bar - 1 mu(S_bar)^T``: direct path minus statistics path (001 Eq. 14)."""
    return batch_center(S_bar)


def batch_norm_direct_path(X: sp.Matrix, X_tilde_bar: sp.Matrix) -> sp.Matrix:
    """``X_bar = X_tilde_bar ⊘ 1 sigma(X)^T``: backprop with the statistics held fixed
    (001 Eq. 12)."""
    return divide_columns(X_tilde_bar, batch_std(X))


def batch_norm_statistics_path(X: sp.Matrix, X_tilde_bar: sp.Matrix) -> sp.Matrix:
    """What the statistics path subtracts from the direct path of BN,
    ``[1 mu(X_tilde_bar)^T + X_tilde ⊙ 1 mu(X_tilde ⊙ X_tilde_bar)^T] ⊘ 1 sigma(X)^T``: through
    the mean (the batch-centering term of Eq. 14) and through the standard deviation."""
    X_tilde = batch_norm(X)
    through_mean = ones(X.rows) * batch_mean(X_tilde_bar).T
    through_std = X_tilde * sp.diag(*batch_mean(X_tilde.multiply_elementwise(X_tilde_bar)))
    return divide_columns(through_mean + through_std, batch_std(X))


def batch_norm_vjp(X: sp.Matrix, X_tilde_bar: sp.Matrix) -> sp.Matrix:
    """Full backprop through BN (001 Sec. 4, Fig. 4): direct path minus statistics path."""
    return batch_norm_direct_path(X, X_tilde_bar) - batch_norm_statistics_path(X, X_tilde_bar)
