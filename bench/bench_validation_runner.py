"""A validation suite's wall time, sequential against in-process Ray, measured in one run.

Each arm is the command a user types, ``scalewise validate SUITE --size SIZE --no-progress``,
started as its own process into a fresh report folder and empty run store: ``--workers 1`` (one
run after another in that process, without Ray) and the default (an in-process Ray, one run per
core). The arms alternate for ``--rounds`` rounds, sequential first. Printed per arm: each
round's wall time, the machine's one-minute load average when it ended, and the verdicts of the
report's bounds; then the ratio of the medians (sequential / Ray: above 1, Ray is faster).

Both arms train the same runs and analyse them in the driver; the analysis is sequential in
both, so the ratio is below the training speed-up. The machine's other load moves both timings:
compare figures of one run only.

    python bench/bench_validation_runner.py [--suite effective-lr] [--size reference] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = {"sequential": ["--workers", "1"], "ray": []}


def run_arm(suite: str, size: str, flags: list[str], folder: Path) -> tuple[float, dict[str, bool]]:
    """Wall seconds of one ``scalewise validate`` into ``folder``, and its bounds' verdicts."""
    command = [sys.executable, "-m", "scalewise", "validate", suite, "--size", size,
               "--out", str(folder / "report"), "--store", str(folder / "runs.sqlite"),
               "--no-progress", *flags]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL)
    if done.returncode not in (0, 1):  # 1: a report written with a bound missed
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}")
    seconds = time.perf_counter() - start
    return seconds, verdicts(folder / "report" / "index.json")


def verdicts(index: Path) -> dict[str, bool]:
    """Each bound of a report folder's index, named by what it bounds, and whether it holds."""
    return {" ".join(str(b[k]) for k in ("experiment", "quantity", "optimizer", "statistic",
                                         "layer")): b["holds"]
            for b in json.loads(index.read_text())["agreement"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="effective-lr", help="the suite to validate")
    parser.add_argument("--size", default="reference", choices=("smoke", "reference"))
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both arms")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"scalewise validate {args.suite} --size {args.size}, {args.rounds} round(s)",
          flush=True)
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    seen: dict[str, dict[str, bool]] = {}
    for round_ in range(args.rounds):
        for arm, flags in ARMS.items():
            with tempfile.TemporaryDirectory() as name:
                seconds, seen[arm] = run_arm(args.suite, args.size, flags, Path(name))
            times[arm].append(seconds)
            held = sum(seen[arm].values())
            print(f"round {round_ + 1} {arm:10s}: {seconds:8.1f} s wall, load "
                  f"{os.getloadavg()[0]:.2f}, {held}/{len(seen[arm])} bounds hold", flush=True)
    medians = {arm: statistics.median(t) for arm, t in times.items()}
    differ = sorted(k for k in seen["ray"].keys() | seen["sequential"].keys()
                    if seen["ray"].get(k) != seen["sequential"].get(k))
    print(f"median sequential {medians['sequential']:.1f} s, Ray {medians['ray']:.1f} s: "
          f"ratio sequential / Ray {medians['sequential'] / medians['ray']:.2f}")
    print("bounds with a different verdict: " + ("; ".join(differ) if differ else "none"))


if __name__ == "__main__":
    main()
