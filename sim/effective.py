"""Effective learning rate of the normalized weights, per optimizer.

SGD and momentum SGD: ``lr / ||w||^2`` (001 Sec. 4.3): the gradient scales as ``1 / ||w||``
and the step on the unit sphere as ``lr / ||w||^2`` times the gradient at unit norm.
Adam, AdamW, RMSprop and Adagrad: ``lr / ||w||``: their step is invariant to the scale of the
gradient (up to ``eps``), so only the division of the step by ``||w||`` remains (degree -1
instead of -2; 001 Sec. 4.3, "a similar analysis for Adam").
"""

from __future__ import annotations

import numpy as np

from scalewise.sim.spec import Optimizer
from scalewise.theory import equilibrium as eq
from scalewise.theory.optimizers import scale_free_effective_lr

_SCALE_FREE_STEP = (Optimizer.ADAM, Optimizer.ADAMW, Optimizer.RMSPROP, Optimizer.ADAGRAD)


def effective_lr(optimizer: Optimizer, norm_sq: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """Effective learning rate at squared weight norm ``norm_sq`` and learning rate ``lr``."""
    if optimizer in _SCALE_FREE_STEP:
        return scale_free_effective_lr(norm_sq, lr)
    return eq.effective_lr(norm_sq, lr)
