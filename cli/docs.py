"""``scalewise docs``: write the identity catalogue page generated from the registry."""

from __future__ import annotations

import argparse
from pathlib import Path

from scalewise.cli.exits import NEGATIVE, OK, answered
from scalewise.theory.catalogue import catalogue_markdown

DEFAULT = Path("docs/identities.md")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "docs", help="write docs/identities.md (every identity, its source, the seeds' slips)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT, help=f"output file ({DEFAULT})")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs from the registry"
    )


@answered(interrupted="nothing was written")
def run(args: argparse.Namespace) -> int:
    text = catalogue_markdown()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run `scalewise docs --out {args.out}`")
            return NEGATIVE
        print(f"{args.out} is up to date")
        return OK
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return OK
