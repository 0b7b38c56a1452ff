"""The trial runner: independent training runs, resumable, trained where :class:`Workers` says
and recorded in the run store. Sweeps and the validation suites both train through it.

Workers never open the user's store (one SQLite file must not have writers on several machines):
each trial trains into a temporary store of its own (:func:`run_trial`) and returns its status,
log, metrics, per-unit statistics and final checkpoint; the driver writes them into the user's
store (:func:`record`) as they arrive. The runs a trial reads from the store (the source of
``optimizer.graft_norms_from``) travel with it. A trial that fails is recorded as failed with its
error; the others go on. Ctrl-C cancels the outstanding trials; those recorded stay, the rest run
on the next call, which skips the trials the store holds completed and trains the others
(failed, interrupted or never started) from step 0.

Data files are read on the worker, from the config's ``data.root``: a folder that every machine
of a cluster must hold at that path. A missing one fails the trial on that worker, its one-line
reason (:attr:`TrialResult.reason`) naming the folder and the host.

Ray is imported only when trials run on it (the extra ``scalewise[sweep]``): spec parsing, grid
expansion, status, summary and :class:`Workers` with ``sequential=True`` work without it.
"""

from __future__ import annotations

import os
import socket
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scalewise import checks
from scalewise.models.config import TrainConfig
from scalewise.models.store import METRIC_COLUMNS, Run, RunStatus, RunStore, UnitStats
from scalewise.models.training import train
from scalewise.sweep import cluster
from scalewise.sweep.spec import SweepSpec, Trial, expand

PENDING = "pending"  # the status shown for a trial with no run in the store


@dataclass(frozen=True)
class TrialResult:
    """What a worker sends back: the run's final status, its log and long-form metrics, the
    ``host`` it trained on, its per-unit statistics, the bytes of its last checkpoint (``None``
    without one), ``reason``: one line saying why it did not complete (empty when it did), and
    ``started``: ``False`` when it failed before its first step (missing data, bad device)."""

    run_id: str
    status: RunStatus
    log: str
    metrics: pd.DataFrame
    host: str
    units: UnitStats = field(default_factory=lambda: UnitStats({}))
    checkpoint: bytes | None = None
    reason: str = ""
    started: bool = True


@dataclass(frozen=True)
class SweepReport:
    """Run ids of the trials this call executed, by the status each ended with, and of those
    it skipped because the store already held them completed."""

    executed: Mapping[str, RunStatus]
    skipped: tuple[str, ...]


def run_trial(config_json: str, run_id: str, sources: Sequence[Run] = ()) -> TrialResult:
    """Train one trial into a temporary store of its own, holding the stored runs ``sources``
    it reads, and return its outcome; never raises for a failing run (its traceback is the log).
    This is the function a worker runs."""
    config = TrainConfig.from_json(config_json)
    host = socket.gethostname()
    with (tempfile.TemporaryDirectory(prefix="scalewise-trial-") as folder,
          RunStore(Path(folder) / "trial.sqlite") as store):
        for source in sources:
            _write(store, source.id, source.config, source.status, "copied from the driver",
                   source.log, source.metrics, UnitStats({}))
        try:
            train(config, store=store, run_id=run_id, resume=False, progress=False)
        except Exception as error:  # noqa: BLE001 - a failing trial is data, not a crash
            reason, trace = _first_line(error), traceback.format_exc()
        else:
            reason, trace = "", ""
        run = store.get(run_id)
        if run is None:  # failed before training began (bad device, missing data files)
            return TrialResult(run_id, RunStatus.FAILED,
                               f"failed before training on {host}: {reason}\n{trace}",
                               pd.DataFrame(columns=list(METRIC_COLUMNS)), host,
                               reason=f"could not start on {host}: {reason}", started=False)
        saved = store.checkpoint_path(run_id)
        return TrialResult(run_id, run.status, run.log, run.metrics, host,
                           store.unit_stats(run_id),
                           saved.read_bytes() if saved.exists() else None,
                           "" if run.status is RunStatus.COMPLETED
                           else reason or _last_line(run.log))


def record(store: RunStore, trial: Trial, result: TrialResult) -> None:
    """Write a worker's ``result`` into ``store`` as the run ``trial.run_id`` (its metrics,
    per-unit statistics and checkpoint), replacing any earlier attempt of it."""
    message = (f"trained on {result.host}" if result.started
               else f"could not start on {result.host}")
    _write(store, trial.run_id, trial.config, result.status, message,
           "worker log:\n" + result.log.rstrip(), result.metrics, result.units)
    path = store.checkpoint_path(trial.run_id)
    if result.checkpoint is None:
        path.unlink(missing_ok=True)  # an earlier attempt's checkpoint is not this run's
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(result.checkpoint)
    temporary.replace(path)


def _write(store: RunStore, run_id: str, config: TrainConfig, status: RunStatus, message: str,
           log: str, metrics: pd.DataFrame, units: UnitStats) -> None:
    store.begin(run_id, config, fresh=True, message=message)
    store.add_metrics(run_id, metrics[list(METRIC_COLUMNS)].itertuples(index=False, name=None),
                      units.records())
    store.set_status(run_id, status, log)


def partition(trials: Sequence[Trial], store: RunStore) -> tuple[list[Trial], list[Trial]]:
    """``(to run, completed)``: the trials ``store`` does not hold completed, and those it does."""
    done = [t for t in trials if trial_status(store, t.run_id) == RunStatus.COMPLETED.value]
    done_ids = {t.run_id for t in done}
    return [t for t in trials if t.run_id not in done_ids], done


def trial_status(store: RunStore, run_id: str) -> str:
    found = store.status(run_id)
    return PENDING if found is None else found[1].value


