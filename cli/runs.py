"""``scalewise runs ls|show|export``: list the runs of a run store, show one, export metrics.

A run is named by its id or any prefix of it that no other run shares.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from scalewise.cli.exits import BAD_INPUT, OK, answered
from scalewise.models.store import (
    DEFAULT_STORE,
    EXPORT_FORMATS,
    Run,
    RunStatus,
    RunStore,
    default_store_path,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("runs", help="list, show and export stored training runs",
                                   description="List the runs of a run store, show one, or export "
                                   "their metrics. A run is named by its id or any prefix of "
                                   "it that no other run shares.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="PATH",
                        help=f"run store file (default: $SCALEWISE_STORE, else {DEFAULT_STORE})")
    listing = actions.add_parser("ls", parents=[common], help="list the runs, newest first")
    listing.add_argument("--status", choices=[s.value for s in RunStatus],
                         help="only runs with this status")
    show = actions.add_parser("show", parents=[common],
                              help="a run's config, log and final network metrics")
    show.add_argument("run_id", metavar="RUN", help="run id or a unique prefix")
    export = actions.add_parser("export", parents=[common],
                                help="write runs' metrics in long form to CSV or Parquet")
    export.add_argument("run_ids", metavar="RUN", nargs="+", help="run ids or unique prefixes")
    export.add_argument("-o", "--out", required=True, metavar="FILE",
                        help=f"output file, its format by suffix: {', '.join(EXPORT_FORMATS)}")


@answered(interrupted="nothing was changed")
def run(args: argparse.Namespace) -> int:
    path = Path(args.store) if args.store else default_store_path()
    if not path.exists():
        print(f"error: no run store at {path} (train a run first, or pass --store or set "
              "SCALEWISE_STORE)", file=sys.stderr)
        return BAD_INPUT
    with RunStore(path, create=False) as store:
        print(_ACTIONS[args.action](store, args))
    return OK


def _ls(store: RunStore, args: argparse.Namespace) -> str:
    runs = store.runs()
    if args.status:
        runs = runs[runs["status"] == args.status]
    if runs.empty:
        return f"no runs in {store.path}"
    runs = runs.assign(last_step=runs["last_step"].astype("Int64"))
    return runs.to_string(index=False)


def _show(store: RunStore, args: argparse.Namespace) -> str:
    return describe(store[args.run_id])


def _export(store: RunStore, args: argparse.Namespace) -> str:
    path = store.export(args.out, args.run_ids)
    return f"wrote {path}"


_ACTIONS = {"ls": _ls, "show": _show, "export": _export}


def describe(run: Run) -> str:
    """The run's record, config, log, and the last value of each network-level metric."""
    metrics = run.metrics
    network = metrics[metrics["layer"] == ""].groupby("name", sort=True).last()
    layers = sorted(set(metrics["layer"]) - {""})
    steps = f"steps {metrics['step'].min()}..{metrics['step'].max()}" if len(metrics) else "none"
    parts = [
        f"run {run.id} ({run.name or 'unnamed'}): {run.status.value}"
        + (f" by {run.holder}" if run.holder else ""),
        f"created {run.created}, updated {run.updated}, code {run.code_version}",
        f"metrics: {len(metrics)} rows, {steps}, layers {', '.join(layers) or 'none'}",
        "last network metrics:",
        _table(network[["step", "value"]]) if len(network) else "  none",
        "config:",
        json.dumps(json.loads(run.config.to_json()), indent=2),
        "log:",
        run.log.rstrip(),
    ]
    return "\n".join(parts)


def _table(frame: pd.DataFrame) -> str:
    return "\n".join("  " + line for line in frame.to_string().splitlines())
