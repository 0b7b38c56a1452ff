"""scalewise.models: normalized networks, optimizers (K-FAC included), probes, data, training
and the run store, measured in PyTorch on CPU or CUDA.

>>> from scalewise import models
>>> config = models.override(models.preset("digits-bn-sgd"), {"steps": 20})
>>> config.optimizer.name.value, config.steps
('sgd', 20)

``models.train(config)`` runs it and returns a :class:`~models.store.Run` whose ``metrics``
are a long-form DataFrame (``step``, ``layer``, ``name``, ``value``).
"""

from __future__ import annotations

from scalewise.models import probes
from scalewise.models.config import (
    Arch,
    Curvature,
    DataConfig,
    Dataset,
    KFACConfig,
    ModelConfig,
    Norm,
    NormPosition,
    Optimizer,
    OptimizerConfig,
    Precision,
    Schedule,
    TrainConfig,
    WeightDecayMode,
    WeightDecayPlacement,
    override,
)
from scalewise.models.data import Data, load_dataset
from scalewise.models.networks import build_model
from scalewise.models.optimizer_factory import build_optimizer
from scalewise.models.presets import PRESETS, preset
from scalewise.models.step import StepResult, train_step
from scalewise.models.store import Run, RunBusy, RunStatus, RunStore, StoreError, StoreFault
from scalewise.models.training import evaluate, train

__all__ = [
    "PRESETS", "Arch", "Curvature", "Data", "DataConfig", "Dataset", "KFACConfig",
    "ModelConfig", "Norm", "NormPosition", "OptimizerConfig", "Optimizer", "Precision", "Run",
    "RunBusy", "RunStatus", "RunStore", "Schedule", "StepResult", "StoreError", "StoreFault",
    "TrainConfig", "WeightDecayMode",
    "WeightDecayPlacement", "build_model", "build_optimizer", "evaluate", "load_dataset",
    "override", "preset", "probes", "train", "train_step",
]
