"""Effective learning rate of the normalized weights, per optimizer: ``lr / ||w||^p`` with ``p``
the optimizer's :attr:`~scalewise.vocabulary.Properties.effective_lr_power`.

SGD and momentum SGD: ``lr / ||w||^2`` (001 Sec. 4.3): the gradient scales as ``1 / ||w||``
and the step on the unit sphere as ``lr / ||w||^2`` times the gradient at unit norm.
Adam, AdamW, RMSprop and Adagrad: ``lr / ||w||``: their step is invariant to the scale of the
gradient (up to ``eps``), so only the division of the step by ``||w||`` remains (degree -1
instead of -2; 001 Sec. 4.3, "a similar analysis for Adam"). Both forms are theory's,
lambdified there. K-FAC: ``lr``.
"""

from __future__ import annotations

import numpy as np

from scalewise.theory import equilibrium as eq
from scalewise.theory.mean_field import scale_free_effective_lr
from scalewise.vocabulary import Optimizer

_FORMS = {2: eq.effective_lr, 1: scale_free_effective_lr}


def effective_lr(optimizer: Optimizer, norm_sq: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """Effective learning rate at squared weight norm ``norm_sq`` and learning rate ``lr``."""
    power = optimizer.properties.effective_lr_power
    if power == 0:  # K-FAC: invariant to the weight's scale, the effective LR is the LR
        return np.broadcast_to(np.asarray(lr, dtype=np.float64), np.shape(norm_sq)).copy()
    return _FORMS[power](norm_sq, lr)
