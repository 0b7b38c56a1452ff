"""The ``scalewise`` command line: one subcommand per module of this package.

Each module ``scalewise.cli.<command>`` defines ``register(subparsers)``, which adds the
subcommand ``<command>``, and ``run(args) -> int``, its exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("proofs", "docs", "figures", "train", "runs", "sweep", "validate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalewise",
        description="Training dynamics under normalization, weight decay, adaptive methods and "
        "K-FAC: proved (SymPy), simulated (NumPy), measured (PyTorch).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"scalewise.cli.{name}")
        module.register(subparsers)
        subparsers.choices[name].set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