def _sources(trial: Trial, store: RunStore) -> tuple[Run, ...]:
    """The stored runs ``trial`` reads: the run its norms are grafted from, when stored."""
    source_id = trial.config.optimizer.graft_norms_from
    source = None if source_id is None else store.get(source_id)
    return () if source is None else (source,)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _last_line(log: str) -> str:
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# ------------------------------------------------------------------------------ workers

OnResult = Callable[[Trial, TrialResult], None]


class Workers:
    """Where :meth:`run` trains trials: one after another in this process (``sequential``, no
    Ray), or on Ray: the cluster at ``address`` (``HOST:PORT`` of its head node, checked first,
    see :mod:`~scalewise.sweep.cluster`), else a fresh in-process instance of ``num_cpus`` CPUs
    (default: all cores) bound to 127.0.0.1. Ray starts when a trial first needs it (a call with
    nothing left to run never starts it) and serves every later call; :meth:`close` (or leaving
    the ``with`` block) shuts it down if this object started it. An already initialized Ray is
    used as it is, if it is joined to ``address`` when one is given."""

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None,
                 sequential: bool = False) -> None:
        if address is not None:
            cluster.parse_address(address)
            if sequential or num_cpus is not None:
                checks.fail("num_cpus" if num_cpus is not None else "sequential",
                            num_cpus if num_cpus is not None else sequential,
                            "nothing with an address (the cluster's nodes declare their CPUs)")
        if num_cpus is not None:
            checks.integer("num_cpus", num_cpus, minimum=1)
        self.address, self.num_cpus, self.sequential = address, num_cpus, sequential
        self._ray: Any = None
        self._owned = False

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._ray.shutdown()
        self._ray, self._owned = None, False

    def ray(self) -> Any:
        """The ``ray`` module, initialized here unless it already was."""
        if self._ray is None:
            ray = cluster.import_ray(address=self.address)
            if self.address is not None:
                cluster.check_cluster(self.address)
            if ray.is_initialized():
                cluster.check_joined(ray, self.address)
            else:
                cluster.start(ray, self.address, self.num_cpus)
                self._owned = True
            self._ray = ray
        return self._ray

    def run(self, trials: Sequence[Trial], store: RunStore, *, num_cpus: float = 1.0,
            num_gpus: float = 0.0, on_result: OnResult | None = None) -> SweepReport:
        """Train the ``trials`` that ``store`` does not hold completed, each reserving
        ``num_cpus`` CPUs and ``num_gpus`` GPUs on Ray, recording each as it finishes and then
        calling ``on_result(trial, result)``. On ``KeyboardInterrupt`` (or any error) the
        outstanding trials are cancelled and the error re-raised."""
        ids = [t.run_id for t in trials]
        if len(set(ids)) != len(ids):
            checks.fail("trials", ids, "trials of distinct run ids")
        pending, done = partition(trials, store)
        executed: dict[str, RunStatus] = {}
        if pending:
            inputs = [(t, (t.config.to_json(), t.run_id, _sources(t, store))) for t in pending]
            results = (self._one_by_one(inputs) if self.sequential
                       else self._on_ray(inputs, num_cpus, num_gpus))
            try:
                for trial, result in results:
                    record(store, trial, result)
                    executed[trial.run_id] = result.status
                    if on_result is not None:
                        on_result(trial, result)
            finally:
                results.close()  # cancels what is outstanding
        return SweepReport(executed, tuple(t.run_id for t in done))

    @staticmethod
    def _one_by_one(inputs: Sequence[tuple[Trial, tuple]]) -> Iterator[tuple[Trial, TrialResult]]:
        for trial, args in inputs:
            yield trial, run_trial(*args)

    def _on_ray(self, inputs: Sequence[tuple[Trial, tuple]], num_cpus: float,
                num_gpus: float) -> Iterator[tuple[Trial, TrialResult]]:
        ray = self.ray()
        _check_resources(ray.cluster_resources(), num_cpus, num_gpus)
        task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(run_trial)
        outstanding = {task.remote(*args): trial for trial, args in inputs}
        try:
            while outstanding:
                ready, _ = ray.wait(list(outstanding), num_returns=1)
                trial = outstanding.pop(ready[0])
                yield trial, _fetch(ray, ready[0], trial)
        finally:
            for ref in outstanding:
                ray.cancel(ref, force=True)


def run_sweep(spec: SweepSpec, store: RunStore, *, workers: Workers | None = None,
              on_result: OnResult | None = None) -> SweepReport:
    """Run the trials of ``spec`` that ``store`` does not hold completed on ``workers``
    (default: an in-process Ray, shut down afterwards), each reserving the spec's resources,
    recording each as it finishes (:meth:`Workers.run`)."""
    if workers is None:
        with Workers() as owned:
            return run_sweep(spec, store, workers=owned, on_result=on_result)
    return workers.run(expand(spec), store, num_cpus=spec.num_cpus, num_gpus=spec.num_gpus,
                       on_result=on_result)


def _check_resources(available: Mapping[str, float], num_cpus: float, num_gpus: float) -> None:
    """Refuse a trial bigger than the whole cluster: Ray would keep it pending forever."""
    for key, need in (("CPU", num_cpus), ("GPU", num_gpus)):
        if need > available.get(key, 0.0):
            checks.fail(f"resources.num_{key.lower()}s", need,
                        f"at most {available.get(key, 0.0):g}, the {key}s of the Ray cluster")


def _fetch(ray: Any, ref: Any, trial: Trial) -> TrialResult:
    """The task's result; a task that died (worker crash, out of memory) is a failed trial."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        return TrialResult(trial.run_id, RunStatus.FAILED, f"the Ray task died: {error}",
                           pd.DataFrame(columns=list(METRIC_COLUMNS)), "unknown",
                           reason=f"the Ray task died: {_first_line(error)}")
