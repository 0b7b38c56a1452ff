"""AdamW's weights as an exponential moving average of ``-u / lam`` (Wang and Aitchison 2024;
identities ``adamw_moving_average``, ``adamw_average_weights_sum_to_one``,
``adamw_decay_for_dataset_and_batch`` in :mod:`scalewise.theory.adamw_ema`).

:func:`decoupled_steps` runs ``w' = (1 - eta lam) w - eta u`` on given updates;
:func:`moving_average` forms the average ``(1 - eps)^t w_0 + sum_s eps (1 - eps)^(t-1-s)
(-u_s / lam)``, ``eps = eta lam``, directly: the two agree to rounding.
:func:`weight_decay_for` is the rule ``lam = B / (eta N tau_epoch)`` that keeps the average's
time constant fixed in epochs when the dataset size ``N`` or the batch size ``B`` changes.
"""

from __future__ import annotations

import numpy as np

from scalewise import checks
from scalewise.theory.adamw_ema import decay_for


def _checked(updates, lr, weight_decay) -> tuple[np.ndarray, float, float]:
    updates = np.asarray(updates, dtype=float)
    if updates.ndim == 0 or not np.all(np.isfinite(updates)):
        checks.fail("updates", updates, "finite updates, an array of shape (steps, ...)")
    lr = checks.number("lr", lr, 0.0, low_open=True)
    weight_decay = checks.number("weight_decay", weight_decay, 0.0, low_open=True)
    checks.decay_factor(lr, weight_decay)
    return updates, lr, weight_decay


def decoupled_steps(updates, *, lr: float, weight_decay: float, init) -> np.ndarray:
    """The weights after each decoupled step (shape ``(steps, ...)``)."""
    updates, lr, weight_decay = _checked(updates, lr, weight_decay)
    w = np.asarray(init, dtype=float)
    out = []
    for u in updates:
        w = (1 - lr * weight_decay) * w - lr * u
        out.append(w)
    return np.array(out)


def moving_average(updates, *, lr: float, weight_decay: float, init) -> np.ndarray:
    """The exponential moving average of ``-u / weight_decay`` with coefficient
    ``lr * weight_decay``, started at ``init`` (shape ``(steps, ...)``), summed directly."""
    updates, lr, weight_decay = _checked(updates, lr, weight_decay)
    eps = lr * weight_decay
    t = np.arange(1, len(updates) + 1)
    keep = (1 - eps) ** t.astype(float)  # the initial weights' share after t steps
    targets = -updates / weight_decay
    out = []
    for steps_done, share in zip(t, keep):
        shares = eps * (1 - eps) ** np.arange(steps_done - 1, -1, -1, dtype=float)
        out.append(share * np.asarray(init, dtype=float)
                   + np.tensordot(shares, targets[:steps_done], axes=1))
    return np.array(out)


def weight_decay_for(*, lr, dataset_size, batch_size, tau_epochs) -> np.ndarray:
    """``lam = B / (eta N tau_epoch)``: the weight decay whose moving average spans
    ``tau_epochs`` epochs; broadcasts."""
    return np.asarray(decay_for(checks.positive("lr", lr),
                                checks.positive("dataset_size", dataset_size),
                                checks.positive("batch_size", batch_size),
                                checks.positive("tau_epochs", tau_epochs)))
