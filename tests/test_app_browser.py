"""The explorer in a real browser: ``scalewise explore`` (Streamlit serving app.py, the pages'
libraries loaded before it listens) on a loopback port, every page loaded
in headless Chromium by both its URLs (its navigation path and ``?page=KEY``, which moves to that
path), rendered with its charts, free of error elements, screenshotted; nothing overflows
horizontally at 1400 and at 800 px; no maths fails to typeset (KaTeX's error marks, or LaTeX
commands left as raw text); and the time of a first load and of the re-render after each of the
pages' main widgets changes, recorded. The store holds one small run with per-unit records, so
the measurement page's run, layer and unit pickers are exercised.

Chromium is driven over its DevTools protocol (``--remote-debugging-port``) rather than with
``--dump-dom``/``--screenshot``: those fire at page load, before Streamlit's websocket has
delivered the page, and ``--virtual-time-budget`` does not wait for websocket traffic. The
browser is ``$SCALEWISE_CHROMIUM`` or Debian's ``/usr/bin/chromium``; the tests skip, saying
why, where neither exists. Screenshots and ``timings.json`` go to ``$SCALEWISE_SCREENSHOTS`` or a
pytest temp folder.

Times are recorded, not asserted (the machines that run the suite are shared; a timed assert
would fail on load, not on the code): a page is loaded when its header, its charts and no
running-indicator are there; a re-render ends at the last change of the page (a
``MutationObserver``) once the script run has finished, measured from the key press or click
that changed the widget.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from loopback import free_port, healthy, wait_until

from scalewise import models
from scalewise.models.store import STORE_ENV, RunStore

CHROMIUM = Path(os.environ.get("SCALEWISE_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0  # seconds for the server to answer its health check
RENDER_TIMEOUT = 120.0  # seconds for a page to finish its script run
QUIET = 0.6  # seconds without a change of the page after which a re-render has ended
WIDTHS = (1400, 800)  # pixels of the windows checked for horizontal overflow

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=(
    f"{CHROMIUM} is absent: install Debian's chromium package (apt-get install chromium) or "
    "point $SCALEWISE_CHROMIUM at a Chromium binary to run the real-browser tests"))
sync_client = pytest.importorskip("websockets.sync.client",
                                  reason="the websockets package (a streamlit dependency) is absent")


@dataclass(frozen=True)
class Change:
    """A change of one of a page's main widgets: ``script`` (JavaScript) returns the centre of
    the element to click, or focuses it to press ``key``; it returns null while the widget is
    not on the page yet. ``opener``, where given, is clicked first, untimed, until ``script``
    finds its target (a select box, whose ``script`` finds an option of the list it opened)."""

    label: str
    script: str
    key: str = ""
    opener: str = ""


def slider(index: int) -> str:
    """Focus the ``index``-th slider's thumb (a range input inside ``stSlider``): its value,
    or null while it is absent or does not hold the focus."""
    return ("(() => { const s = document.querySelectorAll("
            f"'[data-testid=\"stSlider\"] input[type=\"range\"]')[{index}]; "
            "if (!s) return null; s.focus(); "
            "return document.activeElement === s ? {value: s.value} : null; })()")


def centre(element: str) -> str:
    """The centre of the element the JavaScript expression ``element`` finds (null while there
    is none), scrolled into view."""
    return (f"(() => {{ const e = {element}; "
            "if (!e) return null; e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
            "return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()")


def click(selector: str, index: int = 0, text: str | None = None) -> str:
    """The ``index``-th element matching ``selector`` (of those whose text is ``text``, where
    given)."""
    found = f"[...document.querySelectorAll({json.dumps(selector)})]"
    if text is not None:
        found += f".filter(e => e.innerText.trim() === {json.dumps(text)})"
    return centre(f"{found}[{index}]")


def select_box(label: str) -> str:
    """The button that opens the select box labelled ``label``."""
    return centre("[...document.querySelectorAll('[data-testid=\"stSelectbox\"]')].find(b => "
                  "b.querySelector('[data-testid=\"stWidgetLabel\"]')?.innerText.trim() === "
                  f"{json.dumps(label)})?.querySelector('button[aria-label=\"Open\"]')")


STEP_UP = '[data-testid="stNumberInputStepUp"]'
OPTION = '[role="option"]'
STORED_RUN_STEPS = 20


@dataclass(frozen=True)
class PageCase:
    key: str
    header: str
    charts: int  # charts the page draws
    changes: tuple[Change, ...]
    root: bool = False  # the navigation's first page, served at the app's root URL

    @property
    def path(self) -> str:
        """The page's own URL path in the navigation."""
        return "/" if self.root else f"/{self.key}"


