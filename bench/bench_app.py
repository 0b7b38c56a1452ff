"""The compute behind one slider change on the explorer's simulation pages, cold (a cache miss:
the pure function runs) and warm (a cache hit), measured through the explorer's own cached
wrappers (``explorer/computations.py``).

    python bench/bench_app.py

Target: under 200 ms cold. Figures are drawn after the compute and are not timed here.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import streamlit.logger

from scalewise.vocabulary import Optimizer

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 0.2


def load_computations():
    """``explorer.computations``, imported from the repository as ``streamlit run app.py`` does
    (the explorer's folder is not installed)."""
    sys.path.insert(0, str(ROOT))
    return importlib.import_module("explorer.computations")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    streamlit.logger.set_log_level("error")  # "no runtime" notices: we run outside a server
    app = load_computations()
    cases = [("1 norm growth: steps 30000 -> 100000",
              lambda: app.norm_growth((0.01, 0.1, 1.0), 100_000, 1.0))]
    for optimizer in app.OPTIMIZERS:
        lr = app.default_lr(optimizer)
        momentum = Optimizer.parse(optimizer).properties.default_momentum
        cases.append((f"2 wd equilibrium, {optimizer}: lr -> {lr:g}",
                      lambda o=optimizer, lr=lr, m=momentum: (
                          app.wd_trajectory(o, lr, 1e-2, 3000, m, (0.9, 0.999)),
                          app.wd_equilibrium(o, lr, 1e-2, m, (0.9, 0.999)))))
    app.norm_growth((0.01, 0.1, 1.0), 1000, 1.0)  # imports and lambdify caches, not timed
    print(f"{'slider change':46s} {'cold ms':>8s} {'warm ms':>8s}  under {TARGET_SECONDS * 1e3:.0f} ms")
    for label, call in cases:
        cold, warm = timed(call), timed(call)
        print(f"{label:46s} {cold * 1e3:8.1f} {warm * 1e3:8.2f}  {cold < TARGET_SECONDS}")


if __name__ == "__main__":
    main()
