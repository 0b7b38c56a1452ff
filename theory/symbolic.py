"""Symbolic building blocks shared by the topic modules: generic vectors and matrices of real
symbols, column-stacking ``vec``, gradients and norms.

``vec`` stacks columns, the convention under which ``vec(A X B) = (B^T kron A) vec(X)``
(003, 'K-FAC: Kronecker Product').
"""

from __future__ import annotations

import sympy as sp


def _positive_size(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def vector(name: str, n: int) -> sp.Matrix:
    """Column of ``n`` independent real symbols ``name1 .. name{n}``."""
    _positive_size("n", n)
    return sp.Matrix(sp.symbols(f"{name}1:{n + 1}", real=True))


def matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    """``rows x cols`` matrix of independent real symbols ``name_{ij}`` (1-based)."""
    _positive_size("rows", rows)
    _positive_size("cols", cols)
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True))


def symmetric(name: str, n: int) -> sp.Matrix:
    """Generic symmetric ``n x n`` matrix of real symbols (``name_{ij} = name_{ji}``)."""
    _positive_size("n", n)
    return sp.Matrix(
        n, n, lambda i, j: sp.Symbol(f"{name}_{min(i, j) + 1}{max(i, j) + 1}", real=True)
    )


def vec(m: sp.MatrixBase) -> sp.Matrix:
    """Column-stacking vectorization: the ``(p q) x 1`` column of the columns of ``m``."""
    return sp.Matrix(m).vec()


def unvec(column: sp.MatrixBase, rows: int) -> sp.Matrix:
    """Inverse of :func:`vec`: the ``rows x (len / rows)`` matrix whose columns stack to
    ``column``."""
    if not isinstance(rows, int) or rows < 1 or len(column) % rows:
        raise ValueError(
            f"rows must be a positive integer dividing the length {len(column)}, got {rows!r}"
        )
    return sp.Matrix(column).reshape(len(column) // rows, rows).T


def gradient(f: sp.Expr, x: sp.MatrixBase) -> sp.Matrix:
    """``grad f`` with respect to the column ``x``, as a column."""
    return sp.Matrix([f.diff(xi) for xi in x])


def norm(x: sp.MatrixBase) -> sp.Expr:
    """Euclidean norm ``||x||`` of a column."""
    return sp.sqrt(x.dot(x))
