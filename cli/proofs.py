"""``scalewise proofs``: check the identities and print a table (text, Markdown or LaTeX), and on
request the witness that rejects each negative control."""

from __future__ import annotations

import argparse
import sys

from scalewise import theory
from scalewise.cli.exits import BAD_INPUT, NEGATIVE, OK, answered
from scalewise.theory.catalogue import FORMATS, results_table, witness_lines


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "proofs",
        help="check every identity of the seeds exactly (exit 1 if any fails)",
        description="Check identities exactly in SymPy, each with its negative control.",
    )
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="check only this identity (repeatable)"
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument("--list", action="store_true", help="list identity names and exit")
    parser.add_argument(
        "--witnesses", action="store_true",
        help="after the table, the exact point at which each control differs from the claim",
    )


@answered(interrupted="no identity was left half checked")
def run(args: argparse.Namespace) -> int:
    if args.list:
        print("\n".join(theory.IDENTITIES))
        return OK
    unknown = [name for name in args.only or () if name not in theory.IDENTITIES]
    if unknown:
        known = ", ".join(theory.IDENTITIES)
        print(f"error: unknown identity {', '.join(unknown)}; known identities: {known}",
              file=sys.stderr)
        return BAD_INPUT
    results = theory.check_all(args.only)
    print(results_table(results, args.format))
    if args.witnesses:
        print("\n" + witness_lines(results))
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return NEGATIVE
    if args.format == "table":
        total = sum(r.seconds for r in results)
        print(f"\n{len(results)} identities hold and reject their controls ({total:.1f} s).")
    return OK
