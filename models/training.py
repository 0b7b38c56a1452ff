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
``norm_sq`` logged at ``k + 1`` (see :func:`models.grafting.graft_targets`).

Metrics reach the store in batches at each checkpoint (every ``checkpoint_every`` steps and at
the end). A checkpoint holds everything the rest of the run depends on: model, optimizer, the
batch sampler and the generator of the step's own randomness (K-FAC's sampled targets), and the
step. It is written to a temporary file and renamed over the old one, so a crash never leaves
half a checkpoint. Resuming reloads it, discards the metrics logged at or after its step and
recomputes them: on CPU, where the run executes with deterministic algorithms, an interrupted
and resumed run stores exactly the metrics of an uninterrupted one. On CUDA runs are seeded but
not bitwise reproducible (cuDNN and atomics).

A checkpoint that cannot be read (damaged, or not one of this run) is never loaded unsafely:
the run restarts from step 0 with a one-line :class:`CheckpointWarning`, and its log says why.

A run whose loss or weights stop being finite ends with status ``failed`` and a log line saying
where; its metrics up to there are kept. Ctrl-C (``KeyboardInterrupt``) and a fault of the store
or a file (:class:`~models.store.StoreFault`, ``OSError``: a full disk, a file-size limit) mark
the run ``interrupted``, keep its last checkpoint and are raised again, so the same call resumes
once the fault is gone; any other exception marks it ``failed`` with the traceback in its log
and is raised again. Where the store itself can no longer be written, what it committed stays,
and the run, whose lease ends with this process, shows as ``interrupted``.

