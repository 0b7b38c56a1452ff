"""``scalewise explore``: the explorer (``app.py`` of this repository) served by Streamlit, with
the libraries its pages use loaded before the server listens.

``streamlit run app.py`` serves the same pages, but the first page a browser opens then waits
for what its script imports (torch, SymPy and the theory modules, matplotlib: about 2.5 s on a
2-core machine) and for the first call into ``torch.func`` (which loads torch's compiler
stack: about 0.8 s, on the K-FAC page). Streamlit runs every page's script in this process, so
what is imported here before the server starts is imported once for every page and session;
the explorer's own modules (``explorer/``, whose caches need Streamlit's runtime) are left to
the pages. Run it from the repository root, where Streamlit reads ``.streamlit/config.toml``
(the viewer's toolbar, no file watcher), as ``streamlit run app.py`` does.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

from scalewise import checks
from scalewise.cli.exits import OK, answered

APP = Path(__file__).resolve().parents[1] / "app.py"
COMPUTATIONS = APP.parent / "explorer" / "computations.py"
"""The pages' computations: the scalewise modules it imports are what :func:`warm_up` loads."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explore", help="serve the explorer (app.py) with Streamlit, its libraries loaded "
        "before the server listens, so that a page's first load does not wait for them")
    parser.add_argument("--port", type=int, default=8501, help="the server's port (8501)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="the address the server listens on (127.0.0.1, this machine only)")
    parser.add_argument("--headless", action="store_true",
                        help="do not open a browser (Streamlit's server.headless; without it, "
                        "Streamlit opens one where the machine has a display)")


def warm_up() -> float:
    """Import what :data:`COMPUTATIONS` imports from scalewise (its import statements, read
    from its source), then make ``torch.func``'s first call; the seconds it took."""
    start = time.perf_counter()
    for node in ast.walk(ast.parse(COMPUTATIONS.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scalewise"):
            __import__(node.module, fromlist=[alias.name for alias in node.names])
    import torch

    torch.func.vmap(torch.func.grad(lambda x: (x * x).sum()))(torch.ones(2, 2))
    return time.perf_counter() - start


@answered(interrupted="the explorer stopped")
def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        checks.fail("--port", args.port, "1 to 65535")
    if not COMPUTATIONS.is_file():
        raise FileNotFoundError(f"the explorer is not at {APP.parent} (app.py and explorer/): "
                                "it runs from a clone of the repository installed with "
                                "`pip install -e .`")
    print("loading the explorer's libraries ...", flush=True)
    print(f"loaded ({warm_up():.1f} s after the command's own imports); starting Streamlit",
          flush=True)
    from streamlit.web import cli as streamlit_cli

    sys.argv = ["streamlit", "run", str(APP), "--server.port", str(args.port),
                "--server.address", args.address,
                *(["--server.headless", "true"] if args.headless else [])]
    try:
        streamlit_cli.main()
    except SystemExit as done:  # click ends its command with sys.exit
        return int(done.code or OK)
    return OK
