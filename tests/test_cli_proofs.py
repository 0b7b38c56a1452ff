"""The ``scalewise proofs`` and ``scalewise docs`` commands, and the committed catalogue page."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalewise.cli import main
from scalewise.theory.catalogue import catalogue_markdown, results_table, witness_lines
from scalewise.theory.identity import CheckResult
from scalewise.validation.coverage import coverage_markdown

CATALOGUE = Path(__file__).resolve().parents[1] / "docs" / "identities.md"
COVERAGE = CATALOGUE.with_name("coverage.md")


def test_committed_catalogue_is_current() -> None:
    assert CATALOGUE.read_text() == catalogue_markdown(), (
        "docs/identities.md is stale: run `scalewise docs`"
    )


def test_committed_coverage_is_current() -> None:
    assert COVERAGE.read_text() == coverage_markdown(), (
        "docs/coverage.md is stale: run `scalewise docs`"
    )


@pytest.mark.parametrize("fmt", ["table", "markdown", "latex"])
def test_proofs_prints_a_table(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proofs", "--only", "wd_effective_lr", "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "wd" in out and "001 Eq. (25)" in out


def test_proofs_prints_the_witness_of_each_control(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proofs", "--only", "wd_effective_lr", "--witnesses"]) == 0
    out = capsys.readouterr().out
    assert "wd_effective_lr: alpha=1/2, g=3/5, lambda=4/7: claim - control = " in out


def test_a_result_without_witness_says_so() -> None:
    missing = CheckResult("broken", "001 Eq. (1)", holds=True, control_rejected=False, seconds=0.0)
    assert witness_lines([missing]) == "broken: no witness found"
    assert "NO" in results_table([missing], "table")


def test_proofs_rejects_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proofs", "--only", "no_such_identity"]) == 2
    err = capsys.readouterr().err
    assert "unknown identity no_such_identity" in err and "wd_effective_lr" in err


def test_failed_result_is_shown_as_failed() -> None:
    failed = CheckResult("broken", "001 Eq. (1)", holds=False, control_rejected=True, seconds=0.0)
    assert "NO" in results_table([failed], "markdown")
    with pytest.raises(ValueError, match="fmt = .* allowed: one of table, markdown, latex"):
        results_table([failed], "html")


def test_docs_check_detects_a_stale_page(tmp_path: Path) -> None:
    page = tmp_path / "identities.md"
    assert main(["docs", "--out", str(page)]) == 0
    assert (tmp_path / "coverage.md").read_text() == coverage_markdown()
    assert main(["docs", "--out", str(page), "--check"]) == 0
    page.write_text(page.read_text() + "edited by hand\n")
    assert main(["docs", "--out", str(page), "--check"]) == 1


def test_docs_check_detects_a_stale_coverage_page(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    page, coverage = tmp_path / "identities.md", tmp_path / "elsewhere" / "coverage.md"
    args = ["docs", "--out", str(page), "--coverage-out", str(coverage)]
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    coverage.write_text(coverage.read_text().replace("not covered", "proved"))
    capsys.readouterr()
    assert main([*args, "--check"]) == 1
    out = capsys.readouterr().out
    assert f"{coverage} is stale: run `scalewise docs --out {page} --coverage-out {coverage}`" in out
    assert f"{page} is up to date" in out
