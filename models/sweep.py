"""Sweeps: a grid of :func:`models.train` runs executed on Ray, resumable, stored in the run store.

A spec (YAML, or TOML by the file's suffix) names a base config, the axes of the grid and the
seeds; every point of the product of the axes is trained once per seed::

    # wd-grid.yaml: 2 optimizers x 2 weight decays x 2 seeds = 8 trials
    name: wd-grid                  # each trial's config.name (default: the file's stem)
    preset: teacher-mlp-sgd        # optional starting config (default: TrainConfig())
    base:                          # dotted overrides of the preset, as models.override takes
      steps: 200
      model.width: 16
      optimizer.wd_mode: l2
      device: cpu
    axes:                          # dotted field -> values; the grid is their product
      optimizer.name: [sgd, adam]
      optimizer.weight_decay: [0.0, 1.0e-3]   # YAML reads 1e-3 as a string: write 1.0e-3
    seeds: [0, 1]                  # the field ``seed`` of each trial
    resources: {num_cpus: 1, num_gpus: 0}   # what Ray reserves per trial
    metric: test_accuracy          # summary: the final value of this metric ...
    goal: max                      # ... and whether larger (max) or smaller (min) is better

A trial's run id is its config's :meth:`~models.config.TrainConfig.run_id`, so re-running a
sweep skips the trials completed in the store and trains the others (failed, interrupted, or
never started) from step 0.

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

import itertools
import math
import socket
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from scalewise.models.config import TrainConfig, override, preset
from scalewise.models.store import METRIC_COLUMNS, RunStatus, RunStore
from scalewise.models.training import NETWORK, train

SPEC_KEYS = ("name", "preset", "base", "axes", "seeds", "resources", "metric", "goal")
RESOURCE_KEYS = ("num_cpus", "num_gpus")
GOALS = ("max", "min")
PENDING = "pending"  # the status shown for a trial with no run in the store
RAY_MISSING = "sweeps run on Ray, which is not installed: pip install 'scalewise[sweep]'"


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec: ``base`` already has the preset and the base overrides applied."""

    name: str
    base: TrainConfig
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    metric: str = "test_accuracy"
    goal: str = "max"


@dataclass(frozen=True)
class Trial:
    """One point of the grid and one seed; ``point`` maps each axis to its value here."""

    config: TrainConfig
    point: tuple[tuple[str, Any], ...]

    @property
    def run_id(self) -> str:
        return self.config.run_id()


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


# ------------------------------------------------------------------------------ spec

def _fail(name: str, value: Any, allowed: str) -> NoReturn:
    raise ValueError(f"{name} = {value!r} is invalid; allowed: {allowed}")


def load_spec(path: str | Path) -> SweepSpec:
    """Read a spec from a ``.yaml``/``.yml`` or ``.toml`` file (see the module docstring)."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml", ".toml"):
        _fail("spec", str(path), "a file ending in .yaml, .yml or .toml")
    if not path.is_file():
        _fail("spec", str(path), "an existing spec file")
    text = path.read_text()
    data = _parse_toml(text) if path.suffix == ".toml" else _parse_yaml(text)
    if not isinstance(data, Mapping):
        _fail("spec", str(path), "a file holding a mapping (name, preset, base, axes, seeds, ...)")
    return parse_spec({"name": path.stem, **data})


def _parse_yaml(text: str) -> Any:
    import yaml  # declared by the sweep extra; the core does not need it

    return yaml.safe_load(text)


def _parse_toml(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib  # the sweep extra installs it on Python 3.10
    return tomllib.loads(text)


def parse_spec(data: Mapping[str, Any]) -> SweepSpec:
    """A :class:`SweepSpec` from plain data, validated: unknown keys, a bad preset, override,
    axis or resource raise ``ValueError`` naming it. Every trial's config is validated too."""
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        _fail(unknown[0], data[unknown[0]], "the spec keys " + ", ".join(SPEC_KEYS))
    name = data.get("name", "")
    if not isinstance(name, str) or not name:
        _fail("name", name, "a non-empty string")
    start = preset(data["preset"]) if "preset" in data else TrainConfig()
    base = override(start, {"name": name, **_mapping("base", data.get("base", {}))})
    resources = _mapping("resources", data.get("resources", {}))
    spec = SweepSpec(name=name, base=base, axes=_axes(data.get("axes", {})),
                     seeds=_seeds(data.get("seeds", [base.seed])),
                     **_resources(resources), metric=_metric(data.get("metric", "test_accuracy")),
                     goal=_goal(data.get("goal", "max")))
    expand(spec)
    return spec


