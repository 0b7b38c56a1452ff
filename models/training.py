"""``train(config)``: one training run from its config to its stored metrics.

The run's id is the hash of its config (:meth:`TrainConfig.run_id`) unless given. Each step
``k`` (``k`` updates done before it) logs, in long form ``(step, layer, name, value)``:

- ``(k, "", "lr")`` the learning rate and the metrics of :func:`models.step.train_step`: the
  minibatch ``loss`` (layer ``""``, the whole network) and, every ``probe_every`` steps, the
  cheap per-layer probes;
- the costly probes (:func:`models.probes.costly_probes`, on a fixed batch of training inputs)
  and ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy`` (layer ``""``,
  evaluation mode, whole splits) with each normalized layer's ``norm_margin``
  (:func:`models.probes.normalization_margins`) at ``k = 0``, every ``costly_probe_every`` /
  ``eval_every`` steps and at ``k = steps`` (the trained network);
- at ``k = steps``, when the cheap probes are on, each layer's ``norm_sq`` of the trained
  network, so that ``norm_sq`` covers every step ``0..steps`` of a run probed every step.

Norm grafting (``optimizer.graft_norms_from``, 004 Sec. 4.1, Fig. 4) takes its per-step targets
from the ``norm_sq`` of another run in the same store: after step ``k`` this run's
scale-invariant layers get the norms that run's layers had after step ``k``, i.e. its
``norm_sq`` logged at ``k + 1`` (see :func:`graft_targets`).

Metrics reach the store in batches at each checkpoint (every ``checkpoint_every`` steps and at
the end). A checkpoint holds everything the rest of the run depends on: model, optimizer, the
batch sampler and the generator of the step's own randomness (K-FAC's sampled targets), and the
step. It is written to a temporary file and renamed over the old one, so a crash never leaves
half a checkpoint. Resuming reloads it, discards the metrics logged at or after its step and
recomputes them: on CPU, where the run executes with deterministic algorithms, an interrupted
and resumed run stores exactly the metrics of an uninterrupted one. On CUDA runs are seeded but
not bitwise reproducible (cuDNN and atomics).

A run whose loss or weights stop being finite ends with status ``failed`` and a log line saying
where; its metrics up to there are kept. Ctrl-C (``KeyboardInterrupt``) marks the run
``interrupted``, keeps its last checkpoint and is raised again; any other exception marks it
``failed`` with the traceback in its log and is raised again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from scalewise import checks
from scalewise.models.config import (
    RUN_ID,
    ModelConfig,
    OptimizerConfig,
    Schedule,
    TrainConfig,
)
from scalewise.models.data import BatchSampler, Data, Split, load_dataset
from scalewise.models.grafting import graft_norms
from scalewise.models.networks import (
    ScaleInvariant,
    build_model,
    layer_weights,
    scale_invariant_params,
)
from scalewise.models.optimizer_factory import build_optimizer
from scalewise.models.probes import (
    StepProbe,
    UnitRecord,
    costly_probes,
    norm_sq,
    normalization_margins,
    unit_rows,
)
from scalewise.models.step import StepResult, train_step
from scalewise.models.store import Metric, Run, RunStatus, RunStore, StoreError
from scalewise.sim.schedules import (
    Constant,
    Exponential,
    StepDecay,
    WarmupCosine,
    lr_factors,
)

NETWORK = ""  # the ``layer`` of metrics about the whole network, as in models.probes
PROBE_BATCH = 64  # training inputs the costly probes see (their Jacobians are B x C x P)
EVAL_BATCH = 1024
FLUSH_ROWS = 100_000  # metric rows buffered at most between checkpoints

StepCallback = Callable[[int, StepResult], None]


def train(config: TrainConfig, *, store: RunStore | None = None, run_id: str | None = None,
          resume: bool = True, progress: bool = True,
          on_step: StepCallback | None = None) -> Run:
    """Train ``config``, storing metrics and checkpoints in ``store`` (default: the file of
    :func:`models.store.default_store_path`), and return the stored run.

    With ``resume``, a completed run of the same id is returned as stored and any other one
    continues from its last checkpoint (from the start without one); without, the run starts
    over. ``progress`` shows a progress bar when stderr is a terminal outside CI.
    ``on_step(k, result)`` is called after step ``k`` (and after its checkpoint, if any).
    """
    if not isinstance(config, TrainConfig):
        checks.fail("config", config, "a TrainConfig")
    if run_id is not None and not RUN_ID.fullmatch(run_id):
        checks.fail("run_id", run_id, "letters, digits, '.', '_' and '-' (it names the "
                    "checkpoint file)")
    device = resolve_device(config.device)
    data = run_data(config, device)  # missing files fail before anything
    owned = store is None
    store = RunStore() if store is None else store
    try:
        return _train_stored(config, data, device, store,
                             run_id or config.run_id(), resume, progress, on_step)
    finally:
        if owned:
            store.close()


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU; a named device must be available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    available = {"cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available(), "cpu": True}
    device = torch.device(name)
    if not available[device.type]:
        checks.fail("device", name, f"auto or cpu ({device.type} is not available on this "
                    "machine)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        checks.fail("device", name, f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def run_data(config: TrainConfig, device: torch.device | str = "cpu") -> Data:
    """The dataset of a run on ``device``, its inputs in the run's precision."""
    dtype = getattr(torch, config.precision.value)
    return load_dataset(config.data, seed=config.seed).to(device, dtype)


