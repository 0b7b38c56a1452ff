"""Simulator throughput, measured in one run (a script, not a test).

    python bench/bench_sim.py            # the full sizes
    python bench/bench_sim.py --quick    # 10x smaller, for a smoke run

Rows: the recurrence engine on a (lr, wd) grid, a plain Python loop over the same recurrence on
a subset of that grid (the speed-up is the ratio of the two rates, both measured here), the sphere
engine with Adam, and the time to draw every figure (simulate and build) and to write them.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from scalewise import sim
from scalewise.figures import notes as figures
from scalewise.theory import equilibrium as eq


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def recurrence_grid(side: int, steps: int) -> tuple[float, float]:
    lr = np.geomspace(1e-3, 1.0, side)[:, None]
    wd = np.geomspace(1e-5, 1e-1, side)[None, :]
    _, seconds = _timed(lambda: sim.simulate("sgd", lr=lr, weight_decay=wd, steps=steps,
                                             record_every=max(steps // 10, 1)))
    return side * side * steps / seconds, seconds


def python_loop(points: int, steps: int) -> tuple[float, float]:
    """The same recurrence, one float at a time through theory's lambdified step."""
    lrs = np.geomspace(1e-3, 1.0, points).tolist()
    wds = np.geomspace(1e-5, 1e-1, points).tolist()

    def run() -> list[float]:
        finals = []
        for a, lam in zip(lrs, wds):
            x = 1.0
            for _ in range(steps):
                x = eq.norm_sq_step(x, a, lam, 1.0)
            finals.append(x)
        return finals

    _, seconds = _timed(run)
    return points * steps / seconds, seconds


def sphere_adam(runs: int, dim: int, steps: int) -> tuple[float, float]:
    _, seconds = _timed(lambda: sim.simulate("adam", lr=1e-3, weight_decay=0.1, steps=steps,
                                             engine="sphere", dim=dim, runs=runs,
                                             record_every=100))
    return runs * dim * steps / seconds, seconds


def all_figures() -> tuple[float, float]:
    """Seconds to simulate and build every figure, and to write each as PNG and PDF."""
    drawn, build = _timed(lambda: [draw() for draw in figures.FIGURES.values()])
    with tempfile.TemporaryDirectory() as out:
        def write() -> None:
            for name, fig in zip(figures.FIGURES, drawn):
                for fmt in ("png", "pdf"):
                    fig.savefig(f"{out}/{name}.{fmt}", dpi=200)

        _, written = _timed(write)
    return build, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes")
    shrink = 10 if parser.parse_args().quick else 1
    side, steps = 1000 // shrink, 10_000 // shrink
    grid_rate, grid_s = recurrence_grid(side, steps)
    loop_rate, loop_s = python_loop(100 // shrink, steps)
    sphere_rate, sphere_s = sphere_adam(256 // shrink, 512, steps)
    build_s, write_s = all_figures()
    rows = [
        (f"recurrence, {side}x{side} grid x {steps} steps", grid_s,
         f"{grid_rate:.3g} element-steps/s"),
        (f"plain Python loop, {100 // shrink} points x {steps} steps", loop_s,
         f"{loop_rate:.3g} element-steps/s"),
        ("  speed-up of the recurrence engine", None, f"{grid_rate / loop_rate:.3g}x"),
        (f"sphere, Adam, {256 // shrink} runs x dim 512 x {steps} steps", sphere_s,
         f"{sphere_rate:.3g} coordinate-steps/s"),
        (f"figures: simulate and build all {len(figures.FIGURES)}", build_s, ""),
        ("figures: write PNG (200 dpi) and PDF of each", write_s, ""),
    ]
    print(f"{'benchmark':58s} {'seconds':>8s}  rate")
    for name, seconds, rate in rows:
        shown = "" if seconds is None else f"{seconds:8.2f}"
        print(f"{name:58s} {shown:>8s}  {rate}")


if __name__ == "__main__":
    main()
