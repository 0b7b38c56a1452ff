"""scalewise.models: normalized networks, optimizers (K-FAC included), probes, data, training
and the run store, measured in PyTorch on CPU or CUDA.

>>> import models
>>> config = models.override(models.preset("digits-bn-sgd"), {"steps": 20})
>>> config.optimizer.name.value, config.steps
('sgd', 20)

``models.train(config)`` runs it and returns a :class:`~models.store.Run` whose ``metrics``
are a long-form DataFrame (``step``, ``layer``, ``name``, ``value``).
"""

from __future__ import annotations

from models.config import (
    PRESETS,
    DataConfig,
    KFACConfig,
    ModelConfig,
    OptimizerConfig,
    TrainConfig,
    override,
    preset,
)
from models.data import Data, load_dataset
from models.store import Run, RunStatus, RunStore, StoreError
from models.training import evaluate, train

__all__ = [
    "PRESETS", "Data", "DataConfig", "KFACConfig", "ModelConfig", "OptimizerConfig", "Run",
    "RunStatus", "RunStore", "StoreError", "TrainConfig", "evaluate", "load_dataset",
    "override", "preset", "train",
]