# ------------------------------------------------------------------------------ run state

@dataclass
class RunState:
    """Everything a checkpoint holds; ``step`` counts the updates done, ``saved`` is the step of
    the last checkpoint written or loaded."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    sampler: BatchSampler
    generator: torch.Generator
    probe: StepProbe | None
    step: int = 0
    saved: int | None = None


def _build_state(config: TrainConfig, data: Data, device: torch.device) -> RunState:
    model_seed, sampler_seed, step_seed = (
        int(s) for s in np.random.SeedSequence(config.seed).generate_state(3))
    model = build_model(config.model, data.in_shape, data.num_classes, seed=model_seed,
                        dtype=getattr(torch, config.precision.value)).to(device)
    optimizer = build_optimizer(model, config.optimizer)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])  # the base of the schedule's factors
    sampler = BatchSampler(len(data.train), config.data.batch_size, seed=sampler_seed)
    generator = torch.Generator(device=device).manual_seed(step_seed)
    probed = config.probe_every > 0 or config.unit_probe_every > 0
    probe = StepProbe(model, optimizer, unit_sample=config.unit_sample) if probed else None
    return RunState(model, optimizer, sampler, generator, probe)


def initial_state(config: TrainConfig) -> RunState:
    """The state a run of ``config`` starts from, on the CPU: its network, optimizer, batch
    sampler and generator, built from its seed as :func:`train` builds them."""
    return _build_state(config, run_data(config), torch.device("cpu"))


def checkpoint_state(config: TrainConfig, store: RunStore) -> RunState:
    """The state of the run of ``config`` in ``store`` at its last checkpoint, on the CPU (for
    a completed run: the trained network and its optimizer). Norm grafting is not registered
    again. :class:`~models.store.StoreError` when the run has no checkpoint."""
    path = store.checkpoint_path(config.run_id())
    if not path.exists():
        raise StoreError(f"run {config.run_id()} has no checkpoint in {store.checkpoint_dir}")
    state = initial_state(config)
    load_checkpoint(path, state, config)
    return state


def save_checkpoint(path: Path, state: RunState, config: TrainConfig) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file, synced, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"config": config.to_json(), "step": state.step,
               "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
               "sampler": state.sampler.state_dict(), "generator": state.generator.get_state(),
               "previous_gradients": state.probe.previous if state.probe else {}}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        torch.save(payload, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    state.saved = state.step


def load_checkpoint(path: Path, state: RunState, config: TrainConfig) -> None:
    """Restore ``state`` from the checkpoint at ``path``, which must be of ``config``."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload["config"] != config.to_json():
        raise StoreError(f"checkpoint {path} belongs to another config; pass resume=False to "
                         "start this run over")
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.sampler.load_state_dict(payload["sampler"])
    state.generator.set_state(payload["generator"])
    if state.probe is not None:
        state.probe.previous = payload["previous_gradients"]
    state.step = state.saved = int(payload["step"])


# ------------------------------------------------------------------------------ the run

def _train_stored(config: TrainConfig, data: Data, device: torch.device, store: RunStore,
                  run_id: str, resume: bool, progress: bool,
                  on_step: StepCallback | None) -> Run:
    existing = store.status(run_id)
    if existing is not None and resume and existing[0] != config:
        raise StoreError(f"run {run_id} in {store.path} holds another config; pass another "
                         "run_id, or resume=False to overwrite it")
    if existing is not None and resume and existing[1] is RunStatus.COMPLETED:
        return store[run_id]
    state = _build_state(config, data, device)
    checkpoint = store.checkpoint_path(run_id)
    continuing = resume and existing is not None
    if continuing and checkpoint.exists():
        load_checkpoint(checkpoint, state, config)
        message = f"resumed from the checkpoint at step {state.step}"
    else:
        checkpoint.unlink(missing_ok=True)
        message = "started" if existing is None or not resume else "restarted from step 0"
    if config.optimizer.graft_norms_from is not None:
        _graft(config, state, store, run_id)
    store.begin(run_id, config, fresh=not continuing, message=f"{message} on {device}")
    store.delete_metrics(run_id, from_step=state.step)
    log = _MetricLog(store, run_id)
    try:
        with _deterministic(device):
            status, message = _run(config, data, state, log, checkpoint,
                                   _progress_bar(config.steps, state.step, run_id, progress),
                                   on_step)
    except KeyboardInterrupt:
        log.flush()
        saved = "none yet" if state.saved is None else f"step {state.saved}"
        store.set_status(run_id, RunStatus.INTERRUPTED,
                         f"interrupted at step {state.step}; checkpoint kept: {saved}")
        raise
    except BaseException:
        log.flush()
        store.set_status(run_id, RunStatus.FAILED, f"error at step {state.step}:\n"
                         + traceback.format_exc())
        raise
    log.flush()
    store.set_status(run_id, status, message)
    return store[run_id]


