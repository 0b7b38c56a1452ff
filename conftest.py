"""Collects the doctests of the package folders (``theory/``, ``sim/``, ... ``scalewise/``) under
the names they install as (``theory/equilibrium.py`` is ``scalewise.theory.equilibrium``), so each
module is imported once: imported again under a second name, a topic module of ``theory`` would
register its identities twice. ``app.py`` and ``bench/`` are not package folders, so their code is
not imported."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.doctest import DoctestModule

ROOT = Path(__file__).resolve().parent
PACKAGE_FOLDERS = ("theory", "sim", "models", "sweep", "figures", "validation", "cli", "scalewise")
"""The top folders that install as ``scalewise.<folder>`` (``scalewise/`` is the root)."""


def installed_name(path: Path) -> str:
    """``theory/kfac.py`` -> ``scalewise.theory.kfac``; ``scalewise/checks.py`` ->
    ``scalewise.checks``; a package's ``__init__.py`` is the package."""
    parts = path.resolve().relative_to(ROOT).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(parts if parts[0] == "scalewise" else ("scalewise", *parts))


class InstalledDoctestModule(DoctestModule):
    """pytest's doctest collector, importing the module by its installed name."""

    def _getobj(self) -> ModuleType:
        return importlib.import_module(installed_name(self.path))


def pytest_configure(config: pytest.Config) -> None:
    # this collector replaces --doctest-modules, whose import by file path would load every
    # module of the package folders a second time
    config.option.doctestmodules = False


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    relative = file_path.resolve().relative_to(ROOT) if file_path.is_relative_to(ROOT) else None
    if (file_path.suffix == ".py" and file_path.name != "__main__.py" and relative
            and relative.parts[0] in PACKAGE_FOLDERS):  # __main__ runs the CLI when imported
        return InstalledDoctestModule.from_parent(parent, path=file_path)
    return None
