"""What a sweep has done: each trial's status and, per grid point, the metric over seeds."""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import pandas as pd

from scalewise.models.store import RunStatus, RunStore
from scalewise.models.training import NETWORK
from scalewise.sweep.runner import trial_status
from scalewise.sweep.spec import SweepSpec, expand


def sweep_status(spec: SweepSpec, store: RunStore) -> pd.DataFrame:
    """One row per trial: ``run``, ``optimizer``, the axes, ``seed``, ``status`` (``pending``
    when the store has no such run) and ``final``, the metric ``spec.metric`` of the whole
    network at the run's last logged step (NaN when absent)."""
    rows = []
    for trial in expand(spec):
        rows.append({"run": trial.run_id, "optimizer": trial.config.optimizer.name.value,
                     **{field: _plain(value) for field, value in trial.point
                        if field != "optimizer.name"},
                     "seed": trial.config.seed, "status": trial_status(store, trial.run_id),
                     "final": _final(store, trial.run_id, spec.metric)})
    return pd.DataFrame(rows)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _final(store: RunStore, run_id: str, metric: str) -> float:
    metrics = store.metrics(run_id)
    values = metrics[(metrics["name"] == metric) & (metrics["layer"] == NETWORK)]
    return float(values["value"].iloc[-1]) if len(values) else math.nan


def summarize(spec: SweepSpec, store: RunStore) -> pd.DataFrame:
    """One row per grid point: ``optimizer``, the axes, ``mean`` and ``std`` (sample standard
    deviation, NaN for one seed) of ``spec.metric`` over the completed seeds, ``seeds`` (how
    many completed), and ``best``: whether the point has the best mean of its optimizer
    (largest for ``goal: max``, smallest for ``min``)."""
    status = sweep_status(spec, store)
    keys = ["optimizer", *(field for field, _ in spec.axes if field != "optimizer.name")]
    # (the optimizer axis, if any, is the column ``optimizer``)
    completed = status[status["status"] == RunStatus.COMPLETED.value]
    table = (completed.groupby(keys, sort=False, dropna=False)["final"]
             .agg(mean="mean", std="std", seeds="count").reset_index())
    if table.empty:
        return table.assign(best=pd.Series(dtype=bool))
    ranked = table["mean"] if spec.goal == "max" else -table["mean"]
    best = ranked.groupby(table["optimizer"]).transform("max")
    return table.assign(best=ranked.eq(best) & ranked.notna())