def _graft(config: TrainConfig, state: RunState, store: RunStore, run_id: str) -> None:
    """Register norm grafting to the run ``config.optimizer.graft_norms_from`` of ``store``
    from the step ``state`` resumes at."""
    source_id = config.optimizer.graft_norms_from
    field = f"optimizer.graft_norms_from = {source_id!r} is invalid; allowed"
    source = None if source_id == run_id else store.get(source_id)
    if source is None:
        reason = "it is this run" if source_id == run_id else f"no run {source_id!r}"
        raise ValueError(f"{field}: the id of another run in {store.path} ({reason})")
    if source.config.model != config.model:
        raise ValueError(f"{field}: a run of the same model ({source_id} has "
                         f"{_describe(source.config.model)}, this run {_describe(config.model)})")
    invariants = scale_invariant_params(state.model)
    try:
        targets = graft_targets(source.metrics, invariants, config.steps)
    except ValueError as error:
        raise ValueError(f"{field}: a run with the norms to graft ({source_id}: {error})") from None
    graft_norms(state.optimizer, invariants, targets, start_step=state.step)


def _describe(model: ModelConfig) -> str:
    return json.dumps(dataclasses.asdict(model), sort_keys=True)


def graft_targets(metrics: pd.DataFrame, invariants: Sequence[ScaleInvariant],
                  steps: int) -> np.ndarray:
    """Per-step layer norms (steps, layers) for :func:`scalewise.models.grafting.graft_norms` from
    another run's long-form ``metrics``: row ``k`` holds ``sqrt(units * norm_sq)`` of each of
    ``invariants``' layers logged at step ``k + 1`` (the per-unit mean of the squared norms
    after ``k + 1`` updates; ``units = 1`` for LN layers).

    Raises ``ValueError`` when a layer's ``norm_sq`` is missing or not finite at any step
    ``1..steps``."""
    rows = metrics[metrics["name"] == "norm_sq"]
    table = rows.pivot(index="step", columns="layer", values="value")  # (logged steps, layers)
    names = [inv.name for inv in invariants]
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise ValueError(f"no norm_sq of the layers {', '.join(missing)}")
    needed = table.reindex(index=range(1, steps + 1), columns=names).to_numpy()  # (steps, L)
    finite = np.isfinite(needed).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite)) + 1
        raise ValueError(f"norm_sq is missing or not finite at step {first} of the steps "
                         f"1..{steps} needed (train it for >= {steps} steps, probe_every = 1)")
    units = np.array([unit_rows(inv.param, inv.granularity).shape[0] for inv in invariants])
    return np.sqrt(units * needed)


def _run(config: TrainConfig, data: Data, state: RunState, log: _MetricLog, checkpoint: Path,
         progress_bar: AbstractContextManager[tqdm],
         on_step: StepCallback | None) -> tuple[RunStatus, str]:
    """Steps from ``state.step`` to ``config.steps``; the final status and its log line."""
    factors = lr_factors(schedule(config.optimizer), config.steps)  # (steps,)
    probe_inputs = data.train.inputs[:PROBE_BATCH]
    with progress_bar as bar:
        while state.step < config.steps:
            k = state.step
            _measure(config, data, state.model, probe_inputs, k, log, final=False)
            result = _step(config, data, state, float(factors[k]), log)
            state.step = k + 1
            bar.update(1)
            bar.set_postfix(loss=f"{result.loss:.4g}", refresh=False)
            if not math.isfinite(result.loss):
                return RunStatus.FAILED, f"diverged at step {k}: loss = {result.loss}"
            if _due(k + 1, config.checkpoint_every) or k + 1 == config.steps:
                if not _finite_weights(state.model):
                    return RunStatus.FAILED, f"diverged by step {k + 1}: non-finite weights"
                log.flush()
                save_checkpoint(checkpoint, state, config)
            if on_step is not None:
                on_step(k, result)
    _measure(config, data, state.model, probe_inputs, config.steps, log, final=True)
    return RunStatus.COMPLETED, f"completed {config.steps} steps"


