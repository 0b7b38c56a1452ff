"""scalewise.validation: theory against measurement on real networks, written as report folders.

Each suite (a package, one module per experiment) trains small networks with :mod:`models`,
predicts the same quantities with :mod:`sim` and :mod:`theory`, and writes a
:class:`validation.report.Report`: Markdown with the figures, ``report.json`` with one record per
comparison, and the agreement bounds it meets or misses. What the suites share is written once:
the run store and sizes (:mod:`.suite`), records, bounds and the curve frame (:mod:`.report`),
Markdown tables (:mod:`.markdown`) and a run beside theory (:mod:`.comparison`). ``scalewise validate SUITE`` runs one from the command line; from Python::

    from scalewise import validation
    from scalewise.validation.suite import Settings
    report = validation.build("effective-lr", Settings(size="smoke"))
    report.write("reports/effective-lr")

This module imports nothing heavy, so that listing the suites stays fast.

>>> sorted(SUITES)
['effective-lr', 'ics', 'kfac']
"""

from __future__ import annotations

import importlib
from enum import Enum
from typing import TYPE_CHECKING

from scalewise import checks

if TYPE_CHECKING:
    from scalewise.validation.report import LoadedReport, Report
    from scalewise.validation.suite import Settings

SUITES: dict[str, str] = {
    "effective-lr": "scalewise.validation.effective_lr",
    "kfac": "scalewise.validation.kfac",
    "ics": "scalewise.validation.ics",
}
"""Suite name -> the package whose ``build(settings) -> Report`` makes its report, one module per
experiment beside it."""


class Size(str, Enum):
    """``smoke``: every experiment shortened to seconds (the end-to-end tests); ``reference``:
    the scale of the committed reports under ``validation/reference/`` (minutes on a CPU)."""

    SMOKE = "smoke"
    REFERENCE = "reference"


def _check(name: str) -> str:
    return checks.one_of("suite", name, SUITES)


def build(name: str, settings: Settings) -> Report:
    """Run suite ``name`` with ``settings`` and return its report (not yet written)."""
    return importlib.import_module(SUITES[_check(name)]).build(settings)


def reference(name: str) -> LoadedReport:
    """The committed reference report of suite ``name`` (:func:`validation.report.load`)."""
    from scalewise.validation.report import load
    from scalewise.validation.suite import REFERENCE_DIR

    return load(REFERENCE_DIR / _check(name))


__all__ = ["SUITES", "Size", "build", "reference"]
