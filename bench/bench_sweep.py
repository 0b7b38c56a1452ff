"""Sweep throughput: the small sweep (2 optimizers x 2 weight decays x 2 seeds on the teacher
task, a width-16 MLP) on an in-process Ray against the same trials one after another in this
process, and Ray's start-up cost.

Measured in one run on this machine, each into a fresh temporary store:

* start-up: ``ray.init`` (in-process, ``--num-cpus`` CPUs), then the first round trip of a
  trivial task (a worker process started);
* Ray: :func:`scalewise.sweep.run_sweep` on the started Ray (start-up not included; the first
  trials pay the import of torch in each worker);
* sequential: :func:`scalewise.sweep.run_trial` and :func:`scalewise.sweep.record` per trial, the
  work a Ray task and the driver do, in this process with ``--threads`` torch threads (default:
  torch's default; a Ray worker runs one thread per CPU it reserves, one here).

The machine's other load moves both timings; compare figures of one run only.

    python bench/bench_sweep.py [--steps 200] [--num-cpus 2] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from scalewise.models.store import RunStore
from scalewise.sweep import (
    SweepSpec,
    expand,
    import_ray,
    parse_spec,
    record,
    run_sweep,
    run_trial,
)


def small_sweep(steps: int) -> SweepSpec:
    return parse_spec({
        "name": "bench-sweep", "preset": "teacher-mlp-sgd",
        "base": {"steps": steps, "model.width": 16, "data.train_size": 512,
                 "data.test_size": 256, "data.batch_size": 64, "eval_every": 50,
                 "costly_probe_every": 0, "checkpoint_every": 0, "optimizer.wd_mode": "l2",
                 "device": "cpu"},
        "axes": {"optimizer.name": ["sgd", "adam"], "optimizer.weight_decay": [0.0, 1e-3]},
        "seeds": [0, 1], "resources": {"num_cpus": 1}})


def time_sequential(spec: SweepSpec, folder: Path) -> float:
    with RunStore(folder / "sequential.sqlite") as store:
        start = time.perf_counter()
        for trial in expand(spec):
            record(store, trial, run_trial(trial.config.to_json(), trial.run_id))
        return time.perf_counter() - start


def time_startup(ray: object, num_cpus: int) -> tuple[float, float]:
    """Seconds of ``ray.init`` and of the first trivial task after it."""
    start = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    ray.get(ray.remote(lambda: None).remote())
    return started - start, time.perf_counter() - started


def time_ray(spec: SweepSpec, folder: Path) -> float:
    with RunStore(folder / "ray.sqlite") as store:
        start = time.perf_counter()
        report = run_sweep(spec, store)
        seconds = time.perf_counter() - start
    if len(report.executed) != len(expand(spec)):
        raise RuntimeError(f"the Ray sweep ran {len(report.executed)} trials")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per trial")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the in-process Ray")
    parser.add_argument("--threads", type=int, help="torch threads of the sequential run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = small_sweep(args.steps)
    trials = len(expand(spec))
    ray = import_ray()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), ray {ray.__version__}; "
          f"{trials} trials of {args.steps} steps")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        sequential = time_sequential(spec, folder)
        init, first_task = time_startup(ray, args.num_cpus)
        try:
            on_ray = time_ray(spec, folder)
        finally:
            ray.shutdown()
    per_minute = {"sequential": 60 * trials / sequential, "ray": 60 * trials / on_ray,
                  "ray incl. start-up": 60 * trials / (on_ray + init + first_task)}
    ratio = per_minute["ray"] / per_minute["sequential"]
    ratio_startup = per_minute["ray incl. start-up"] / per_minute["sequential"]
    rows = [("sequential, one process",
             f"{sequential:7.2f} s  {per_minute['sequential']:7.1f} trials/min"),
            (f"Ray, {args.num_cpus} CPUs", f"{on_ray:7.2f} s  {per_minute['ray']:7.1f} trials/min"),
            ("Ray start-up", f"{init:7.2f} s init + {first_task:.2f} s first task"),
            ("ratio Ray / sequential", f"{ratio:.2f}x ({ratio_startup:.2f}x with start-up)")]
    for label, value in rows:
        print(f"{label:24s}: {value}")

if __name__ == "__main__":
    main()