PAGES = [
    PageCase("norm-growth", "Norm growth", 4, (
        Change("steps", slider(0), "ArrowLeft"),
        Change("gradient norm", click(STEP_UP)),
    ), root=True),
    PageCase("wd-equilibrium", "Weight-decay equilibrium", 6, (
        Change("learning rate", click(STEP_UP, 0)),
        Change("weight decay", click(STEP_UP, 1)),
        Change("steps", slider(0), "ArrowLeft"),
    )),
    PageCase("measurement", "Theory vs measurement", 2, (
        Change("your runs", click('[data-testid="stRadio"] label', text="Your runs")),
        Change("unit", click(OPTION, 1), opener=select_box("Unit")),
    )),
    PageCase("identities", "Identities", 0, (
        Change("seed filter", click('[data-testid="stButtonGroup"] button', 1)),
    )),
    PageCase("kfac", "K-FAC", 6, (
        Change("damping", click(STEP_UP, 2)),
        Change("width", slider(1), "ArrowRight"),
    )),
    PageCase("covariate-shift", "Internal covariate shift", 2, (
        Change("largest mean", slider(0), "ArrowRight"),
        Change("units", slider(1), "ArrowLeft"),
    )),
    PageCase("schedules", "Schedules and the corrected decay", 4, (
        Change("peak learning rate", click(STEP_UP, 0)),
        Change("steps", slider(0), "ArrowLeft"),
    )),
]


def test_every_page_of_the_explorer_is_here() -> None:
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)  # defines PAGES; runs nothing (main() is guarded)
    assert [case.key for case in PAGES] == list(app.PAGES)


STATE = """(() => {
  const heading = [...document.querySelectorAll('h2')].some(h => h.innerText.includes(%s));
  const running = document.querySelector('[data-testid="stStatusWidget"]') !== null;
  const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"] canvas, '
                                           + '[data-testid="stVegaLiteChart"] svg').length;
  const exceptions = document.querySelectorAll('[data-testid="stException"]').length;
  const errors = [...document.querySelectorAll('[data-testid="stAlertContentError"]')]
                 .map(e => e.innerText);
  const main = document.querySelector('[data-testid="stMain"]');
  const texts = main ? document.createTreeWalker(main, NodeFilter.SHOW_TEXT) : null;
  const raw_tex = [];  // LaTeX commands shown as text, outside typeset maths and code
  while (texts && texts.nextNode()) {
    const node = texts.currentNode;
    if (/\\\\[a-zA-Z]{2,}/.test(node.data) && !node.parentElement.closest('.katex, code, pre'))
      raw_tex.push(node.data.trim().slice(0, 80));
  }
  const tex_errors = [...document.querySelectorAll('.katex-error')].map(e => e.title);
  return {heading, running, charts, exceptions, errors, raw_tex, tex_errors,
          path: location.pathname,
          search: location.search, changed: window.__changed || 0, now: performance.now()};
})()"""

OBSERVE = """(() => {
  if (!window.__observer) {
    window.__changed = performance.now();
    window.__observer = new MutationObserver(() => { window.__changed = performance.now(); });
    window.__observer.observe(document.body, {subtree: true, childList: true,
                                              attributes: true, characterData: true});
  }
})()"""

WATCH = """(() => {
  window.__changed = performance.now();
  if (!window.__observer) {
    window.__observer = new MutationObserver(() => { window.__changed = performance.now(); });
    window.__observer.observe(document.body, {subtree: true, childList: true,
                                              attributes: true, characterData: true});
  }
  return performance.now();
})()"""

