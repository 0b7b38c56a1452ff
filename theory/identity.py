"""Checkable identities: a statement from the seeds, its exact check, and its negative control.

An :class:`Identity` holds a ``claim`` (what we derive) and an ``expected`` value (what the seed
states, corrected where the seed slips). ``check()`` simplifies ``claim - expected`` and the
identity holds only when that residual is *exactly* zero: no floating tolerance anywhere. A
``control`` is a deliberately wrong ``expected`` (a dropped term, a wrong constant); the same
comparison must reject it, so a check that would accept anything is caught by the tests.

Statements about matrices of arbitrary size are checked for each size in ``sizes``: then
``claim``, ``expected`` and ``control`` are functions of the size ``n``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

Simplifier = Callable[[sp.Expr], sp.Expr]


def _is_zero(residual: Any, simplifier: Simplifier) -> bool:
    """True when ``residual`` (an expression, a matrix, or a sequence of them) is exactly zero."""
    if isinstance(residual, (list, tuple)):
        return all(_is_zero(r, simplifier) for r in residual)
    if isinstance(residual, sp.MatrixBase):
        return all(_is_zero(r, simplifier) for r in residual)
    value = simplifier(sp.sympify(residual))
    return value == 0


def _difference(claim: Any, expected: Any) -> Any:
    """``claim - expected`` elementwise, refusing shape mismatches (they are never equal)."""
    if isinstance(claim, (list, tuple)) or isinstance(expected, (list, tuple)):
        if not (isinstance(claim, (list, tuple)) and isinstance(expected, (list, tuple))):
            raise _ShapeMismatch
        if len(claim) != len(expected):
            raise _ShapeMismatch
        return [_difference(c, e) for c, e in zip(claim, expected)]
    if isinstance(claim, sp.MatrixBase) or isinstance(expected, sp.MatrixBase):
        if not (isinstance(claim, sp.MatrixBase) and isinstance(expected, sp.MatrixBase)):
            raise _ShapeMismatch
        if claim.shape != expected.shape:
            raise _ShapeMismatch
    return claim - expected


class _ShapeMismatch(Exception):
    """Claim and expected value have different shapes, so they cannot be equal."""


def exactly_equal(claim: Any, expected: Any, simplifier: Simplifier = sp.simplify) -> bool:
    """Exact symbolic equality of two expressions, matrices or sequences of them."""
    try:
        return _is_zero(_difference(claim, expected), simplifier)
    except _ShapeMismatch:
        return False


@dataclass(frozen=True)
class CheckResult:
    """Outcome of checking one identity: ``holds`` for the statement, ``control_rejected`` for
    its negative control, and the wall-clock ``seconds`` both took."""

    name: str
    source: str
    holds: bool
    control_rejected: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.holds and self.control_rejected


@dataclass(frozen=True)
class Identity:
    """One identity of the seeds, checkable exactly.

    ``claim``, ``expected`` and ``control`` are zero-argument callables (or, when ``sizes`` is
    non-empty, one-argument callables taking the size ``n``) returning SymPy expressions,
    matrices, or tuples of them. Callables keep importing :mod:`theory` cheap.
    """

    name: str
    source: str
    statement: str
    claim: Callable[..., Any]
    expected: Callable[..., Any]
    control: Callable[..., Any]
    topic: str = ""
    sizes: Sequence[int] = ()
    note: str = ""
    simplifier: Simplifier = field(default=sp.simplify, repr=False, compare=False)

    def _agrees_with(self, side: Callable[..., Any]) -> list[bool]:
        """Exact agreement of ``claim`` with ``side``, one entry per size (one if unsized)."""
        if not self.sizes:
            return [exactly_equal(self.claim(), side(), self.simplifier)]
        return [exactly_equal(self.claim(n), side(n), self.simplifier) for n in self.sizes]

    def holds(self) -> bool:
        """The statement: claim == expected exactly, for every size."""
        return all(self._agrees_with(self.expected))

    def control_rejected(self) -> bool:
        """The negative control: claim == control must fail for at least one size."""
        return not all(self._agrees_with(self.control))

    def check(self) -> CheckResult:
        start = time.perf_counter()
        holds = self.holds()
        rejected = self.control_rejected()
        return CheckResult(self.name, self.source, holds, rejected, time.perf_counter() - start)

    @property
    def sizes_text(self) -> str:
        return ", ".join(str(n) for n in self.sizes)


@dataclass(frozen=True)
class Slip:
    """A slip in a seed document: where, what it says, what is true, and the identity proving it.

    ``says`` and ``truth`` are Markdown with inline maths in ``$...$``."""

    seed: str
    place: str
    says: str
    truth: str
    identity: str


class Registry(Mapping[str, Identity]):
    """Name -> :class:`Identity`, in registration order; names are unique."""

    def __init__(self) -> None:
        self._items: dict[str, Identity] = {}

    def add(self, identity: Identity) -> Identity:
        if identity.name in self._items:
            raise ValueError(f"identity name {identity.name!r} is already registered")
        self._items[identity.name] = identity
        return identity

    def __getitem__(self, name: str) -> Identity:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self._items)
            raise KeyError(f"unknown identity {name!r}; known identities: {known}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


IDENTITIES = Registry()
SLIPS: list[Slip] = []


def unpack(case: Callable[..., tuple[Any, ...]], side: Callable[..., Any]) -> Callable[..., Any]:
    """A claim, expected value or control computed from the parts of a shared ``case``:
    ``unpack(case, f)(*args) == f(*case(*args))``, so one cached case feeds all three sides."""
    return lambda *args: side(*case(*args))


def identity(**fields: Any) -> Identity:
    """Register an :class:`Identity` built from ``fields`` and return it."""
    return IDENTITIES.add(Identity(**fields))


def slip(**fields: Any) -> Slip:
    """Record a :class:`Slip` of the seeds and return it."""
    record = Slip(**fields)
    SLIPS.append(record)
    return record
