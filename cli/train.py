"""``scalewise train``: train a network from a named preset and flags that mirror the fields of
:class:`models.config.TrainConfig`; the run, its metrics and checkpoints go to the run store.

Every config field has a flag, derived from the config itself so the two never drift apart:
``--lr`` sets ``optimizer.lr``, ``--kfac-damping`` sets ``optimizer.kfac.damping``, and
``--optimizer``, ``--dataset``, ``--data-root`` name ``optimizer.name``, ``data.name`` and
``data.root``. Flags override the preset (default: the defaults of ``TrainConfig``). Running
the same command again resumes an interrupted run, or shows a completed one.

Grafting, for example: ``--graft-norms-from RUN`` rescales the normalized layers after every
step to the norms a run of the same store and model had (train ``RUN`` with
``--probe-every 1``); ``--graft-direction adam`` steps with the magnitude of ``--optimizer``'s
step and the direction of Adam's (AdaGraft).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from enum import Enum
from typing import Any

from scalewise.cli.exits import NEGATIVE, OK, answered
from scalewise.models.config import TrainConfig, override
from scalewise.models.presets import PRESETS, preset
from scalewise.models.store import DEFAULT_STORE, Run, RunStatus, RunStore
from scalewise.models.training import train

ALIASES = {"optimizer.name": "optimizer", "data.name": "dataset", "data.root": "data-root"}
SECTIONS = ("model.", "data.", "optimizer.")  # dropped from flag names: --width, --lr


def config_fields(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted path, type, default)`` of every leaf field of the config ``cls``."""
    hints, default = typing.get_type_hints(cls), cls()
    leaves = []
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            leaves += config_fields(kind, f"{prefix}{field.name}.")
        else:
            leaves.append((prefix + field.name, kind, getattr(default, field.name)))
    return leaves


def flag_name(path: str) -> str:
    """``optimizer.kfac.damping`` -> ``kfac-damping``, ``data.batch_size`` -> ``batch-size``."""
    if path in ALIASES:
        return ALIASES[path]
    for section in SECTIONS:
        path = path.removeprefix(section)
    return path.replace(".", "-").replace("_", "-")


def _argument(path: str, kind: Any, default: Any) -> dict[str, Any]:
    """``add_argument`` keywords for the config field ``path`` of type ``kind``."""
    if isinstance(kind, types.UnionType):  # ``int | None``: the flag sets the value
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if isinstance(default, tuple):
        shown = " ".join(map(str, default)) or "none"
    else:
        shown = default.value if isinstance(default, Enum) else default
    keywords: dict[str, Any] = {"help": f"{path} (default {shown})"}
    if kind is bool:
        return {**keywords, "action": argparse.BooleanOptionalAction}
    if isinstance(kind, type) and issubclass(kind, Enum):
        return {**keywords, "choices": [m.value for m in kind]}
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        nargs = "*" if args[-1] is Ellipsis else len(args)
        return {**keywords, "type": args[0], "nargs": nargs, "metavar": args[0].__name__.upper()}
    metavar = path.rsplit(".", 1)[-1].upper() if kind is str else kind.__name__.upper()
    return {**keywords, "type": kind, "metavar": metavar}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a network and store its per-step metrics (resumes an interrupted run)",
        description="Train a network from a named preset and flags that mirror the fields of "
        "TrainConfig; the run, its metrics and checkpoints go to the run store. Running the "
        "same command again resumes an interrupted run, or shows a completed one.",
    )
    parser.add_argument("--preset", choices=list(PRESETS), metavar="NAME",
                        help="start from this named config (flags then override its fields): "
                        + ", ".join(PRESETS))
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    parser.add_argument("--store", metavar="PATH",
                        help=f"run store file (default: $SCALEWISE_STORE, else {DEFAULT_STORE})")
    parser.add_argument("--run-id", help="store the run under this id (default: the config's hash)")
    parser.add_argument("--restart", action="store_true",
                        help="start over instead of resuming a stored run of the same id")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--no-wait", action="store_true",
                        help="if another process is training this run, exit 3 at once instead "
                        "of waiting for it and showing its result")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the config and its run id, train nothing")
    fields = parser.add_argument_group("config fields", "each sets one field of TrainConfig")
    for path, kind, default in config_fields():
        fields.add_argument(f"--{flag_name(path)}", dest=path, default=argparse.SUPPRESS,
                            **_argument(path, kind, default))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset (or default) config with every given config flag applied."""
    base = preset(args.preset) if args.preset else TrainConfig()
    paths = {path for path, _, _ in config_fields()}
    changes = {path: value for path, value in vars(args).items() if path in paths}
    return override(base, {p: tuple(v) if isinstance(v, list) else v for p, v in changes.items()})


@answered(interrupted="run the same command again to resume from the last checkpoint")
def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        for name, config in PRESETS.items():
            print(f"{name:24s} {_describe(config)}")
        return OK
    config = config_from_args(args)
    if args.dry_run:
        print(json.dumps(json.loads(config.to_json()), indent=2))
        print(f"run id: {args.run_id or config.run_id()}")
        return OK
    with RunStore(args.store) as store:
        result = train(config, store=store, run_id=args.run_id, resume=not args.restart,
                       progress=not args.no_progress, wait=not args.no_wait)
        print(summary(result, store))
    return OK if result.status is RunStatus.COMPLETED else NEGATIVE


def _describe(config: TrainConfig) -> str:
    o, m = config.optimizer, config.model
    decay = f", wd {o.weight_decay:g} {o.wd_mode.value}" if o.weight_decay else ""
    return (f"{m.arch.value}-{m.norm.value} on {config.data.name.value}, {o.name.value} "
            f"lr {o.lr:g}{decay}, {config.steps} steps")


def summary(run: Run, store: RunStore) -> str:
    """One line per fact: the run, its status, its final test metrics, where it is stored."""
    metrics = run.metrics
    final = metrics[(metrics["layer"] == "") & (metrics["step"] == metrics["step"].max())]
    measured = ", ".join(f"{name} {value:.4g}" for name, value
                         in zip(final["name"], final["value"]) if name.startswith("test_"))
    lines = [f"run {run.id} ({run.name or 'unnamed'}): {run.status.value}",
             f"final: {measured}" if measured else "",
             f"stored in {store.path}; see `scalewise runs show {run.id}`"]
    if run.status is RunStatus.FAILED:
        lines.insert(1, run.log.strip().splitlines()[-1])
    return "\n".join(line for line in lines if line)
