"""scalewise.sim: effective-learning-rate simulators in NumPy.

Two engines share one interface: the *recurrence* engine iterates theory's exact scalar recurrence
for SGD (001 Eq. 23) on whole hyperparameter grids; the *sphere* engine trains explicit
scale-invariant weight vectors with the real update rules of SGD, momentum and Nesterov SGD,
Adam, AdamW, RMSprop, Adagrad, Lion and Muon. :mod:`sim.norm_schedules` iterates the norm under
any learning-rate and weight-decay schedule beside its continuous solution, and
:mod:`sim.moving_average` shows AdamW's weights as a moving average of its updates.
:func:`equilibrium` gives theory's closed-form equilibria, :func:`drive` turns measured gradient
norms into predicted weight norms, :func:`drive_moments` the measured
tangential energies of momentum and adaptive updates, :func:`exponential_lr_pair` shows
weight decay as an exponential learning-rate schedule; :mod:`scalewise.figures` draws the notes'
figures from them.

Both engines have a compiled fast path where numba is installed (:mod:`sim.compiled` says why
numba and what it costs; without it, the same calls run in NumPy), and the sphere engine runs in
torch on any device given as ``device=`` (``"cuda"``).

>>> from scalewise import sim
>>> t = sim.simulate("sgd", lr=[0.1, 1.0], steps=100)
>>> t.norm_sq.shape
(100, 2)
"""

from __future__ import annotations

from scalewise.sim.driven_moments import drive_moments
from scalewise.sim.dynamics import ENGINES, drive, simulate
from scalewise.sim.equilibria import equilibrium, long_run_averages
from scalewise.sim.equivalence import direction_mismatch, exponential_lr_pair
from scalewise.sim.losses import CorrelatedNoise, RayleighQuotient
from scalewise.sim.preconditioned_paths import path_summary, preconditioned_paths, regression_data
from scalewise.sim.recurrence import effective_damping
from scalewise.sim.schedules import (
    Constant,
    Exponential,
    Linear,
    StepDecay,
    WarmupCosine,
    WarmupStableDecay,
)
from scalewise.sim.spec import MEMORY_LIMIT_BYTES
from scalewise.sim.trajectory import Trajectory
from scalewise.vocabulary import Optimizer

__all__ = [
    "ENGINES",
    "MEMORY_LIMIT_BYTES",
    "Constant",
    "CorrelatedNoise",
    "Exponential",
    "Linear",
    "Optimizer",
    "RayleighQuotient",
    "StepDecay",
    "Trajectory",
    "WarmupCosine",
    "WarmupStableDecay",
    "direction_mismatch",
    "drive",
    "drive_moments",
    "effective_damping",
    "equilibrium",
    "exponential_lr_pair",
    "long_run_averages",
    "path_summary",
    "preconditioned_paths",
    "regression_data",
    "simulate",
]
