"""Symbolic building blocks shared by the topic modules: generic vectors and matrices of real
symbols, column-stacking ``vec``, gradients and norms, a generic smooth function ``h`` and its
partial derivatives, and the exact normal form of rational functions.

``vec`` stacks columns, the convention under which ``vec(A X B) = (B^T kron A) vec(X)``
(003, 'K-FAC: Kronecker Product').
"""

from __future__ import annotations

from functools import cache, reduce

import sympy as sp
from sympy.core.function import AppliedUndef

from scalewise import checks


def vector(name: str, n: int) -> sp.Matrix:
    """Column of ``n`` independent real symbols ``name1 .. name{n}``."""
    checks.integer("n", n, 1)
    return sp.Matrix(sp.symbols(f"{name}1:{n + 1}", real=True))


def matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    """``rows x cols`` matrix of independent real symbols ``name_{ij}`` (1-based)."""
    checks.integer("rows", rows, 1)
    checks.integer("cols", cols, 1)
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True))


def symmetric(name: str, n: int) -> sp.Matrix:
    """Generic symmetric ``n x n`` matrix of real symbols (``name_{ij} = name_{ji}``)."""
    checks.integer("n", n, 1)
    return sp.Matrix(
        n, n, lambda i, j: sp.Symbol(f"{name}_{min(i, j) + 1}{max(i, j) + 1}", real=True)
    )


def lower_triangular(name: str, n: int) -> sp.Matrix:
    """Generic lower-triangular ``n x n`` of real symbols ``name_{ij}``, ``i >= j``: a Cholesky
    factor, so ``L L^T`` is any symmetric positive semi-definite matrix."""
    checks.integer("n", n, 1)
    return sp.Matrix(n, n, lambda i, j: sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True)
                     if j <= i else 0)


def mean_outer_product(rows: sp.MatrixBase) -> sp.Matrix:
    """``(1/N) sum_i r_i r_i^T`` over the ``N`` rows ``r_i`` of ``rows``: an empirical Fisher of
    per-example gradients, a K-FAC factor's batch estimate of activations."""
    return rows.T * rows / rows.rows


def weighted_sum(values: list[sp.MatrixBase], weights: list[sp.Expr]) -> sp.Matrix:
    """``sum_i weights_i values_i`` of equally shaped matrices (an expectation under a discrete
    law, a moving average's closed form)."""
    return sum((w * v for v, w in zip(values, weights)), start=sp.zeros(*values[0].shape))


def vec(m: sp.MatrixBase) -> sp.Matrix:
    """Column-stacking vectorization: the ``(p q) x 1`` column of the columns of ``m``."""
    return sp.Matrix(m).vec()


def unvec(column: sp.MatrixBase, rows: int) -> sp.Matrix:
    """Inverse of :func:`vec`: the ``rows x (len / rows)`` matrix whose columns stack to
    ``column``."""
    if checks.integer("rows", rows, 1) and len(column) % rows:
        checks.fail("rows", rows, f"a positive integer dividing the length {len(column)}")
    return sp.Matrix(column).reshape(len(column) // rows, rows).T


def inverse(square: sp.MatrixBase) -> sp.Matrix:
    """``square^{-1}`` by the adjugate (Cramer's rule): generic symbolic entries stay rational."""
    return sp.Matrix(square).adjugate() / sp.Matrix(square).det()


def cayley_rotation(dim: int, name: str = "q") -> sp.Matrix:
    """A generic rotation ``(I - K)(I + K)^{-1}`` with symbolic skew-symmetric ``K`` (entries
    ``name_{ij}``): orthogonal with rational entries, so products with it simplify exactly by
    ``cancel``."""
    if dim < 1:
        checks.fail("dim", dim, "an integer >= 1")

    def entry(i: int, j: int) -> sp.Expr:
        return sp.Symbol(f"{name}_{min(i, j) + 1}{max(i, j) + 1}", real=True) * sp.sign(j - i)

    skew = sp.Matrix(dim, dim, entry)
    return ((sp.eye(dim) - skew) * (sp.eye(dim) + skew).inv()).applyfunc(sp.cancel)


def product(*factors: sp.MatrixBase) -> sp.Matrix:
    """The matrix product, cancelling each entry after every multiplication: keeps the rational
    entries of products with :func:`cayley_rotation` small."""
    return reduce(lambda left, right: (left * right).applyfunc(sp.cancel), factors)


def gradient(f: sp.Expr, x: sp.MatrixBase) -> sp.Matrix:
    """``grad f`` with respect to the column ``x``, as a column."""
    return sp.Matrix([f.diff(xi) for xi in x])


def frobenius_sq(m: sp.MatrixBase) -> sp.Expr:
    """``||m||_F^2``, the sum of the squared entries."""
    return sum(entry**2 for entry in m)


def norm(x: sp.MatrixBase) -> sp.Expr:
    """Euclidean norm ``||x||`` of a column."""
    return sp.sqrt(x.dot(x))


def rational_numerator(expr: sp.Expr) -> sp.Expr:
    """The expanded numerator of ``expr`` over a common denominator: a rational function is
    zero exactly when this is, and it is much cheaper than ``cancel`` on large fractions.

    >>> rational_numerator(1 / (1 + sp.Symbol("a")) - 1)
    -a
    """
    return sp.expand(sp.fraction(sp.together(expr))[0])


class GenericFunction(sp.Function):
    """An arbitrary smooth function: its partial derivatives are again opaque functions of the
    same arguments (``h`` -> ``h_1`` -> ``h_12`` ...), symmetric in the order of differentiation.
    Unlike an undefined SymPy function it never produces ``Subs`` objects, so substituting into
    its derivatives is cheap."""

    indices: tuple[int, ...] = ()

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return partial_derivative(tuple(sorted((*self.indices, argindex))))(*self.args)


@cache
def partial_derivative(indices: tuple[int, ...]) -> type[GenericFunction]:
    """The class of ``h_{i j ...}``: the partial derivative of the generic ``h`` in the listed
    arguments.

    >>> a, b = sp.symbols("a b")
    >>> partial_derivative(())(a, b).diff(b).diff(a)
    h_12(a, b)
    """
    name = "h_" + "".join(str(i) for i in indices) if indices else "h"
    return type(name, (GenericFunction,), {"indices": indices})


def is_opaque(expr: sp.Basic) -> bool:
    """Is ``expr`` the value of a function nothing is known about: an application of a
    :class:`GenericFunction` or of an undefined SymPy function, or a derivative of one?"""
    return isinstance(expr, (GenericFunction, AppliedUndef, sp.Derivative, sp.Subs))
