"""The explorer in a real browser: ``streamlit run app.py`` on a loopback port, every page loaded
in headless Chromium (Debian's ``chromium``) by both its URLs (its navigation path and
``?page=KEY``, which moves to that path), rendered, free of error elements, screenshotted.

Chromium is driven over its DevTools protocol (``--remote-debugging-port``) rather than with
``--dump-dom``/``--screenshot``: those fire at page load, before Streamlit's websocket has
delivered the page, and ``--virtual-time-budget`` does not wait for websocket traffic. Skipped,
with the reason, where ``/usr/bin/chromium`` is absent; screenshots go to a pytest temp folder
(``--basetemp`` keeps them where you want them).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from scalewise.models.store import STORE_ENV

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0  # seconds for the server to answer its health check
RENDER_TIMEOUT = 90.0  # seconds for a page to finish its script run

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=(
    f"{CHROMIUM} is absent: install Debian's chromium package (apt-get install chromium) to run "
    "the real-browser tests"))
sync_client = pytest.importorskip("websockets.sync.client",
                                  reason="the websockets package (a streamlit dependency) is absent")


@dataclass(frozen=True)
class PageCase:
    key: str
    header: str
    images: int  # figures the page draws
    root: bool = False  # the navigation's first page, served at the app's root URL

    @property
    def path(self) -> str:
        """The page's own URL path in the navigation."""
        return "/" if self.root else f"/{self.key}"


PAGES = [
    PageCase("norm-growth", "Norm growth", 1, root=True),
    PageCase("wd-equilibrium", "Weight-decay equilibrium", 1),
    PageCase("measurement", "Theory vs measurement", 0),
    PageCase("identities", "Identities", 0),
    PageCase("kfac", "K-FAC", 2),
    PageCase("covariate-shift", "Internal covariate shift", 1),
]

RENDERED = """(() => {
  const heading = [...document.querySelectorAll('h2')].some(h => h.innerText.includes(%s));
  const running = document.querySelector('[data-testid="stStatusWidget"]') !== null;
  const images = document.querySelectorAll('[data-testid="stImage"] img, .stImage img').length;
  const exceptions = document.querySelectorAll('[data-testid="stException"]').length;
  return {heading, running, images, exceptions, path: location.pathname, search: location.search};
})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def process(args: list[str], **kwargs) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, STORE_ENV: str(tmp_path_factory.mktemp("store") / "runs.sqlite")}
    args = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
            "--server.headless", "true", "--server.address", "127.0.0.1",
            "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    with process(args, cwd=ROOT, env=env) as server:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(url) or server.poll() is not None, START_TIMEOUT,
                   "the server's health check")
        assert server.poll() is None, f"streamlit exited with code {server.returncode}"
        yield url


class DevTools:
    """Commands to one page over Chromium's DevTools protocol."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.last_id = 0

    def call(self, method: str, **params) -> dict:
        self.last_id += 1
        self.connection.send(json.dumps({"id": self.last_id, "method": method,
                                         "params": params}))
        while True:
            message = json.loads(self.connection.recv(timeout=RENDER_TIMEOUT))
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[DevTools]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    args = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1000",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"]
    with process(args) as chromium:
        active = profile / "DevToolsActivePort"
        wait_until(lambda: active.exists() and active.read_text().count("\n") >= 1,
                   START_TIMEOUT, "Chromium's DevTools port")
        port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        with sync_client.connect(page["webSocketDebuggerUrl"], max_size=None) as connection:
            yield DevTools(connection)
        assert chromium.poll() is None, "Chromium exited during the tests"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def page_state(browser: DevTools, header: str) -> dict:
    result = browser.call("Runtime.evaluate", expression=RENDERED % json.dumps(header),
                          returnByValue=True)
    return result["result"]["value"]


URLS = {"path": lambda case: case.path, "query": lambda case: f"/?page={case.key}"}


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("case", PAGES, ids=lambda c: c.key)
def test_page_renders_in_chromium(case: PageCase, url: str, app_url: str, browser: DevTools,
                                  screenshots: Path) -> None:
    browser.call("Page.navigate", url=app_url + URLS[url](case))

    def rendered() -> dict | None:
        state = page_state(browser, case.header)
        done = state["heading"] and not state["running"] and state["images"] >= case.images
        return state if done else None

    def at_its_path() -> dict | None:
        state = page_state(browser, case.header)
        return state if state["path"] == case.path else None

    wait_until(rendered, RENDER_TIMEOUT, f"rendering page {case.key!r}")
    state = wait_until(at_its_path, RENDER_TIMEOUT, f"page {case.key!r} moving to {case.path}")
    assert not state["search"], f"?page={case.key} is left in the URL"
    shot = browser.call("Page.captureScreenshot", format="png")
    path = screenshots / f"{case.key}-{url}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert state["exceptions"] == 0, f"page {case.key!r} shows an exception; see {path}"
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 10_000
