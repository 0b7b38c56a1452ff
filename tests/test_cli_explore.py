"""``scalewise explore``: the explorer served with its libraries loaded first, and its errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from loopback import LOOPBACK, free_port, healthy, wait_until

from scalewise.cli import explore, main
from scalewise.cli.exits import BAD_INPUT, FAULT
from scalewise.models.store import STORE_ENV

ROOT = Path(__file__).resolve().parents[1]


def test_a_port_out_of_range_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--port", "70000"]) == BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: --port = 70000 is invalid; allowed: 1 to 65535")
    assert len(err.strip().splitlines()) == 1


def test_an_install_without_the_explorer_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explore, "COMPUTATIONS", tmp_path / "explorer" / "computations.py")
    assert main(["explore"]) == FAULT
    err = capsys.readouterr().err
    assert "the explorer is not at" in err and len(err.strip().splitlines()) == 1


def test_the_warm_up_leaves_the_pages_nothing_of_scalewise_to_import() -> None:
    """In a fresh interpreter: after :func:`explore.warm_up`, importing the pages'
    computations loads no module of scalewise, torch or SymPy."""
    code = (
        "import sys, logging\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "logging.disable(logging.WARNING)  # Streamlit's 'no runtime' notices\n"
        "from scalewise.cli import explore\n"
        "explore.warm_up()\n"
        "before = set(sys.modules)\n"
        "import explorer.computations\n"
        "new = sorted(m for m in set(sys.modules) - before\n"
        "             if m.split('.')[0] in ('scalewise', 'torch', 'sympy'))\n"
        "print(new)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_the_explorer_is_served_without_a_file_watcher_and_with_the_viewer_toolbar() -> None:
    """Streamlit, started from the repository root as both commands are, reads
    ``.streamlit/config.toml``: no file watcher (it walks the checkout and re-reads every
    imported module's path after each script run, on the server's event loop) and the viewer's
    toolbar."""
    code = ("from streamlit import config\n"
            "print(config.get_option('server.fileWatcherType'), "
            "config.get_option('client.toolbarMode'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("STREAMLIT_")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["none", "viewer"], done.stdout


def test_it_serves_the_explorer_on_the_port_and_address_given(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, STORE_ENV: str(tmp_path / "runs.sqlite")}
    server = subprocess.Popen([sys.executable, "-m", "scalewise", "explore", "--headless",
                               "--address", LOOPBACK, "--port", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(lambda: healthy(url) or server.poll() is not None, 90,
                   "the explorer's health check")
        assert healthy(url), f"no health answer; exit code {server.poll()}"
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert "loading the explorer's libraries" in out and "starting Streamlit" in out, out