def _mapping(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        _fail(key, value, "a mapping from dotted field names to values")
    return value


def _axes(value: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    axes = _mapping("axes", value)
    for field, values in axes.items():
        if field == "seed":
            _fail("axes.seed", values, "no seed axis (list the seeds under 'seeds')")
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            _fail(f"axes.{field}", values, "a non-empty list of values")
    # lists inside an axis (betas, milestones) become the tuples the configs hold
    return tuple((field, tuple(tuple(v) if isinstance(v, list) else v for v in values))
                 for field, values in axes.items())


def _seeds(value: Any) -> tuple[int, ...]:
    ok = (isinstance(value, Sequence) and not isinstance(value, str) and value
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
          and len(set(value)) == len(value))
    return tuple(value) if ok else _fail("seeds", value, "a non-empty list of distinct "
                                         "integers >= 0")


def _resources(value: Mapping[str, Any]) -> dict[str, float]:
    unknown = sorted(set(value) - set(RESOURCE_KEYS))
    if unknown:
        _fail(f"resources.{unknown[0]}", value[unknown[0]], "the keys " + ", ".join(RESOURCE_KEYS))
    for key in RESOURCE_KEYS:
        amount = value.get(key, 0)
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not (
                math.isfinite(amount) and amount >= 0):
            _fail(f"resources.{key}", amount, "a finite number >= 0")
    return {"num_cpus": float(value.get("num_cpus", 1)), "num_gpus": float(value.get("num_gpus", 0))}


def _metric(value: Any) -> str:
    return value if isinstance(value, str) and value else _fail(
        "metric", value, "the name of a whole-network metric, e.g. test_accuracy or train_loss")


def _goal(value: Any) -> str:
    return value if value in GOALS else _fail("goal", value, " or ".join(GOALS))


def expand(spec: SweepSpec) -> list[Trial]:
    """Every trial of the grid: the product of the axes (in spec order, the last fastest), each
    point once per seed. Raises ``ValueError`` naming the point whose config is invalid."""
    fields = [field for field, _ in spec.axes]
    trials = []
    for values in itertools.product(*(values for _, values in spec.axes)):
        point = tuple(zip(fields, values))
        for seed in spec.seeds:
            try:
                config = override(spec.base, {**dict(point), "seed": seed})
            except ValueError as error:
                raise ValueError(f"the grid point {_describe(point)} (seed {seed}): "
                                 f"{error}") from None
            trials.append(Trial(config, point))
    counts = Counter(t.run_id for t in trials)
    repeated = next((t for t in trials if counts[t.run_id] > 1), None)
    if repeated is not None:
        _fail("axes", dict(spec.axes), f"axes whose points differ (the point "
              f"{_describe(repeated.point)} gives a config that another point gives too)")
    return trials


def _describe(point: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{field}={value}" for field, value in point) or "(no axes)"


# ------------------------------------------------------------------------------ trials

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
    done = [t for t in trials if _status(store, t.run_id) == RunStatus.COMPLETED.value]
    done_ids = {t.run_id for t in done}
    return [t for t in trials if t.run_id not in done_ids], done


def _status(store: RunStore, run_id: str) -> str:
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
            _fail(f"resources.num_{key.lower()}s", need,
                  f"at most {available.get(key, 0.0):g}, the {key}s of the Ray cluster")


def _fetch(ray: Any, ref: Any, trial: Trial) -> TrialResult:
    """The task's result; a task that died (worker crash, out of memory) is a failed trial."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        return TrialResult(trial.run_id, RunStatus.FAILED, f"the Ray task died: {error}",
                           pd.DataFrame(columns=list(METRIC_COLUMNS)), "unknown")


# ------------------------------------------------------------------------------ reporting

def sweep_status(spec: SweepSpec, store: RunStore) -> pd.DataFrame:
    """One row per trial: ``run``, ``optimizer``, the axes, ``seed``, ``status`` (``pending``
    when the store has no such run) and ``final``, the metric ``spec.metric`` of the whole
    network at the run's last logged step (NaN when absent)."""
    rows = []
    for trial in expand(spec):
        rows.append({"run": trial.run_id, "optimizer": trial.config.optimizer.name.value,
                     **{field: _plain(value) for field, value in trial.point
                        if field != "optimizer.name"},
                     "seed": trial.config.seed, "status": _status(store, trial.run_id),
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
