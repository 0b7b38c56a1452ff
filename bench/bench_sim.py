"""Simulator throughput against its references, measured in one run (a script, not a test: it
reports, it never asserts).

    python bench/bench_sim.py              # full sizes, median of 3 repeats
    python bench/bench_sim.py --quick      # 10x smaller, for a smoke run
    python bench/bench_sim.py --repeat 5   # median of 5

Recurrence engine (SGD's norm recurrence on a 1000 x 1000 (lr, weight decay) grid, 10000 steps,
``record_every=1000``), against: the same engine with its fast path off (the NumPy loop); a
hand-fused in-place NumPy loop (three ufuncs with ``out=`` per step, the least NumPy can do);
a plain Python float loop on a subset of the grid; and, where a C compiler is found, a C loop
built here into a temporary folder (``-O3 -march=native``, no fast-math: IEEE as NumPy), with
the loops interchanged as the engine's, on one core and, with OpenMP, on all cores.

Sphere engine (Adam, 256 runs x dim 512, 2000 steps): the compiled kernel, the NumPy engine and
the torch implementation on the CPU (the slower two on a tenth of the steps: throughput does not
depend on the number of steps), each the median of the repeats. Then the time to draw and to write every figure.

Rates are element-steps (recurrence) or coordinate-steps (sphere) per second of wall time, and
per second of CPU time of this process (all its threads: the rate of one busy core); a ratio is
the engine's wall rate over the row's. The machine's load average is printed with them: on a
shared machine the engine's threads may not get every core, and the CPU-time rate times the
cores is what an idle machine would give a loop that scales over them.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import numpy as np

from scalewise import sim
from scalewise.figures import notes as figures
from scalewise.sim import compiled, recurrence

_C_LOOP = r"""
/* x_{k+1} = c_neg / x_k + c_pos x_k, chunks of 256 elements through all steps */
void iterate(double *x, const double *c_pos, const double *c_neg, long n, long steps) {
    #pragma omp parallel for schedule(static)
    for (long lo = 0; lo < n; lo += 256) {
        long hi = lo + 256 < n ? lo + 256 : n;
        for (long k = 0; k < steps; ++k)
            for (long j = lo; j < hi; ++j)
                x[j] = c_neg[j] / x[j] + c_pos[j] * x[j];
    }
}
"""


Row = tuple[str, float, float, float]  # name, wall rate, seconds, CPU-time rate


def _median_rate(work: float, fn: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """Medians over ``repeat`` calls: ``work`` per wall second, wall seconds, ``work`` per
    second of this process's CPU time."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return work / statistics.median(wall), statistics.median(wall), work / statistics.median(cpu)


def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    return np.geomspace(1e-3, 1.0, side)[:, None], np.geomspace(1e-5, 1e-1, side)[None, :]


def _coefficients(side: int) -> tuple[np.ndarray, np.ndarray]:
    """``c_1``, ``c_{-1}`` of theory's step on the grid, flat, as the engine computes them."""
    lr, wd = _grid(side)
    c_neg, c_pos = (np.ascontiguousarray(np.broadcast_to(term(lr, wd, 1.0), (side, side)))
                    .ravel() for _, term in recurrence._NORM_SQ_TERMS)
    return c_pos, c_neg


