"""The exit statuses of every ``scalewise`` command and the one place that maps errors to them.

Each command's ``run`` is wrapped in :func:`answered`: an error of the kinds below is printed as
one line, ``error: ...``, on stderr and becomes its status; a warning (a checkpoint that cannot
be read, a run another process is training) is one line, ``warning: ...``. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings
from collections.abc import Callable

OK = 0
NEGATIVE = 1  # the work ran and its answer is no: a run failed, a bound or identity failed
BAD_INPUT = 2  # an invalid argument, config, spec or run id; missing input files (as argparse)
FAULT = 3  # the store or a file cannot be used: unwritable, missing folder, damaged, locked, full
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); what finished is kept and the same command resumes
CLOSED_PIPE = 141  # the output's reader went away (128 + SIGPIPE, as the shell says)

EPILOG = ("exit status: 0 done; 1 done, and the answer is no (a run failed, a bound or an "
          "identity does not hold); 2 bad input; 3 a store or file that cannot be used "
          "(unwritable, damaged, locked, full, a run another process trains); 130 interrupted")

Run = Callable[[argparse.Namespace], int]


def answered(interrupted: str) -> Callable[[Run], Run]:
    """Wrap a command's ``run``: errors and warnings as one line each, Ctrl-C as
    :data:`INTERRUPTED` with the message ``interrupted`` (what was kept, how to go on)."""

    def wrap(run: Run) -> Run:
        @functools.wraps(run)
        def wrapped(args: argparse.Namespace) -> int:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line
                try:
                    return run(args)
                except BrokenPipeError:  # the reader went away (`| head`): stop quietly
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    return CLOSED_PIPE
                except KeyboardInterrupt:
                    print(f"interrupted: {interrupted}", file=sys.stderr)
                    return INTERRUPTED
                except (ValueError, MemoryError, ModuleNotFoundError, OSError) as error:
                    return _error(error, _status(error))

        return wrapped

    return wrap


def _status(error: Exception) -> int:
    """:data:`FAULT` for a fault of the store (a ``StoreFault``, though a ``ValueError``) or of
    a file (``OSError``), :data:`BAD_INPUT` for the rest (missing data files are a
    ``ValueError`` too)."""
    store_file = sys.modules.get("scalewise.models.store_file")  # loaded by any store in use
    if store_file is not None and isinstance(error, store_file.StoreFault):
        return FAULT
    if isinstance(error, (ValueError, MemoryError, ModuleNotFoundError)):
        return BAD_INPUT
    return FAULT


def _error(error: BaseException, status: int) -> int:
    text = " ".join(str(error).split()) or type(error).__name__  # one line, whatever it held
    print(f"error: {text}", file=sys.stderr)
    return status


def _one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: object = None, line: str | None = None) -> None:
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)
