"""``scalewise sweep SPEC`` runs a grid of training runs on Ray; ``scalewise sweep status SPEC``
(or ``--status``) shows where each trial stands. Both end with the summary table (best per
optimizer, mean and std over seeds), which ``--summary-csv PATH`` also writes.

The spec format is documented in :mod:`scalewise.sweep.spec`. Running the same command again skips the
trials already completed in the store and runs the rest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from scalewise.cli.exits import NEGATIVE, OK, answered
from scalewise.models.store import DEFAULT_STORE, RunStatus, RunStore
from scalewise.sweep import (
    SweepSpec,
    Trial,
    TrialResult,
    load_spec,
    run_sweep,
    summarize,
    sweep_status,
)

STATUS = "status"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run a grid of training runs on Ray (resumable), or show its status",
        usage="%(prog)s [-h] [status] SPEC [--status] [--store PATH] [--address ADDRESS] "
        "[--num-cpus N] [--summary-csv PATH]",
        description="Run every trial of a sweep spec (YAML or TOML: a base config, axes, seeds) "
        "on Ray, in-process by default or on the cluster at --address, recording each run in "
        "the run store. Run again, it runs only the trials not yet completed. 'status SPEC' shows "
        "each trial's status instead.")
    parser.add_argument("target", nargs="+", metavar="SPEC",
                        help="the spec file, after 'status' to show the trials' status")
    parser.add_argument("--status", action="store_true", help="show the status, run nothing")
    parser.add_argument("--store", metavar="PATH",
                        help=f"run store file (default: $SCALEWISE_STORE, else {DEFAULT_STORE})")
    parser.add_argument("--address", metavar="ADDRESS",
                        help="an existing Ray cluster (default: start Ray in this process)")
    parser.add_argument("--num-cpus", type=int, metavar="N",
                        help="CPUs of the in-process Ray (default: all cores)")
    parser.add_argument("--summary-csv", metavar="PATH", help="also write the summary as CSV")


@answered(interrupted="the finished trials are recorded; run the same command again to run "
          "the rest")
def run(args: argparse.Namespace) -> int:
    status_only, spec = _target(args)
    with RunStore(args.store) as store:
        code = _show(spec, store) if status_only else _run(spec, store, args)
        table = summarize(spec, store)
    print(f"\nsummary: final {spec.metric} over seeds ({spec.goal} is best)")
    print(_table(table))
    if args.summary_csv:
        table.to_csv(args.summary_csv, index=False)
        print(f"wrote {Path(args.summary_csv)}")
    return code


def _target(args: argparse.Namespace) -> tuple[bool, SweepSpec]:
    words = args.target
    if len(words) == 2 and words[0] == STATUS:
        return True, load_spec(words[1])
    if len(words) != 1:
        raise ValueError(f"arguments = {' '.join(words)!r} are invalid; allowed: SPEC or "
                         "status SPEC")
    return args.status, load_spec(words[0])


def _show(spec: SweepSpec, store: RunStore) -> int:
    status = sweep_status(spec, store)
    print(_table(status))
    counts = status["status"].value_counts()
    print(", ".join(f"{count} {name}" for name, count in counts.items()))
    return OK


def _run(spec: SweepSpec, store: RunStore, args: argparse.Namespace) -> int:
    def report(trial: Trial, result: TrialResult) -> None:
        point = ", ".join(f"{field}={value}" for field, value in trial.point)
        print(f"{trial.run_id} {result.status.value:9s} seed {trial.config.seed} {point}",
              flush=True)

    done = run_sweep(spec, store, address=args.address, num_cpus=args.num_cpus,
                     on_result=report)
    failed = [run_id for run_id, s in done.executed.items() if s is not RunStatus.COMPLETED]
    print(f"{len(done.executed)} trials run ({len(failed)} not completed), "
          f"{len(done.skipped)} already completed; store {store.path}")
    if failed:
        print("see `scalewise runs show RUN` for the log of " + ", ".join(failed))
    return NEGATIVE if failed else OK


def _table(frame: pd.DataFrame) -> str:
    return "(nothing yet)" if frame.empty else frame.to_string(index=False)

