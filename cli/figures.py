"""``scalewise figures``: draw every simulator figure and write it as PNG and PDF."""

from __future__ import annotations

import argparse
import time

from scalewise.cli.exits import OK, answered


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "figures",
        help="draw the simulator figures (001 Fig. 6-7, optimizer comparison, 004 Fig. 3)",
        description="Simulate and draw every figure of figures.notes, written as PNG and PDF.",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--format", action="append", choices=("png", "pdf", "svg"),
                        dest="formats", help="file format (repeatable; default: png and pdf)")
    parser.add_argument("--dpi", type=int, default=200, help="resolution of raster formats")


@answered(interrupted="the files written so far are kept")
def run(args: argparse.Namespace) -> int:
    from scalewise.figures.notes import (
        save_all,  # matplotlib is imported only by this command
    )

    start = time.perf_counter()
    written = save_all(args.out, formats=tuple(args.formats or ("png", "pdf")), dpi=args.dpi)
    for path in written:
        print(path)
    print(f"{len(written)} files in {time.perf_counter() - start:.1f} s")
    return OK
