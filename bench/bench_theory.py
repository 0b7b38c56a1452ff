"""Benchmark: seconds to check the whole identity catalogue, in total and per identity.

Run: ``python bench/bench_theory.py`` (prints a table, slowest first). Each identity is checked
once in a fresh process state after import, the way ``scalewise proofs`` does it.
"""

from __future__ import annotations

import platform
import time

from scalewise import theory


def main() -> None:
    start = time.perf_counter()
    results = theory.check_all()
    total = time.perf_counter() - start
    for r in sorted(results, key=lambda r: r.seconds, reverse=True):
        print(f"{r.seconds:8.3f} s  {'ok' if r.ok else 'FAILED':6}  {r.name}")
    print(
        f"\n{len(results)} identities in {total:.2f} s "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()})"
    )


if __name__ == "__main__":
    main()
