"""Every registered identity holds exactly, and its negative control is rejected.

The control is what makes each check meaningful: a comparison that accepted anything would
accept the deliberately wrong statement too.
"""

from __future__ import annotations

import re

import pytest
import sympy as sp

from scalewise import theory
from scalewise.theory.identity import Identity, Registry, exactly_equal, unpack

NAMES = list(theory.IDENTITIES)


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_identity_holds_and_rejects_its_control(name: str) -> None:
    result = theory.IDENTITIES[name].check()
    assert result.holds, f"{name} ({result.source}) does not hold"
    assert result.control_rejected, f"{name}: the negative control was accepted"


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_identity_is_documented(name: str) -> None:
    item = theory.IDENTITIES[name]
    assert item.source[:3] in {"000", "001", "002", "003", "004"}, item.source
    assert item.statement.strip() and item.topic


def test_every_slip_points_at_a_registered_identity() -> None:
    for slip in theory.SLIPS:
        assert slip.identity in theory.IDENTITIES, slip


@pytest.mark.parametrize("slip", theory.SLIPS, ids=[s.identity for s in theory.SLIPS])
def test_slip_text_is_markdown_with_delimited_maths(slip) -> None:
    for text in (slip.says, slip.truth):
        assert text.count("$") % 2 == 0, text
        assert "\\" not in re.sub(r"\$[^$]*\$", "", text), f"LaTeX outside $...$: {text}"


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_statement_has_no_control_characters(name: str) -> None:
    statement = theory.IDENTITIES[name].statement
    assert all(ch >= " " for ch in statement), repr(statement)


x, y = sp.symbols("x y", positive=True)


@pytest.mark.parametrize(
    ("claim", "expected", "equal"),
    [
        (sp.sin(x) ** 2 + sp.cos(x) ** 2, sp.Integer(1), True),
        (sp.sqrt(x**2), x, True),
        (x + y, y + x + sp.Rational(1, 10**30), False),
        (sp.Matrix([[x, y]]), sp.Matrix([[x], [y]]), False),
        ((x, y), (x,), False),
        ((x, sp.Matrix([y])), (x, sp.Matrix([y])), True),
    ],
    ids=["trig", "sqrt-positive", "tiny-offset", "shape", "length", "nested"],
)
def test_exact_comparison(claim, expected, equal) -> None:
    assert exactly_equal(claim, expected) is equal


def test_registry_rejects_duplicates_and_names_unknown_identities() -> None:
    registry = Registry()
    item = Identity("a", "001 Eq. (1)", "a", lambda: x, lambda: x, lambda: y, topic="t")
    registry.add(item)
    with pytest.raises(ValueError, match="already registered"):
        registry.add(item)
    with pytest.raises(KeyError, match="known identities: a"):
        registry["b"]


def test_check_all_reports_each_identity() -> None:
    results = theory.check_all(["wd_effective_lr", "norm_growth_recurrence"])
    assert [r.name for r in results] == ["wd_effective_lr", "norm_growth_recurrence"]
    assert all(r.ok and r.seconds >= 0 for r in results)


def test_unpack_feeds_the_parts_of_a_case_to_a_side() -> None:
    side = unpack(lambda n: (x**n, y), lambda power, other: power + other)
    assert side(3) == x**3 + y
