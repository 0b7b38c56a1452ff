"""The result of a simulation: recorded norms, effective learning rates and angular updates.

Array layout (``records = len(step)``; ``shape`` = the broadcast hyperparameter shape)::

    step            (records,)                  the steps k recorded
    norm_sq         (records, *shape[, runs])   ||w_k||^2
    effective_lr    (records, *shape[, runs])   effective learning rate of step k
    angular_update  (records, *shape[, runs])   angle between w_k and w_{k+1} (radians)
    final_norm_sq   (*shape[, runs])            ||w_steps||^2 after the last step
    direction       (records, *shape, runs, dim) w_k / ||w_k|| (sphere engine, when kept)

The trailing ``runs`` axis exists for the sphere engine only (independent runs); the recurrence
engine is deterministic and has none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalewise.sim.spec import SimulationSpec


@dataclass(frozen=True, eq=False)
class Trajectory:
    spec: SimulationSpec
    engine: str
    dim: int | None
    runs: int
    seed: int
    step: np.ndarray
    norm_sq: np.ndarray
    effective_lr: np.ndarray
    angular_update: np.ndarray
    final_norm_sq: np.ndarray
    direction: np.ndarray | None = None

    @property
    def has_runs_axis(self) -> bool:
        return self.engine == "sphere"

    def run_mean(self, name: str) -> np.ndarray:
        """The recorded array ``name`` averaged over runs (unchanged without a runs axis)."""
        values = getattr(self, name)
        return values.mean(axis=-1) if self.has_runs_axis else values