Training takes the run's lease in the store first (:meth:`~models.store.RunStore.acquire`): a
second process training the same run waits for the first (with a one-line
:class:`RunBusyWarning`) and then returns the completed run, or resumes one left unfinished;
``wait=False`` refuses at once with :class:`~models.store.RunBusy`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from scalewise import checks
from scalewise.models.checkpoints import (
    CheckpointError,
    CheckpointWarning,
    RunState,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from scalewise.models.config import (
    RUN_ID,
    ModelConfig,
    OptimizerConfig,
    Schedule,
    TrainConfig,
)
from scalewise.models.data import BatchSampler, Data, Split, load_dataset
from scalewise.models.grafting import graft_norms, graft_targets
from scalewise.models.networks import (
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
from scalewise.models.store import (
    Claim,
    LeaseLost,
    Metric,
    Run,
    RunBusy,
    RunStatus,
    RunStore,
    StoreError,
    StoreFault,
)
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
WAIT_SECONDS = 1.0  # between looks at a run another process is training

StepCallback = Callable[[int, StepResult], None]


class RunBusyWarning(UserWarning):
    """Another process is training the run: this one waits for it."""


def train(config: TrainConfig, *, store: RunStore | None = None, run_id: str | None = None,
          resume: bool = True, progress: bool = True, on_step: StepCallback | None = None,
          wait: bool = True) -> Run:
    """Train ``config``, storing metrics and checkpoints in ``store`` (default: the file of
    :func:`models.store.default_store_path`), and return the stored run.

    With ``resume``, a completed run of the same id is returned as stored and any other one
    continues from its last checkpoint (from the start without one); without, the run starts
    over. ``progress`` shows a progress bar when stderr is a terminal outside CI.
    ``on_step(k, result)`` is called after step ``k`` (and after its checkpoint, if any).
    While another process trains the same run, ``wait`` waits for it (then as above: usually
    the completed run is returned); without, :class:`~models.store.RunBusy` is raised.
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
        return _train_stored(config, data, device, store, run_id or config.run_id(), resume,
                             progress, on_step, wait)
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
    again. :class:`~models.store.StoreError` when the run has no checkpoint,
    :class:`CheckpointError` when it cannot be read."""
    path = store.checkpoint_path(config.run_id())
    if not path.exists():
        raise StoreError(f"run {config.run_id()} has no checkpoint in {store.checkpoint_dir}")
    state = initial_state(config)
    load_checkpoint(path, state, config)
    return state


# ------------------------------------------------------------------------------ the run

def _train_stored(config: TrainConfig, data: Data, device: torch.device, store: RunStore,
                  run_id: str, resume: bool, progress: bool, on_step: StepCallback | None,
                  wait: bool) -> Run:
    state = _build_state(config, data, device)
    graft = _graft_targets(config, state, store, run_id)
    claim = _claim(store, run_id, config, resume, wait)
    if not claim.held:
        return store[run_id]
    try:
        return _train_held(config, data, device, store, run_id, state, claim, graft, resume,
                           progress, on_step)
    finally:
        try:
            store.release(run_id)
        except StoreFault:
            pass  # the heartbeat has stopped: the lease lapses by itself


def _claim(store: RunStore, run_id: str, config: TrainConfig, resume: bool,
           wait: bool) -> Claim:
    """The run's lease, waiting while another live process holds it (when ``wait``)."""
    waiting = False
    while True:
        try:
            return store.acquire(run_id, config, resume=resume)
        except RunBusy as busy:
            if not wait:
                raise
            if not waiting:
                warnings.warn(f"run {run_id} is being trained by {busy.holder.describe()}; "
                              "waiting for it to finish (Ctrl-C stops waiting)",
                              RunBusyWarning, stacklevel=4)
                waiting = True
            time.sleep(WAIT_SECONDS)


def _train_held(config: TrainConfig, data: Data, device: torch.device, store: RunStore,
                run_id: str, state: RunState, claim: Claim, graft: np.ndarray | None, resume: bool,
                progress: bool, on_step: StepCallback | None) -> Run:
    """The run, its lease held: from its checkpoint (or step 0) to its end."""
    checkpoint = store.checkpoint_path(run_id)
    continuing = resume and claim.found is not None
    message = "started" if claim.found is None or not resume else "restarted from step 0"
    if continuing and checkpoint.is_file():
        state, message = _resume(config, data, device, state, checkpoint, run_id)
    else:
        remove_checkpoint(checkpoint)
    for leftover in checkpoint.parent.glob(f".{checkpoint.name}.*.tmp"):
        remove_checkpoint(leftover)  # of a process killed while writing
    if claim.abandoned_by is not None:
        owner = claim.abandoned_by
        message += f", taking over from process {owner.pid} on {owner.host}, which stopped"
    if graft is not None:
        graft_norms(state.optimizer, scale_invariant_params(state.model), graft,
                    start_step=state.step)
    store.begin(run_id, config, fresh=not continuing, message=f"{message} on {device}")
    store.delete_metrics(run_id, from_step=state.step)
    log = _MetricLog(store, run_id)
    try:
        with _deterministic(device):
            status, message = _run(config, data, state, log, checkpoint,
                                   _progress_bar(config.steps, state.step, run_id, progress),
                                   on_step)
        log.flush()
        store.set_status(run_id, status, message)
    except BaseException as error:
        _record_stop(store, log, run_id, *_stopped(error, state))
        raise
    return store[run_id]


def _resume(config: TrainConfig, data: Data, device: torch.device, state: RunState,
            checkpoint: Path, run_id: str) -> tuple[RunState, str]:
    """The state restored from ``checkpoint`` and the log line saying so; a fresh state from
    step 0, with a warning, when the checkpoint cannot be read."""
    try:
        load_checkpoint(checkpoint, state, config)
    except CheckpointError as error:
        warnings.warn(f"{error}; run {run_id} restarts from step 0", CheckpointWarning,
                      stacklevel=5)
        return _build_state(config, data, device), f"restarted from step 0: {error}"
    return state, f"resumed from the checkpoint at step {state.step}"


def _stopped(error: BaseException, state: RunState) -> tuple[RunStatus, str]:
    """The status and log line of a run stopped by ``error``: ``interrupted`` (resumable) for
    Ctrl-C and faults of the store or a file, ``failed`` for anything else."""
    saved = "none yet" if state.saved is None else f"step {state.saved}"
    if isinstance(error, KeyboardInterrupt):
        return RunStatus.INTERRUPTED, f"interrupted at step {state.step}; checkpoint kept: {saved}"
    if isinstance(error, (StoreFault, OSError)):
        return RunStatus.INTERRUPTED, (f"stopped at step {state.step} by a fault: {error}; "
                                       f"checkpoint kept: {saved}")
    return RunStatus.FAILED, f"error at step {state.step}:\n" + traceback.format_exc()


def _record_stop(store: RunStore, log: _MetricLog, run_id: str, status: RunStatus,
                 message: str) -> None:
    """Write what was logged and the run's status as far as the store still takes writes: a
    store that cannot be written (or a run another process took over) keeps what it has."""
    for write in (log.flush, lambda: store.set_status(run_id, status, message)):
        try:
            write()
        except LeaseLost:
            return
        except StoreFault:
            continue


def _graft_targets(config: TrainConfig, state: RunState, store: RunStore,
                   run_id: str) -> np.ndarray | None:
    """The per-step target norms of norm grafting to the run ``config.optimizer.graft_norms_from``
    of ``store`` (``None`` without grafting), checked before the run takes its lease."""
    source_id = config.optimizer.graft_norms_from
    if source_id is None:
        return None
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
    return targets


def _describe(model: ModelConfig) -> str:
    return json.dumps(dataclasses.asdict(model), sort_keys=True)


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
