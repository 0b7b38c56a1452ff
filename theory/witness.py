"""Witnesses that two symbolic values differ: an exact point at which their difference is a number
SymPy decides is nonzero. A negative control counts as rejected only with one; a simplifier that
fails to reduce ``claim - control`` to zero proves nothing.

The search is deterministic. At candidate point ``j`` the ``i``-th free symbol (in SymPy's sort
order) takes a rational from :data:`POOL`: in ``(0, 1)``, shifted above 1, or negated, by turns,
keeping only values consistent with every assumption of the symbol (``positive``, ``integer``
...); an integer symbol takes a small integer. A point must also satisfy the statement's
``domain`` conditions (``alpha * lam < 1``); a condition on symbols that do not occur is left to
the symbols' free choice. Functions nothing is known about (a generic ``h`` and its partial
derivatives, undefined SymPy functions and their derivatives, :func:`theory.symbolic.is_opaque`)
are given a rational value per application once the symbols are fixed: a smooth function takes
any values, with any partial derivatives, at finitely many distinct points. Applications whose
arguments SymPy cannot decide to be equal or distinct make the point unusable, as does a point
where either side is undefined (``zoo``, ``nan``, infinite). The witness is the first entry of
the first usable point where ``(claim - control).is_zero is False`` on the exact number.

>>> x = sp.Symbol("x", positive=True)
>>> str(find_witness(sp.sqrt(x**2), x + 1))
'x=1/2: claim - control = -1'
>>> find_witness(sp.sin(x)**2 + sp.cos(x)**2, sp.Integer(1)) is None  # equal: no witness
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp

from scalewise.theory.symbolic import is_opaque

POINTS = 12
"""Candidate points tried per size before the search gives up."""

_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)

POOL: tuple[sp.Rational, ...] = tuple(sp.Rational(a, b) for b in _PRIMES for a in range(1, b))
"""Distinct rationals in ``(0, 1)`` with small prime denominators, the values of the search."""

FunctionKey = tuple[Any, tuple[int, ...], tuple[sp.Expr, ...]]
"""An unknown function's value: ``(function, positions differentiated, numeric arguments)``."""


@dataclass(frozen=True)
class Witness:
    """Where claim and control provably differ: at ``size`` (``None`` for unsized statements),
    the symbols at ``point`` and the unknown functions at ``functions``, entry ``entry`` of the
    flattened values has the nonzero exact ``difference`` (claim minus control)."""

    size: int | None
    point: tuple[tuple[sp.Symbol, sp.Rational], ...]
    functions: tuple[tuple[FunctionKey, sp.Rational], ...]
    entry: int
    difference: sp.Expr

    def __str__(self) -> str:
        parts = [] if self.size is None else [f"n={self.size}"]
        values = [f"{s}={v}" for s, v in self.point]
        values += [f"{_function_text(key)}={v}" for key, v in self.functions]
        parts += [", ".join(values)] if values else []
        exact = str(self.difference)
        shown = exact if len(exact) <= 40 else f"{sp.N(self.difference, 6)}..."
        entry = f"entry {self.entry}: " if self.entry else ""
        return "; ".join(parts) + f"{': ' if parts else ''}{entry}claim - control = {shown}"

    def difference_of(self, claim: Any, control: Any) -> sp.Expr:
        """``claim - control`` at this witness, evaluated afresh (entry :attr:`entry`)."""
        point = dict(self.point)
        sides = [[_substitute(e, point) for e in _entries(v)] for v in (claim, control)]
        values = dict(self.functions)
        known = _function_values(sides)
        if known is None or set(known.values()) - set(values):
            raise ValueError("the witness does not cover these values' unknown functions")
        replacements = {node: values[key] for node, key in known.items()}
        c, e = (side[self.entry].xreplace(replacements) for side in sides)
        return c - e


def find_witness(
    claim: Any, control: Any, domain: Sequence[sp.Basic] = (), size: int | None = None
) -> Witness | None:
    """The first candidate point at which ``claim - control`` (expressions, matrices or
    sequences of them, of one shape) is an exact number SymPy decides is nonzero, or ``None``."""
    pairs = _paired_entries(claim, control)
    if pairs is None:
        return None
    claims, controls = zip(*pairs) if pairs else ((), ())
    free = set().union(*(e.free_symbols for e in (*claims, *controls)))
    symbols = sorted(free, key=sp.default_sort_key)
    opaque = any(True for e in (*claims, *controls) for _ in _opaque_nodes(e))
    for j in range(POINTS if symbols or opaque else 1):
        point = _point(symbols, j, domain)
        if point is None:
            continue
        found = _witness_at(point, claims, controls, j, size)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------- candidate points


def _value(symbol: sp.Symbol, i: int, j: int) -> sp.Rational | None:
    """The value of the ``i``-th symbol at point ``j``: the first admissible candidate."""
    base = POOL[(5 * i + 11 * j) % len(POOL)]
    turns = (base, 1 + base, -base)
    whole = sp.Integer((i + j) % 7 + 1)
    candidates = (*turns[j % 3:], *turns[: j % 3], whole, -whole, sp.Integer(0))
    return next((v for v in candidates if _admissible(symbol, v)), None)


def _admissible(symbol: sp.Symbol, value: sp.Rational) -> bool:
    """Does ``value`` have every property that ``symbol``'s assumptions state, true or false?"""
    return all(getattr(value, f"is_{fact}") is truth for fact, truth in symbol.assumptions0.items())


def _point(
    symbols: list[sp.Symbol], j: int, domain: Sequence[sp.Basic]
) -> dict[sp.Symbol, sp.Rational] | None:
    """Candidate point ``j``, or ``None`` where a symbol has no admissible value or a domain
    condition on the present symbols fails."""
    point = {s: _value(s, i, j) for i, s in enumerate(symbols)}
    if any(v is None for v in point.values()):
        return None
    for condition in domain:
        if condition.free_symbols <= set(point) and condition.xreplace(point) is not sp.true:
            return None
    return point


