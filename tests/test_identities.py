"""Every registered identity holds exactly, and its negative control is rejected with a witness.

The control is what makes each check meaningful: a comparison that accepted anything would
accept the deliberately wrong statement too. A control counts as rejected only at an exact point
where claim and control differ; a simplifier that cannot reduce their difference proves nothing.
"""

from __future__ import annotations

import re

import pytest
import sympy as sp

from scalewise import theory
from scalewise.theory.catalogue import REFERENCES
from scalewise.theory.identity import Identity, Registry, exactly_equal, unpack
from scalewise.theory.witness import Witness, find_witness

NAMES = list(theory.IDENTITIES)


def _entries(value) -> list[sp.Expr]:
    if isinstance(value, (list, tuple)):
        return [e for v in value for e in _entries(v)]
    return [sp.sympify(e) for e in value] if isinstance(value, sp.MatrixBase) else [value]


def _difference_at(item: Identity, witness: Witness) -> sp.Expr:
    """``claim - control`` at the witness, by plain substitution where no unknown function
    needs a value."""
    args = () if witness.size is None else (witness.size,)
    claim, control = item.claim(*args), item.control(*args)
    if witness.functions:
        return witness.difference_of(claim, control)
    entry = _entries(claim)[witness.entry] - _entries(control)[witness.entry]
    return sp.sympify(entry).subs(dict(witness.point))


def _respects_assumptions_and_domain(item: Identity, witness: Witness) -> bool:
    point = dict(witness.point)
    assumed = all(getattr(value, f"is_{fact}") is truth
                  for symbol, value in point.items()
                  for fact, truth in symbol.assumptions0.items())
    inside = all(c.xreplace(point) is sp.true for c in item.domain if c.free_symbols <= set(point))
    return assumed and inside and (witness.size is None or witness.size in item.sizes)


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_identity_holds_and_rejects_its_control(name: str) -> None:
    item = theory.IDENTITIES[name]
    result = item.check()
    assert result.holds, f"{name} ({result.source}) does not hold"
    assert result.control_rejected and result.witness, f"{name}: the control has no witness"
    witness = item.control_witness()
    assert str(witness) == result.witness
    assert _respects_assumptions_and_domain(item, witness), witness
    assert _difference_at(item, witness).is_zero is False, witness


# claim == expected everywhere, over the kinds of value the search meets: radicals on a domain,
# a generic h and its derivatives, undefined functions and their Subs-derivatives, matrices
SEARCHED = ["wd_effective_lr", "sgdm_fixed_point_norm_sq", "euler_homogeneous_function",
            "preconditioned_step_is_reparameterized_gd", "sgd_exp_lr_equivalence",
            "kron_inverse", "bn_backprop_direct_path"]


@pytest.mark.parametrize("name", SEARCHED, ids=SEARCHED)
def test_no_witness_separates_claim_from_expected(name: str) -> None:
    item = theory.IDENTITIES[name]
    for size, claim, expected, _ in item.cases():
        assert find_witness(claim, expected, item.domain, size) is None


def test_control_equal_in_a_form_the_simplifier_misses_is_not_rejected() -> None:
    """The old criterion (the simplifier leaves a nonzero residual) would reject these
    controls; they equal the claim, so no witness exists."""
    trig = Identity("trig", "001", "1", lambda: sp.Integer(1), lambda: sp.Integer(1),
                    lambda: sp.sin(x) ** 2 + sp.cos(x) ** 2, simplifier=sp.expand)
    square = Identity("square", "001", "(x+1)^2", lambda: (x + 1) ** 2, lambda: (x + 1) ** 2,
                      lambda: x**2 + 2 * x + 1, simplifier=lambda e: e)
    radical = Identity("radical", "001", "sqrt", lambda: sp.sqrt(5 + 2 * sp.sqrt(6)),
                       lambda: sp.sqrt(5 + 2 * sp.sqrt(6)), lambda: sp.sqrt(2) + sp.sqrt(3),
                       simplifier=sp.expand)
    for item in (trig, square, radical):
        assert not exactly_equal(item.claim(), item.control(), item.simplifier)
        assert item.holds() and not item.control_rejected(), item.name
        assert item.check().witness == ""


def test_witness_respects_domain_and_assumptions() -> None:
    """``sqrt(x^2) = |x|`` for real ``x``: the control ``x`` differs only at negative points."""
    r = sp.Symbol("r", real=True)
    item = Identity("abs", "001", "|r|", lambda: sp.sqrt(r**2), lambda: sp.Abs(r), lambda: r)
    witness = item.control_witness()
    assert witness is not None and dict(witness.point)[r] < 0
    on_positive_half = Identity("abs", "001", "|r|", lambda: sp.sqrt(r**2), lambda: sp.Abs(r),
                                lambda: r, domain=(r > 0,))
    assert on_positive_half.control_witness() is None


def test_witness_gives_unknown_functions_values_at_distinct_points() -> None:
    f = sp.Function("f")
    same_point = Identity("f", "001", "f", lambda: f(x / (2 * x)), lambda: f(sp.Rational(1, 2)),
                          lambda: f(sp.Rational(1, 2)) + 0 * x)
    assert same_point.control_witness() is None  # f(x/(2x)) is f(1/2): equal
    shifted = Identity("f", "001", "f", lambda: f(x), lambda: f(x), lambda: f(x + 1))
    witness = shifted.control_witness()
    assert witness is not None and len(witness.functions) == 2
    assert _difference_at(shifted, witness).is_zero is False


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_identity_is_documented(name: str) -> None:
    item = theory.IDENTITIES[name]
    assert (item.source[:3] in {"000", "001", "002", "003", "004"}
            or any(item.source.startswith(key) for key in REFERENCES)), item.source
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


@pytest.mark.parametrize("key", list(REFERENCES), ids=list(REFERENCES))
def test_every_reference_beyond_the_seeds_is_cited(key: str) -> None:
    assert any(key in item.source for item in theory.IDENTITIES.values()), key
