"""The house's arrows point down: theory <- sim <- models <- sweep <- validation <- cli and the
explorer, with figures on sim beside models, and every room on the base (scalewise.checks,
scalewise.vocabulary). Read from the imports of every source file (absolute ``scalewise.*``
imports only: a relative import or a bare ``import models`` fails too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RANK = {"scalewise": 0, "theory": 1, "sim": 2, "figures": 3, "models": 3, "sweep": 4,
        "validation": 5, "cli": 6, "explorer": 6}
"""Each room's floor: a module may import its own room and rooms on lower floors."""
APART = {frozenset({"figures", "models"})}
"""Rooms on one floor that do not import each other."""
FOLDERS = [folder for folder in RANK if (ROOT / folder).is_dir()]
BARE = set(RANK) - {"scalewise", "explorer"}
"""Installed rooms, importable only as ``scalewise.<room>`` (the explorer is not installed: its
pages import ``explorer.*``)."""


def room_of(module: str) -> str | None:
    """The room a ``scalewise.*`` module lives in (``scalewise`` for the base)."""
    parts = module.split(".")
    if parts[0] != "scalewise":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in RANK else "scalewise"


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``, relative ones as ``"."``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." if node.level else node.module or ""
            if module == "scalewise":
                out += [(node.lineno, f"scalewise.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, module))
    return out


def violations(folder: str) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        floor = RANK["cli"] if path.name == "__main__.py" else RANK[folder]  # entry points
        for line, module in imports(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if module == "." or module.split(".")[0] in BARE:
                found.append(f"{where} (not through the scalewise namespace)")
                continue
            room = room_of(module)
            if room is None or room == folder:
                continue
            if RANK[room] > floor or frozenset({room, folder}) in APART:
                found.append(f"{where} (an arrow up, or across)")
    return found


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_arrow_points_down(folder: str) -> None:
    assert not violations(folder), "\n".join(violations(folder))


def test_a_wrong_import_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "theory").mkdir()
    (tmp_path / "theory" / "bad.py").write_text(
        "from scalewise.models import train\nimport sim\nfrom . import x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = violations("theory")
    assert len(found) == 3
