"""The curves of 001 Fig. 6 and Fig. 7 as long-form tables (one row per step and setting), for
plotting, comparing and exporting as CSV; the closed forms come from :mod:`theory.equilibrium`
and :func:`sim.equilibrium`, the curves from :func:`sim.simulate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scalewise import checks
from scalewise.sim.dynamics import simulate
from scalewise.sim.equilibria import equilibrium
from scalewise.sim.recurrence import effective_damping
from scalewise.theory import equilibrium as eq
from scalewise.theory.equilibria import NO_EQUILIBRIUM
from scalewise.vocabulary import Optimizer

POINTS = 400  # points per curve: enough for a smooth curve on a log step axis
RECORDS = 10_000  # records per recurrence run at most: recording every step of a long run is slow
SPHERE_RECORDS = 1000  # the sphere engine records several arrays per step: fewer records


def _record_every(steps: int, records: int = RECORDS) -> int:
    return max(1, steps // records)


def _log_spaced(recorded: np.ndarray) -> np.ndarray:
    """Indices of about :data:`POINTS` of the ``recorded`` steps (ascending, from 0), evenly
    spaced on a log axis, step 0 included."""
    targets = np.geomspace(1, max(recorded[-1], 1), POINTS)
    return np.unique(np.concatenate([[0], np.searchsorted(recorded, targets)]))


def norm_growth_table(lrs: Sequence[float], *, steps: int, grad_norm: float = 1.0) -> pd.DataFrame:
    """001 Fig. 6: SGD without weight decay from ``||w_0|| = 1``; per learning rate and recorded
    step the simulated ``norm_sq`` and ``effective_lr`` (001 Eq. 23) beside the square-root law
    ``||w_k||^2 = sqrt(1 + k / k0)`` and its effective LR (001 Sec. 4.3;
    :func:`theory.equilibrium.growth_norm_sq`)."""
    if len(lrs) == 0:
        checks.fail("lrs", lrs, "at least one learning rate")
    lr = np.asarray(lrs, dtype=np.float64)  # (lrs,)
    t = simulate("sgd", lr=lr, grad_norm=grad_norm, steps=steps,
                 record_every=_record_every(steps))
    i = _log_spaced(t.step)
    k = t.step[i, None]  # (points, 1)
    law = np.broadcast_to(eq.growth_norm_sq(k, 1.0, lr, grad_norm), (len(i), len(lr)))
    return pd.DataFrame({
        "step": np.repeat(t.step[i], len(lr)),
        "lr": np.tile(lr, len(i)),
        "norm_sq": t.norm_sq[i].ravel(),
        "effective_lr": t.effective_lr[i].ravel(),
        "law_norm_sq": law.ravel(),
        "law_effective_lr": eq.effective_lr(law, lr).ravel(),
    })


def wd_trajectory_table(optimizer: str, *, lr: float, weight_decay: float, steps: int,
                        momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                        dim: int = 64, runs: int = 4, seed: int = 0) -> pd.DataFrame:
    """001 Fig. 7 for any optimizer: ``norm_sq``, ``effective_lr`` and ``angular_update`` per
    recorded step (SGD: the exact recurrence; the others: the noise-driven sphere of dimension
    ``dim``, mean over ``runs`` runs)."""
    t = simulate(optimizer, lr=lr, weight_decay=weight_decay, steps=steps, momentum=momentum,
                 betas=betas, dim=dim, runs=runs, seed=seed,
                 record_every=_record_every(steps, SPHERE_RECORDS))
    i = _log_spaced(t.step)
    return pd.DataFrame({"step": t.step[i], **{name: t.run_mean(name)[i] for name in
                                               ("norm_sq", "effective_lr", "angular_update")}})


def equilibrium_or_reason(optimizer: str, *, lr: float, weight_decay: float,
                          momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                          dim: int = 64) -> dict[str, float] | str:
    """Theory's equilibrium of ``optimizer`` (``norm_sq``, ``effective_lr``, ``angular_update``,
    ``approach_rate``), or, where theory proves there is none (Adagrad), its reason."""
    name = Optimizer.parse(optimizer).value
    if name in NO_EQUILIBRIUM:
        return NO_EQUILIBRIUM[name]
    values = equilibrium(name, lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas,
                         dim=dim)
    return {key: float(value) for key, value in values.items()}


def effective_damping_table(*, lr: float, weight_decay: float, damping: float, steps: int,
                            grad_norm: float = 1.0) -> pd.DataFrame:
    """K-FAC's effective damping ``eta ||w_k||^2`` of a scale-invariant layer (001 Sec. 5.2,
    004 Eq. 14; :func:`sim.effective_damping`) along the SGD norm trajectory of 001 Eq. (23),
    without and with weight decay: it grows with the norm without, and settles with."""
    wds = np.array([0.0, weight_decay])  # (2,)
    t = simulate("sgd", lr=lr, weight_decay=wds, grad_norm=grad_norm, steps=steps,
                 record_every=_record_every(steps))
    i = _log_spaced(t.step)
    return pd.DataFrame({
        "step": np.repeat(t.step[i], 2),
        "weight_decay": np.tile(wds, len(i)),
        "norm_sq": t.norm_sq[i].ravel(),
        "effective_damping": effective_damping(t.norm_sq[i], damping).ravel(),
    })
