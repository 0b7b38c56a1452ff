"""Checkable identities: a statement from the seeds, its exact check, and its negative control.

An :class:`Identity` holds a ``claim`` (what we derive) and an ``expected`` value (what the seed
states, corrected where the seed slips). ``check()`` simplifies ``claim - expected`` and the
identity holds only when that residual is *exactly* zero: no floating tolerance anywhere. A
``control`` is a deliberately wrong ``expected`` (a dropped term, a wrong constant); it must be
rejected, so a check that would accept anything is caught by the tests.

Statements about matrices of arbitrary size are checked for each size in ``sizes``: then
``claim``, ``expected`` and ``control`` are functions of the size ``n``.

A simplifier that fails to reduce ``claim - control`` to zero proves nothing, so the control
counts as rejected only with a witness (:func:`theory.witness.find_witness`): an exact point
(and size) at which ``claim - control`` is a number SymPy decides is nonzero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from scalewise.theory.witness import Witness, find_witness

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
    its negative control, ``witness`` the point that rejects the control (``""`` when none was
    found), and the wall-clock ``seconds`` both took."""

    name: str
    source: str
    holds: bool
    control_rejected: bool
    seconds: float
    witness: str = ""

    @property
    def ok(self) -> bool:
        return self.holds and self.control_rejected


@dataclass(frozen=True)
class Identity:
    """One identity of the seeds, checkable exactly.

    ``claim``, ``expected`` and ``control`` are zero-argument callables (or, when ``sizes`` is
    non-empty, one-argument callables taking the size ``n``) returning SymPy expressions,
    matrices, or tuples of them. Callables keep importing :mod:`theory` cheap. ``domain`` holds
    conditions on the free symbols beyond their assumptions (``alpha * lam < 1``) under which the
    statement is made; a witness rejecting the control must satisfy them.
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
    domain: Sequence[sp.Basic] = ()
    simplifier: Simplifier = field(default=sp.simplify, repr=False, compare=False)

    def cases(self) -> list[tuple[int | None, Any, Any, Any]]:
        """``(size, claim, expected, control)`` for every size (size ``None`` if unsized)."""
        sides = (self.claim, self.expected, self.control)
        if not self.sizes:
            return [(None, *(side() for side in sides))]
        return [(n, *(side(n) for side in sides)) for n in self.sizes]

    def _holds(self, cases: list[tuple[int | None, Any, Any, Any]]) -> bool:
        return all(exactly_equal(c, e, self.simplifier) for _, c, e, _ in cases)

    def _witness(self, cases: list[tuple[int | None, Any, Any, Any]]) -> Witness | None:
        for size, claim, _, control in cases:
            found = find_witness(claim, control, self.domain, size)
            if found is not None:
                return found
        return None

    def holds(self) -> bool:
        """The statement: claim == expected exactly, for every size."""
        return self._holds(self.cases())

    def control_witness(self) -> Witness | None:
        """The first point (and size) at which claim and control provably differ, or ``None``
        when the search finds none: then the control is *not* rejected, whatever a simplifier
        fails to reduce (:func:`theory.witness.find_witness`)."""
        return self._witness(self.cases())

    def control_rejected(self) -> bool:
        """The negative control: claim != control, shown by a witness."""
        return self.control_witness() is not None

    def check(self) -> CheckResult:
        start = time.perf_counter()
        cases = self.cases()
        holds, witness = self._holds(cases), self._witness(cases)
        return CheckResult(self.name, self.source, holds, witness is not None,
                           time.perf_counter() - start, "" if witness is None else str(witness))

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
