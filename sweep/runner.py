"""Running a sweep on Ray, resumable, into the run store.

Workers never open the user's store (one SQLite file must not have writers on several machines):
each trial trains into a temporary store of its own (:func:`run_trial`) and returns its status,
log and metrics; the driver writes them into the user's store (:func:`record`) as they arrive.
A trial that fails is recorded as failed with its error; the others go on. Ctrl-C cancels the
outstanding trials; those recorded stay, the rest run on the next call.

A trial sees only its own temporary store, so a spec cannot set ``optimizer.graft_norms_from``
(norm grafting reads another run from the store): such a trial fails with that error.

Ray is imported only when a sweep runs (the extra ``scalewise[sweep]``): spec parsing, grid
expansion, status and summary work without it.
"""

from __future__ import annotations

import socket
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scalewise import checks
from scalewise.models.config import TrainConfig
from scalewise.models.store import METRIC_COLUMNS, RunStatus, RunStore
from scalewise.models.training import train
from scalewise.sweep.spec import SweepSpec, Trial, expand

PENDING = "pending"  # the status shown for a trial with no run in the store
RAY_MISSING = "sweeps run on Ray, which is not installed: pip install 'scalewise[sweep]'"


@dataclass(frozen=True)
class TrialResult:
    """What a worker sends back: the run's final status, its log and its long-form metrics."""

    run_id: str
    status: RunStatus
    log: str
    metrics: pd.DataFrame
    host: str


@dataclass(frozen=True)
class SweepReport:
    """Run ids of the trials this call executed, by the status each ended with, and of those
    it skipped because the store already held them completed."""

    executed: Mapping[str, RunStatus]
    skipped: tuple[str, ...]




def run_trial(config_json: str, run_id: str) -> TrialResult:
    """Train one trial into a temporary store of its own and return its outcome; never raises
    for a failing run (its traceback is the log). This is the function a Ray task runs."""
    config = TrainConfig.from_json(config_json)
    with (tempfile.TemporaryDirectory(prefix="scalewise-trial-") as folder,
          RunStore(Path(folder) / "trial.sqlite") as store):
        try:
            train(config, store=store, run_id=run_id, resume=False, progress=False)
        except Exception:  # noqa: BLE001 - a failing trial is data, not a crash
            error = traceback.format_exc()
        else:
            error = ""
        run = store.get(run_id)
    host = socket.gethostname()
    if run is None:  # failed before training began (bad device, missing data files)
        return TrialResult(run_id, RunStatus.FAILED, f"failed before training:\n{error}",
                           pd.DataFrame(columns=list(METRIC_COLUMNS)), host)
    return TrialResult(run_id, run.status, run.log, run.metrics, host)


def record(store: RunStore, trial: Trial, result: TrialResult) -> None:
    """Write a worker's ``result`` into ``store`` as the run ``trial.run_id``, replacing any
    earlier attempt of it."""
    store.begin(trial.run_id, trial.config, fresh=True,
                message=f"sweep {trial.config.name}: trained on {result.host}")
    store.add_metrics(trial.run_id, result.metrics[list(METRIC_COLUMNS)].itertuples(
        index=False, name=None))
    store.set_status(trial.run_id, result.status, "worker log:\n" + result.log.rstrip())


def partition(trials: Sequence[Trial], store: RunStore) -> tuple[list[Trial], list[Trial]]:
    """``(to run, completed)``: the trials ``store`` does not hold completed, and those it does."""
    done = [t for t in trials if trial_status(store, t.run_id) == RunStatus.COMPLETED.value]
    done_ids = {t.run_id for t in done}
    return [t for t in trials if t.run_id not in done_ids], done


def trial_status(store: RunStore, run_id: str) -> str:
    found = store.status(run_id)
    return PENDING if found is None else found[1].value


# ------------------------------------------------------------------------------ Ray

def import_ray() -> Any:
    """The ``ray`` module, or ``ModuleNotFoundError`` saying how to install it."""
    try:
        import ray
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(RAY_MISSING) from error
    return ray


def run_sweep(spec: SweepSpec, store: RunStore, *, address: str | None = None,
              num_cpus: int | None = None,
              on_result: Callable[[Trial, TrialResult], None] | None = None) -> SweepReport:
    """Run the trials of ``spec`` that ``store`` does not hold completed, on Ray, recording each
    as it finishes. Ray starts in-process (``num_cpus``: default all cores) unless ``address``
    names a cluster, and is shut down afterwards; an already initialized Ray is used as it is.
    On ``KeyboardInterrupt`` the outstanding trials are cancelled and the interrupt re-raised."""
    pending, done = partition(expand(spec), store)
    executed: dict[str, RunStatus] = {}
    if pending:
        ray = import_ray()
        owned = not ray.is_initialized()
        if owned:
            ray.init(address=address, num_cpus=None if address else num_cpus,
                     include_dashboard=False, log_to_driver=False)
        try:
            _execute(ray, spec, pending, store, executed, on_result)
        finally:
            if owned:
                ray.shutdown()
    return SweepReport(executed, tuple(t.run_id for t in done))


def _execute(ray: Any, spec: SweepSpec, pending: Sequence[Trial], store: RunStore,
             executed: dict[str, RunStatus],
             on_result: Callable[[Trial, TrialResult], None] | None) -> None:
    _check_resources(ray.cluster_resources(), spec)
    task = ray.remote(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, max_retries=0)(run_trial)
    outstanding = {task.remote(t.config.to_json(), t.run_id): t for t in pending}
    try:
        while outstanding:
            ready, _ = ray.wait(list(outstanding), num_returns=1)
            trial = outstanding.pop(ready[0])
            result = _fetch(ray, ready[0], trial)
            record(store, trial, result)
            executed[trial.run_id] = result.status
            if on_result is not None:
                on_result(trial, result)
    except BaseException:
        for ref in outstanding:
            ray.cancel(ref, force=True)
        raise


def _check_resources(available: Mapping[str, float], spec: SweepSpec) -> None:
    """Refuse a trial bigger than the whole cluster: Ray would keep it pending forever."""
    for key, need in (("CPU", spec.num_cpus), ("GPU", spec.num_gpus)):
        if need > available.get(key, 0.0):
            checks.fail(f"resources.num_{key.lower()}s", need,
                  f"at most {available.get(key, 0.0):g}, the {key}s of the Ray cluster")


def _fetch(ray: Any, ref: Any, trial: Trial) -> TrialResult:
    """The task's result; a task that died (worker crash, out of memory) is a failed trial."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        return TrialResult(trial.run_id, RunStatus.FAILED, f"the Ray task died: {error}",
                           pd.DataFrame(columns=list(METRIC_COLUMNS)), "unknown")