OVERFLOW = """(() => {
  const width = document.documentElement.clientWidth;
  const clipped = e => {  // inside a box that clips or scrolls it, itself within the window
    for (let a = e.parentElement; a; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible'
          && a.getBoundingClientRect().right <= width + 1) return true;
    }
    return false;
  };
  const wide = [...document.querySelectorAll('[data-testid="stMain"] *')].filter(e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.right > width + 1
           && getComputedStyle(e).visibility !== 'hidden' && !clipped(e);
  }).map(e => (e.getAttribute('data-testid') || e.tagName) + ' ' + Math.round(
    e.getBoundingClientRect().right));
  return {width, scroll: document.documentElement.scrollWidth, wide: wide.slice(0, 8)};
})()"""


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
def app_url(tmp_path_factory, timings: dict) -> Iterator[str]:
    """The explorer as a user starts it (``scalewise explore``, which loads the pages'
    libraries before the server listens), with the seconds until its health check answers."""
    port = free_port()
    store = tmp_path_factory.mktemp("store") / "runs.sqlite"
    config = models.override(models.preset("digits-bn-sgd"), {
        "steps": STORED_RUN_STEPS, "device": "cpu", "unit_probe_every": 1,
        "costly_probe_every": 0})
    with RunStore(store) as opened:
        models.train(config, store=opened, progress=False)
    env = {**os.environ, STORE_ENV: str(store)}
    args = [sys.executable, "-m", "scalewise", "explore", "--headless", "--address",
            "127.0.0.1", "--port", str(port)]
    start = time.perf_counter()
    with process(args, cwd=ROOT, env=env) as server:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(url) or server.poll() is not None, START_TIMEOUT,
                   "the server's health check")
        assert server.poll() is None, f"the explorer exited with code {server.returncode}"
        timings["server_ready"] = round(time.perf_counter() - start, 3)
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

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression,
                         returnByValue=True)["result"].get("value")

    def resize(self, width: int, height: int = 1000) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)


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
            tools = DevTools(connection)
            tools.resize(WIDTHS[0])
            yield tools
        assert chromium.poll() is None, "Chromium exited during the tests"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("SCALEWISE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def timings(screenshots: Path) -> Iterator[dict]:
    """The server's start, first loads and re-renders in seconds, written to ``timings.json``
    at the end."""
    found: dict = {"first_load": {}, "rerender": {}}
    yield found
    renders = [t for page in found["rerender"].values() for t in page.values()]
    found["summary"] = {
        "first_load_max": max(found["first_load"].values(), default=None),
        "rerender_median": statistics.median(renders) if renders else None,
        "rerender_max": max(renders, default=None),
    }
    (screenshots / "timings.json").write_text(json.dumps(found, indent=1))
    print(json.dumps(found["summary"]))


def state(browser: DevTools, header: str) -> dict:
    return browser.evaluate(STATE % json.dumps(header))


def load(browser: DevTools, url: str, case: PageCase) -> tuple[dict, float]:
    """Open ``url`` and wait until ``case``'s page has rendered (its header and charts there,
    its script run over, and no change for :data:`QUIET` seconds): its state and the seconds
    from the navigation to the page's last change."""
    browser.evaluate("window.__left = true")  # marks the document being left
    browser.call("Page.navigate", url=url)

    def rendered() -> dict | None:
        if browser.evaluate("window.__left === true"):  # the new document is not there yet
            return None
        browser.evaluate(OBSERVE)
        now = state(browser, case.header)
        quiet = now["now"] - now["changed"] > QUIET * 1000
        done = now["heading"] and not now["running"] and now["charts"] >= case.charts and quiet
        return now if done or now["exceptions"] else None

    found = wait_until(rendered, RENDER_TIMEOUT, f"rendering page {case.key!r}")
    return found, found["changed"] / 1000  # performance.now() counts from the navigation


def shoot(browser: DevTools, path: Path) -> Path:
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


URLS = {"path": lambda case: case.path, "query": lambda case: f"/?page={case.key}"}


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("case", PAGES, ids=lambda c: c.key)
def test_page_renders_in_chromium(case: PageCase, url: str, app_url: str, browser: DevTools,
                                  screenshots: Path, timings: dict) -> None:
    browser.resize(WIDTHS[0])
    found, seconds = load(browser, app_url + URLS[url](case), case)
    timings["first_load"][f"{case.key} ({url})"] = round(seconds, 3)
    found = wait_until(lambda: (lambda s: s if s["path"] == case.path else None)(
        state(browser, case.header)), RENDER_TIMEOUT, f"page {case.key!r} moving to {case.path}")
    assert not found["search"], f"?page={case.key} is left in the URL"
    path = shoot(browser, screenshots / f"{case.key}-{url}.png")
    assert found["exceptions"] == 0 and not found["errors"], (
        f"page {case.key!r} shows an exception or error {found['errors']}; see {path}")
    assert not found["tex_errors"] and not found["raw_tex"], (
        f"page {case.key!r} has maths that did not typeset: {found['tex_errors']} "
        f"{found['raw_tex'][:5]}; see {path}")
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 10_000


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", PAGES, ids=lambda c: c.key)
def test_nothing_overflows_horizontally(case: PageCase, width: int, app_url: str,
                                        browser: DevTools, screenshots: Path) -> None:
    browser.resize(width)
    load(browser, app_url + case.path, case)
    time.sleep(QUIET)  # charts size themselves to their columns after the first paint
    found = browser.evaluate(OVERFLOW)
    shoot(browser, screenshots / f"{case.key}-{width}px.png")
    assert found["scroll"] <= found["width"] + 1 and not found["wide"], (
        f"page {case.key!r} at {width} px: {found}")


@pytest.mark.parametrize("case", [c for c in PAGES if c.changes], ids=lambda c: c.key)
def test_rerender_after_a_widget_change(case: PageCase, app_url: str, browser: DevTools,
                                        timings: dict) -> None:
    """Each main widget changed once; the re-render's seconds recorded."""
    browser.resize(WIDTHS[0])
    load(browser, app_url + case.path, case)
    recorded = timings["rerender"].setdefault(case.key, {})
    for change in case.changes:
        time.sleep(QUIET)
        target = wait_until(lambda: shown(browser, change), RENDER_TIMEOUT,
                            f"{change.label}'s widget appearing on {case.key}")
        start = browser.evaluate(WATCH)
        if change.key:
            press_key(browser, change, target)
        else:
            press(browser, target)

        def settled() -> dict | None:
            now = state(browser, case.header)
            quiet = browser.evaluate("performance.now()") - now["changed"] > QUIET * 1000
            return now if quiet and not now["running"] else None

        found = wait_until(settled, RENDER_TIMEOUT, f"re-rendering {case.key} after "
                           f"{change.label}")
        assert found["changed"] > start, f"{change.label} changed nothing on {case.key}"
        recorded[change.label] = round((found["changed"] - start) / 1000, 3)
        assert found["exceptions"] == 0 and not found["errors"], (case.key, change.label, found)
        assert not found["tex_errors"] and not found["raw_tex"], (case.key, change.label, found)


def shown(browser: DevTools, change: Change) -> dict | None:
    """Where to click or press for ``change``, once its widget is on the page; a select box is
    opened first (again, if a re-render of the page closed it)."""
    target = browser.evaluate(change.script)
    if target or not change.opener:
        return target
    opener = browser.evaluate(change.opener)
    if opener:
        press(browser, opener)
        time.sleep(QUIET)
    return browser.evaluate(change.script)


def press(browser: DevTools, target: dict) -> None:
    """A left click at ``target``'s ``x`` and ``y``."""
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", type=kind, x=target["x"], y=target["y"],
                     button="left", clickCount=1)


KEY_CODES = {"ArrowRight": 39, "ArrowLeft": 37}
KEY_TRIES = 3  # presses of a slider's key before its value not moving fails the test


def press_key(browser: DevTools, change: Change, focused: dict) -> None:
    """Press ``change.key`` on the slider ``change.script`` focuses (``focused``: its value
    then) until the slider's value moves. A key event that reaches a page still settling its
    focus is lost, which is the browser's and not the app's; a slider that takes no key after
    :data:`KEY_TRIES` presses fails the test."""
    for _ in range(KEY_TRIES):
        for kind in ("keyDown", "keyUp"):
            browser.call("Input.dispatchKeyEvent", type=kind, key=change.key,
                         code=change.key, windowsVirtualKeyCode=KEY_CODES[change.key])
        deadline = time.monotonic() + QUIET
        while time.monotonic() < deadline:
            if (browser.evaluate(change.script) or focused)["value"] != focused["value"]:
                return
            time.sleep(0.05)
        focused = wait_until(lambda: browser.evaluate(change.script), RENDER_TIMEOUT,
                             f"{change.label}'s slider taking the focus again")
    raise AssertionError(f"{change.label}'s slider kept its value {focused['value']} through "
                         f"{KEY_TRIES} presses of {change.key}")

