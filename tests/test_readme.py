"""The README's Python snippets run as written, and its two set-up commands are the ones CI uses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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
    assert commands[0].endswith("scalewise explore") and "pytest" in commands[1]


def test_cli_lines_name_real_subcommands() -> None:
    from scalewise.cli import COMMANDS

    used = set(re.findall(r"^scalewise (\w+)", TEXT, flags=re.M))
    assert used and used <= set(COMMANDS)


COLLIDING = ("models", "sim", "theory", "validation")
"""Package names a paper's own repository often has: scalewise must not collide with them."""


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A folder holding its own ``models/``, ``sim/``, ``theory/`` and ``validation/``
    packages, first on the path of the processes started in it."""
    folder = tmp_path_factory.mktemp("paper")
    for name in COLLIDING:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f"PAPER = {name!r}\n")
    env = {**os.environ, "PYTHONPATH": str(folder), "SCALEWISE_STORE": str(folder / "s.sqlite")}
    return {"cwd": folder, "env": env}


def _run(paper: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=600, check=False,
                          **paper)


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_snippet_runs_beside_colliding_packages(code: str, paper: dict[str, object]) -> None:
    check = "import models, sim, theory, validation\nassert models.PAPER == 'models'\n"
    done = _run(paper, sys.executable, "-c", check + code)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("command", [("proofs", "--only", "wd_effective_lr"),
                                     ("train", "--preset", "digits-bn-sgd", "--steps", "5")])
def test_cli_runs_beside_colliding_packages(command: tuple[str, ...],
                                            paper: dict[str, object]) -> None:
    done = _run(paper, sys.executable, "-m", "scalewise", *command)
    assert done.returncode == 0, done.stderr[-2000:]


def test_nothing_installed_at_the_top_level(paper: dict[str, object]) -> None:
    env = {**paper["env"], "PYTHONPATH": ""}
    code = ("import importlib.util as u\n"
            "print([n for n in ('models', 'sim', 'theory', 'validation', 'sweep', 'figures', "
            "'cli', 'scalewise_cli') if u.find_spec(n)])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, cwd=paper["cwd"].parent, env=env)
    assert done.stdout.strip() == "[]"
