"""The ``scalewise`` command line: one subcommand per module of this package.

Each module ``scalewise.cli.<command>`` defines ``register(subparsers)``, which adds the
subcommand ``<command>``, and ``run(args) -> int``, its exit status, wrapped by
:func:`scalewise.cli.exits.answered` so that every command answers an error with one line
(``error: ...`` on stderr, no traceback) and the same exit status for the same kind of error:

====  ======================================================================================
0     done
1     done, and the answer is no: a run failed (diverged), a validation bound or an identity
      does not hold, the docs page is stale, a sweep trial did not complete
2     bad input: an invalid flag value, config, spec (YAML or TOML) or run id; input files
      that are missing (data folder, spec, store to list); a request too large to fit
3     a fault of the store or a file: a store or output path that cannot be opened, created
      or written (a folder, no permission, a missing folder, a full disk or file-size
      limit), a damaged store, one locked past its timeout, a run held by another process
      (``train --no-wait``)
130   interrupted (Ctrl-C); what finished is kept and the same command resumes
141   the reader of the output went away (``| head``); no message
====  ======================================================================================
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from scalewise.cli.exits import EPILOG

COMMANDS = ("proofs", "docs", "figures", "train", "runs", "sweep", "validate", "explore")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalewise",
        description="Training dynamics under normalization, weight decay, adaptive methods and "
        "K-FAC: proved (SymPy), simulated (NumPy), measured (PyTorch).",
        epilog=EPILOG,
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
