"""``scalewise docs``: write the pages generated from the code: the identity catalogue (from the
registry) and the coverage of the seeds beside it (from :mod:`scalewise.validation.coverage`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from scalewise.cli.exits import NEGATIVE, OK, answered
from scalewise.theory.catalogue import catalogue_markdown
from scalewise.validation.coverage import coverage_markdown

DEFAULT = Path("docs/identities.md")
COVERAGE = "coverage.md"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "docs", help="write docs/identities.md (every identity, its source, the seeds' slips) "
        f"and docs/{COVERAGE} (what covers each equation, figure and claim of the seeds)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT,
                        help=f"the identity page ({DEFAULT}); the coverage page is written "
                        f"beside it as {COVERAGE} unless --coverage-out says where")
    parser.add_argument("--coverage-out", type=Path, default=None,
                        help=f"the coverage page (default: {COVERAGE} beside --out)")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a page differs from the code"
    )


def pages(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """``(path, text)`` of every generated page."""
    coverage = args.coverage_out or args.out.with_name(COVERAGE)
    return [(args.out, catalogue_markdown()), (coverage, coverage_markdown())]


@answered(interrupted="nothing was written")
def run(args: argparse.Namespace) -> int:
    found = pages(args)
    again = f"scalewise docs --out {args.out}" + (
        f" --coverage-out {args.coverage_out}" if args.coverage_out else "")
    if args.check:
        stale = [path for path, text in found
                 if (path.read_text() if path.exists() else "") != text]
        for path in stale:
            print(f"{path} is stale: run `{again}`")
        for path, _ in found:
            if path not in stale:
                print(f"{path} is up to date")
        return NEGATIVE if stale else OK
    for path, text in found:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return OK
