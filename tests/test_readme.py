"""The README's Python snippets run as written, and its two set-up commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_python_snippet_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # training writes its run store under the working directory
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


def test_exactly_two_fresh_machine_commands() -> None:
    commands = re.findall(r"^python3 -m venv .*$", TEXT, flags=re.M)
    assert len(commands) == 2
    assert commands[0].endswith("streamlit run app.py") and "pytest" in commands[1]


def test_cli_lines_name_real_subcommands() -> None:
    from scalewise.cli import COMMANDS

    used = set(re.findall(r"^scalewise (\w+)", TEXT, flags=re.M))
    assert used and used <= set(COMMANDS)