def _without_fast_path(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        os.environ[compiled.DISABLE_VARIABLE] = "1"
        try:
            return fn()
        finally:
            del os.environ[compiled.DISABLE_VARIABLE]
    return run


def recurrence_rows(side: int, steps: int, repeat: int) -> list[Row]:
    lr, wd = _grid(side)
    every = max(steps // 10, 1)

    def engine() -> object:
        return sim.simulate("sgd", lr=lr, weight_decay=wd, steps=steps, record_every=every)

    work = side * side * steps
    rows = [("  first call in this process (import, compile or cache load, run)",
             *_median_rate(work, engine, 1))]
    rows.insert(0, (f"engine, {side}x{side} grid x {steps} steps, record_every={every}",
                    *_median_rate(work, engine, repeat)))
    if compiled.available():
        rows.append(("engine with its fast path off (the NumPy loop)",
                     *_median_rate(work, _without_fast_path(engine), 1)))
    c_pos, c_neg = _coefficients(side)

    def fused() -> np.ndarray:
        x, term = np.ones_like(c_pos), np.empty_like(c_pos)
        for _ in range(steps):
            np.divide(c_neg, x, out=term)
            np.multiply(c_pos, x, out=x)
            np.add(term, x, out=x)
        return x

    rows.append(("hand-fused in-place NumPy loop (3 ufuncs with out= per step)",
                 *_median_rate(work, fused, 1)))
    points = max(side // 10, 1)
    pairs = list(zip(c_pos[:: c_pos.size // points].tolist(),
                     c_neg[:: c_neg.size // points].tolist()))

    def python_loop() -> list[float]:
        finals = []
        for a, b in pairs:
            x = 1.0
            for _ in range(steps):
                x = b / x + a * x
            finals.append(x)
        return finals

    rows.append((f"plain Python float loop, {len(pairs)} points",
                 *_median_rate(len(pairs) * steps, python_loop, 1)))
    rows += _c_rows(c_pos, c_neg, steps, repeat)
    return rows


def _c_rows(c_pos: np.ndarray, c_neg: np.ndarray, steps: int,
            repeat: int) -> list[Row]:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return [("C loop: no C compiler found, not measured", *(float("nan"),) * 3)]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "loop.c")
        with open(source, "w") as f:
            f.write(_C_LOOP)
        for label, flags in (("one core", []), ("all cores, OpenMP", ["-fopenmp"])):
            library = os.path.join(folder, f"loop{len(rows)}.so")
            built = subprocess.run([compiler, "-O3", "-march=native", "-fno-fast-math",
                                    "-ffp-contract=off", "-shared", "-fPIC", *flags, source,
                                    "-o", library], capture_output=True, text=True)
            if built.returncode != 0:
                rows.append((f"C loop, {label}: build failed", *(float("nan"),) * 3))
                continue
            loop = ctypes.CDLL(library).iterate
            pointer = ctypes.POINTER(ctypes.c_double)
            loop.argtypes = [pointer, pointer, pointer, ctypes.c_long, ctypes.c_long]

            def run(loop=loop, pointer=pointer) -> np.ndarray:
                x = np.ones_like(c_pos)
                loop(*(a.ctypes.data_as(pointer) for a in (x, c_pos, c_neg)), x.size, steps)
                return x

            rows.append((f"C loop (gcc -O3 -march=native), {label}",
                         *_median_rate(c_pos.size * steps, run, repeat)))
    return rows


def sphere_rows(runs: int, dim: int, steps: int, repeat: int) -> list[Row]:
    def simulate(steps: int, device: str | None = None) -> Callable[[], object]:
        return lambda: sim.simulate("adam", lr=1e-3, weight_decay=0.1, steps=steps,
                                    engine="sphere", dim=dim, runs=runs, record_every=100,
                                    device=device)

    short = max(steps // 10, 1)
    simulate(2)()  # compile or load the kernel, and start torch, before timing
    simulate(2, "cpu")()
    rows = [(f"sphere engine, Adam, {runs} runs x dim {dim} x {steps} steps"
             + ("" if compiled.available() else " (no numba: NumPy)"),
             *_median_rate(runs * dim * steps, simulate(steps), repeat))]
    if compiled.available():
        rows.append((f"sphere engine, NumPy (fast path off), {short} steps",
                     *_median_rate(runs * dim * short, _without_fast_path(simulate(short)),
                                   repeat)))
    rows.append((f"sphere engine, torch on the CPU (device='cpu'), {short} steps",
                 *_median_rate(runs * dim * short, simulate(short, "cpu"), repeat)))
    return rows


def _print(title: str, unit: str, rows: list[Row]) -> None:
    engine_rate = rows[0][1]
    print(f"\n{title} ({unit} per second)\n{'':68s} {'seconds':>8s} {'wall rate':>10s} "
          f"{'CPU rate':>10s} {'engine/row':>10s}")
    for name, rate, seconds, cpu_rate in rows:
        ratio = engine_rate / rate if rate == rate else float("nan")
        print(f"{name:68s} {seconds:8.2f} {rate:10.3g} {cpu_rate:10.3g} {ratio:10.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the engines' rows")
    arguments = parser.parse_args()
    shrink = 10 if arguments.quick else 1
    threads = "numba absent or off"
    if compiled.available():
        import numba

        threads = f"numba {numba.__version__}, {numba.get_num_threads()} threads"
    print(f"cores: {os.cpu_count()}; fast paths: {threads}; load average before: "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    _print("Recurrence (SGD)", "element-steps",
           recurrence_rows(1000 // shrink, 10_000 // shrink, arguments.repeat))
    _print("Sphere (Adam)", "coordinate-steps",
           sphere_rows(256 // shrink, 512, 2000 // shrink, arguments.repeat))
    drawn, build_s = _timed(lambda: [draw() for draw in figures.FIGURES.values()])
    with tempfile.TemporaryDirectory() as out:
        def write() -> None:
            for name, fig in zip(figures.FIGURES, drawn):
                for fmt in ("png", "pdf"):
                    fig.savefig(f"{out}/{name}.{fmt}", dpi=200)

        _, write_s = _timed(write)
    print(f"\nfigures: simulate and build all {len(figures.FIGURES)}: {build_s:.2f} s; write PNG "
          f"(200 dpi) and PDF of each: {write_s:.2f} s")
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


if __name__ == "__main__":
    main()
