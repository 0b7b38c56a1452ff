"""A run's state and its checkpoint file.

A checkpoint (``checkpoints/<run id>.pt`` beside the run store) holds everything
:class:`RunState` holds: the network, the optimizer, the batch sampler, the step generator, the
probe's previous gradients, and the step. It is written atomically (a temporary file, synced,
renamed over it), so a process killed while writing leaves the last whole one. It is read with
``torch.load(weights_only=True)``: only tensors and plain containers; a damaged file, one that
holds anything else, or one of another config raises :class:`CheckpointError`, whose message
never passes on torch's advice to load the file unsafely.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scalewise.models.config import TrainConfig
from scalewise.models.data import BatchSampler
from scalewise.models.probes import StepProbe

__all__ = ["CheckpointError", "CheckpointWarning", "RunState", "load_checkpoint",
           "remove_checkpoint", "save_checkpoint"]


class CheckpointError(OSError):
    """A checkpoint could not be written or read."""


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read: the run restarts from step 0."""


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



def save_checkpoint(path: Path, state: RunState, config: TrainConfig) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file, synced, renamed over it. A
    failed write (a full disk) raises :class:`CheckpointError` and leaves the old checkpoint."""
    payload = {"config": config.to_json(), "step": state.step,
               "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
               "sampler": state.sampler.state_dict(), "generator": state.generator.get_state(),
               "previous_gradients": state.probe.previous if state.probe else {}}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # torch reports a failed write as RuntimeError
        temporary.unlink(missing_ok=True)
        raise CheckpointError(f"checkpoint {path} could not be written at step {state.step}: "
                              f"{_first_line(error)}") from None
    state.saved = state.step


def load_checkpoint(path: Path, state: RunState, config: TrainConfig) -> None:
    """Restore ``state`` from the checkpoint at ``path``, which must be of ``config``. Only
    tensors and plain containers are loaded (``weights_only``); anything else, a damaged file
    or a checkpoint of another config raises :class:`CheckpointError` (``state`` may then be
    partly restored: build it again)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("config") != config.to_json():
            raise CheckpointError("it is not a checkpoint of this run's config")
        state.model.load_state_dict(payload["model"])
        state.optimizer.load_state_dict(payload["optimizer"])
        state.sampler.load_state_dict(payload["sampler"])
        state.generator.set_state(payload["generator"])
        if state.probe is not None:
            state.probe.previous = payload["previous_gradients"]
        state.step = state.saved = int(payload["step"])
    except Exception as error:  # noqa: BLE001 - whatever a damaged file raises
        raise CheckpointError(f"checkpoint {path} cannot be read ({_unreadable(error)})") from None


def _unreadable(error: Exception) -> str:
    """Why a checkpoint cannot be read, without torch's advice to load it unsafely."""
    if isinstance(error, pickle.UnpicklingError):
        return "it is damaged, or holds objects other than tensors and plain containers"
    if isinstance(error, CheckpointError):
        return str(error)
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0][:200] if text else type(error).__name__)


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint file if there is one; :class:`CheckpointError` when its folder
    cannot be used (a file stands in its place, no permission)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} could not be written: its folder cannot be "
                              f"used ({error.strerror or error})") from None