# ---------------------------------------------------------------- evaluation at a point


def _entries(value: Any) -> list[sp.Expr]:
    """The scalar entries of an expression, a matrix, or a (nested) sequence of them."""
    if isinstance(value, (list, tuple)):
        return [e for v in value for e in _entries(v)]
    if isinstance(value, sp.MatrixBase):
        return [sp.sympify(e) for e in value]
    return [sp.sympify(value)]


def _shape(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_shape(v) for v in value)
    return value.shape if isinstance(value, sp.MatrixBase) else ()


def _paired_entries(claim: Any, control: Any) -> list[tuple[sp.Expr, sp.Expr]] | None:
    """Entries of claim and control side by side; ``None`` when their shapes differ (then no
    point compares them)."""
    if _shape(claim) != _shape(control):
        return None
    return list(zip(_entries(claim), _entries(control)))


def _substitute(expr: sp.Expr, point: dict[sp.Symbol, sp.Rational]) -> sp.Expr:
    try:
        return expr.xreplace(point)
    except (TypeError, ValueError):  # a derivative with respect to a substituted symbol
        return expr.subs(point)


def _opaque_nodes(expr: sp.Expr) -> Iterator[sp.Expr]:
    if is_opaque(expr):
        yield expr
    else:
        for arg in expr.args:
            yield from _opaque_nodes(arg)


def _function_key(node: sp.Expr) -> FunctionKey | None:
    """What a value of an unknown function is: the function, the argument positions it is
    differentiated in, and its numeric arguments; ``None`` if not numeric or not recognized."""
    if isinstance(node, sp.Subs):
        key = _derivative_key(node)
    elif isinstance(node, sp.Derivative):  # left at symbolic arguments
        key = None
    else:  # an application of a generic or undefined function
        key = (node.func, (), node.args)
    return key if key is not None and all(a.is_number for a in key[2]) else None


def _derivative_key(node: sp.Subs) -> FunctionKey | None:
    """``Subs(Derivative(f(u, v, ...), u, ...), (u, v, ...), point)``: ``f``'s partial derivative
    in the positions of the differentiation variables, at ``point``."""
    derivative = node.expr
    if not isinstance(derivative, sp.Derivative) or not is_opaque(derivative.expr):
        return None
    applied, at = derivative.expr, dict(zip(node.variables, node.point))
    if isinstance(applied, (sp.Derivative, sp.Subs)):
        return None
    if any(v not in applied.args for v, _ in derivative.variable_count):
        return None
    orders = tuple(sorted(applied.args.index(v) for v, n in derivative.variable_count
                          for _ in range(n)))
    return applied.func, orders, tuple(a.xreplace(at) for a in applied.args)


def _function_values(sides: list[list[sp.Expr]]) -> dict[sp.Expr, FunctionKey] | None:
    """Every unknown-function node of ``sides`` with its key; equal keys merged where SymPy
    decides their arguments equal; ``None`` if a node is not numeric or two arguments are
    undecided."""
    nodes = {node for side in sides for e in side for node in _opaque_nodes(e)}
    keys: dict[sp.Expr, FunctionKey] = {}
    for node in sorted(nodes, key=sp.default_sort_key):
        key = _function_key(node)
        if key is None:
            return None
        for other in set(keys.values()):
            if other[:2] == key[:2] and other != key:
                same = [sp.sympify(a - b).is_zero for a, b in zip(key[2], other[2])]
                if all(same):
                    key = other
                elif False not in same:
                    return None
        keys[node] = key
    return keys


def _witness_at(
    point: dict[sp.Symbol, sp.Rational],
    claims: Sequence[sp.Expr],
    controls: Sequence[sp.Expr],
    j: int,
    size: int | None,
) -> Witness | None:
    sides = [[_substitute(e, point) for e in side] for side in (claims, controls)]
    keys = _function_values(sides)
    if keys is None:
        return None
    distinct = sorted(set(keys.values()), key=_function_text)
    values = {key: POOL[(7 * i + 3 * j + 1) % len(POOL)] for i, key in enumerate(distinct)}
    replacements = {node: values[key] for node, key in keys.items()}
    sides = [[e.xreplace(replacements) for e in side] for side in sides]
    if not all(_defined(e) for side in sides for e in side):
        return None
    for entry, (c, e) in enumerate(zip(*sides)):
        difference = c - e
        if _decided_nonzero(difference):
            return Witness(size, tuple(point.items()), tuple(values.items()), entry, difference)
    return None


def _decided_nonzero(difference: sp.Expr) -> bool:
    """``difference.is_zero is False``. SymPy is asked only where a 30-digit evaluation is not
    below ``1e-20``: on an exact zero that is not structurally zero, ``is_zero`` may spend
    minutes on a minimal polynomial, only to answer ``True`` or ``None``, neither a witness."""
    if difference == 0:
        return False
    approximation = sp.N(difference, 30)
    if not approximation.is_number or abs(approximation) < sp.Float("1e-20"):
        return False
    return difference.is_zero is False


def _defined(value: sp.Expr) -> bool:
    """A finite exact number: no symbol, no unknown function, no ``zoo``/``nan``/infinity."""
    return (not value.free_symbols and not any(True for _ in _opaque_nodes(value))
            and value.is_finite is True)


def _function_text(key: FunctionKey) -> str:
    function, orders, args = key
    name = getattr(function, "__name__", str(function))
    if orders:
        name = f"D{''.join(str(o + 1) for o in orders)}{name}"
    return f"{name}({', '.join(str(a) for a in args)})"