def _step(config: TrainConfig, data: Data, state: RunState, factor: float,
          log: _MetricLog) -> StepResult:
    """One training step ``k = state.step`` at learning rate ``factor * lr``."""
    k = state.step
    for group in state.optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    batch = state.sampler.next().to(data.train.inputs.device)  # (B,)
    if state.probe is not None:
        state.probe.plan(layers=_due(k, config.probe_every),
                         units=_due(k, config.unit_probe_every),
                         keep_gradient=(_due(k + 1, config.probe_every)
                                        or _due(k + 1, config.unit_probe_every)))
    result = train_step(state.model, state.optimizer, data.train.inputs[batch],
                        data.train.targets[batch], probe=state.probe, generator=state.generator)
    log.add((k, NETWORK, "lr", config.optimizer.lr * factor),
            *((k, layer, name, value) for layer, name, value in result.metrics))
    log.add_units(k, result.units)
    return result


def _measure(config: TrainConfig, data: Data, model: nn.Module, probe_inputs: torch.Tensor,
             k: int, log: _MetricLog, *, final: bool) -> None:
    """Evaluation and costly probes of the network after ``k`` updates, when due."""
    if final or k == 0 or _due(k, config.eval_every):
        for split_name, split in (("train", data.train), ("test", data.test)):
            loss, accuracy = evaluate(model, split)
            log.add((k, NETWORK, f"{split_name}_loss", loss),
                    (k, NETWORK, f"{split_name}_accuracy", accuracy))
        log.add(*((k, layer, name, value)
                  for layer, name, value in normalization_margins(model, probe_inputs)))
    if final or _due(k, config.costly_probe_every):
        log.add(*((k, layer, name, value)
                  for layer, name, value in costly_probes(model, probe_inputs)))
    if final and config.probe_every > 0:
        log.add(*((k, layer, name, value) for layer, name, value in layer_norm_sq(model)))


@torch.no_grad()
def layer_norm_sq(model: nn.Module) -> list[tuple[str, str, float]]:
    """``(layer, name, value)`` of every layer weight: ``sum_norm_sq``, the sum over units of the
    squared norms, and ``norm_sq``, their mean, as the cheap probes log them
    (:class:`~scalewise.models.probes.StepProbe`)."""
    rows = [(w.name, norm_sq(unit_rows(w.param, w.granularity).to(torch.float64)))
            for w in layer_weights(model)]
    return [metric for name, squares in rows
            for metric in ((name, "sum_norm_sq", float(squares.sum())),
                           (name, "norm_sq", float(squares.mean())))]


def _due(k: int, every: int) -> bool:
    return every > 0 and k % every == 0


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``split`` in evaluation mode (batch norm
    uses its running statistics); the model's mode is restored."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(split), batch_size):
        inputs = split.inputs[start:start + batch_size]
        targets = split.targets[start:start + batch_size]
        logits = model(inputs)  # (b, classes)
        total_loss += F.cross_entropy(logits, targets, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == targets).sum())
    model.train(was_training)
    return total_loss / len(split), correct / len(split)


def _finite_weights(model: nn.Module) -> bool:
    return bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())


def schedule(config: OptimizerConfig) -> Constant | StepDecay | Exponential | WarmupCosine:
    """The learning-rate schedule of ``config`` as the simulators define it (:mod:`sim.schedules`),
    so a measured and a simulated run share one definition."""
    if config.schedule is Schedule.STEP:
        return StepDecay(milestones=config.milestones, gamma=config.gamma)
    if config.schedule is Schedule.EXPONENTIAL:
        return Exponential(gamma=config.gamma)
    if config.schedule is Schedule.WARMUP_COSINE:
        return WarmupCosine(warmup_steps=config.warmup_steps)
    return Constant()


class _MetricLog:
    """Metric rows buffered in memory and written to the store in one transaction per flush."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self._rows: list[Metric] = []
        self._units: list[tuple[int, str, UnitRecord]] = []

    def add(self, *rows: Metric) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= FLUSH_ROWS:
            self.flush()

    def add_units(self, step: int, records: dict[str, UnitRecord]) -> None:
        self._units.extend((step, layer, record) for layer, record in records.items())

    def flush(self) -> None:
        if self._rows or self._units:
            self.store.add_metrics(self.run_id, self._rows, self._units)
            self._rows, self._units = [], []


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms on CPU for the duration of the run, then the caller's setting.
    (On CUDA they would need ``CUBLAS_WORKSPACE_CONFIG`` set before CUDA starts, and cost
    speed; CUDA runs are left as they are.)"""
    if device.type != "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@contextmanager
def _progress_bar(steps: int, start: int, run_id: str, progress: bool) -> Iterator[tqdm]:
    """A bar over the steps, shown only when asked for, on a terminal, outside CI."""
    shown = progress and sys.stderr.isatty() and not os.environ.get("CI")
    bar = tqdm(total=steps, initial=start, desc=run_id, unit="step", disable=not shown,
               dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()
