"""The coverage table of the seeds: every place of the seeds has a row, every curated entry
names something that exists, identities are found from their sources, measurements are read
from the committed reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from scalewise.validation import coverage
from scalewise.validation.coverage import ITEMS, Item, Measured
from scalewise.validation.suite import REFERENCE_DIR

ROOT = Path(__file__).resolve().parents[1]
SEED_FOLDERS = (ROOT / "shared" / "seeds", ROOT.parent / "shared" / "seeds")
"""Where a checkout keeps the seeds: in it (``shared/``) or beside it (``../shared/``)."""


@pytest.fixture(scope="module")
def seeds() -> Path:
    found = next((folder for folder in SEED_FOLDERS if (folder / "README.md").exists()), None)
    if found is None:
        pytest.skip(f"the seeds are not beside this checkout (looked in "
                    f"{', '.join(map(str, SEED_FOLDERS))})")
    return found


def row(place: str) -> Item:
    return next(item for item in ITEMS if item.place == place)


def test_every_place_of_the_seeds_has_a_row_and_every_slide_title_is_verbatim(
        seeds: Path) -> None:
    assert coverage.seed_errors(seeds) == []


def test_the_notes_equations_are_numbered_one_to_twenty_seven(seeds: Path) -> None:
    """Both forms of numbered display are parsed: a form missed would leave a gap."""
    numbers = coverage.numbered_equations(next(seeds.glob("001_*.txt")).read_text())
    assert numbers == list(range(1, 28))


def test_a_place_without_row_and_a_row_without_place_are_caught(seeds: Path) -> None:
    items = [item for item in ITEMS if item.place != "001 Eq. (23)"]
    items += [Item("001", "Eq.", "28", "no such equation"),
              Item("004", "Lemma", "3", "no such lemma"),
              Item("003", "slide", "K-FAC: Kronecker Products", "a title misspelt")]
    assert coverage.seed_errors(seeds, items) == [
        "001 Eq. 23 has no row",
        "001 Eq. 28 is not in the seed",
        "004 Lemma 3 is not in the seed",
        "003 'K-FAC: Kronecker Products': no such slide title",
    ]


def test_every_curated_entry_names_something_that_exists() -> None:
    assert coverage.mapping_errors() == []


def test_entries_naming_what_does_not_exist_are_caught() -> None:
    bad = Item("001", "Eq.", "23", "the norm recurrence",
               proved_by=("no_such_identity",),
               simulated=("sim.dynamics.no_such_function", "sim.no_such_module.simulate",
                          "models.train.train"),
               measured=(Measured("effective-lr", "equilibrium", "no_such_quantity"),
                         Measured("no-such-suite", "equilibrium", "norm_sq")))
    assert coverage.mapping_errors([bad]) == [
        "001 Eq. (23): no identity 'no_such_identity'",
        "001 Eq. (23): sim.dynamics.no_such_function is not a function of sim/ or figures/",
        "001 Eq. (23): sim.no_such_module.simulate is not a function of sim/ or figures/",
        "001 Eq. (23): models.train.train is not a function of sim/ or figures/",
        f"001 Eq. (23): no record of {bad.measured[0]}",
        "001 Eq. (23): no suite 'no-such-suite'",
    ]


def test_every_row_has_a_known_seed_kind_and_a_unique_place_and_claim() -> None:
    keys = [(item.place, item.states) for item in ITEMS]
    assert len(keys) == len(set(keys))
    assert {item.kind for item in ITEMS} <= set(coverage.KINDS)


@pytest.mark.parametrize(("source", "expected"), [
    ("001 Eq. (25)", {("001", "Eq.", "25")}),
    ("001 Eqs. (7)-(9)", {("001", "Eq.", "7"), ("001", "Eq.", "8"), ("001", "Eq.", "9")}),
    ("001 Sec. 4 (Eq. 11-12 and Fig. 4)",
     {("001", "Eq.", "11"), ("001", "Eq.", "12"), ("001", "Fig.", "4")}),
    ("001 Sec. 4.3 (after Eq. 19)", set()),
    ("001 Sec. 4.3 (display before Eq. 19)", set()),
    ("004 Eq. (14) (Appendix D); 001 Eq. (26)", {("004", "Eq.", "14"), ("001", "Eq.", "26")}),
    ("004 Lemma 2 and Theorem 1 (Appendix C)", {("004", "Lemma", "2"), ("004", "Theorem", "1")}),
    ("003 slides, 'K-FAC: Kronecker Product' (matrix inversion)",
     {("003", "slide", "K-FAC: Kronecker Product")}),
    ("Defazio 2025, Sec. 2; derived here", set()),
], ids=lambda value: value if isinstance(value, str) else None)
def test_cited_places_are_parsed_from_a_source(source: str,
                                               expected: set[tuple[str, str, str]]) -> None:
    assert coverage.cited_places(source) == expected


def test_the_identity_column_comes_from_the_sources() -> None:
    assert "wd_effective_lr" in coverage.identities_of(row("001 Eq. (25)"))
    assert "kfac_kronecker_solve" in coverage.identities_of(row("003 'K-FAC: Efficient Computation'"))
    # a title quoted without its 'K-FAC: ' heading or its colon still finds its slide
    assert "ics_homogeneous_spectrum" in coverage.identities_of(
        row("003 'K-FAC: Modeling the Pseudo-Gradients'"))
    assert "sgd_exp_lr_equivalence" in coverage.identities_of(
        row("000 'Counteracting the implicit LR effect:'"))


def test_a_new_identity_citing_a_place_lands_in_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    fisher = row("001 Eq. (1)")
    cited = coverage._citations()
    monkeypatch.setattr(coverage, "_citations", lambda: (
        *cited, ("fisher_is_gauss_newton", frozenset(coverage.cited_places("001 Eq. (1)")))))
    assert coverage.identities_of(fisher)[-1] == "fisher_is_gauss_newton"
    assert coverage.status(fisher).startswith("proved")


def test_the_measurement_is_read_from_the_committed_report() -> None:
    selection = Measured("kfac", "gauss_newton_norm", "kfac_gn_norm", "init-linear")
    records = json.loads((REFERENCE_DIR / "kfac" / "report.json").read_text())
    errors = [r["rel_error"] for r in records if r["experiment"] == "gauss_newton_norm"
              and r["quantity"] == "kfac_gn_norm" and r["optimizer"] == "init-linear"]
    found = coverage.agreement(selection)
    assert (found.records, found.largest_error) == (len(errors), max(errors))
    bounds = json.loads((REFERENCE_DIR / "kfac" / "index.json").read_text())["agreement"]
    about = [b for b in bounds if (b["experiment"], b["quantity"], b["optimizer"])
             == ("gauss_newton_norm", "kfac_gn_norm", "init-linear")]
    assert (found.bounds, found.bounds_held) == (len(about), sum(b["holds"] for b in about))


def test_a_missed_bound_and_an_empty_row_are_stated(monkeypatch: pytest.MonkeyPatch) -> None:
    report = ([{"experiment": "e", "optimizer": "sgd", "layer": "", "quantity": "q@10",
                "predicted": 1.0, "measured": 2.0, "rel_error": 0.5}],
              [{"experiment": "e", "optimizer": None, "quantity": "q", "holds": False}])
    monkeypatch.setattr(coverage, "_reference", lambda suite: report)
    measured = Item("003", "slide", "No such slide", "a claim",
                    measured=(Measured("kfac", "e", "q", "sgd"),))
    assert coverage.status(measured) == "measured (a bound missed)"
    assert ("kfac: e / q (sgd): 1 record, largest rel. error 0.5; bounds held 0 of 1"
            in coverage._row(measured))
    empty = dataclasses.replace(measured, measured=())
    assert coverage.status(empty) == "not covered"
    assert coverage._row(empty).endswith("| — | — | — | not covered |")


def test_the_page_has_every_row_once() -> None:
    page = coverage.coverage_markdown()
    rows = [line for line in page.splitlines() if line.startswith("| 00")]
    assert len(rows) == len(ITEMS) + len(coverage.SEEDS)  # the rows and the summary's lines
    assert "| 001 Eq. (27) |" in page and "| 004 Theorem 1 |" in page
