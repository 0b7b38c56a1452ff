"""scalewise.theory: every identity of the seeds as an exactly checkable SymPy object.

>>> from scalewise import theory
>>> theory.IDENTITIES["wd_effective_lr"].check().holds
True

Importing this package registers the identities of every topic module in
:data:`IDENTITIES` (name -> :class:`~theory.identity.Identity`) and the seeds' slips in
:data:`SLIPS`.
"""

from __future__ import annotations

from collections.abc import Iterable

from scalewise.theory import (  # each topic module registers its identities
    adam_l2,  # noqa: F401
    adamw,  # noqa: F401
    adamw_ema,  # noqa: F401
    adaptive,  # noqa: F401
    empirical_fisher,  # noqa: F401
    equilibrium,  # noqa: F401
    fisher,  # noqa: F401
    gauss_newton,  # noqa: F401
    homogeneity,  # noqa: F401
    kfac,  # noqa: F401
    kronecker,  # noqa: F401
    lion_muon_nesterov,  # noqa: F401
    momentum_sgd,  # noqa: F401
    norm_under_schedules,  # noqa: F401
    normalization_backprop,  # noqa: F401
    normalization_invariance,  # noqa: F401
    preconditioning,  # noqa: F401
    radial_update,  # noqa: F401
    regularization,  # noqa: F401
    schedules,  # noqa: F401
    second_order,  # noqa: F401
)
from scalewise.theory.identity import IDENTITIES, SLIPS, CheckResult, Identity, Slip

__all__ = ["IDENTITIES", "SLIPS", "CheckResult", "Identity", "Slip", "check_all"]


def check_all(names: Iterable[str] | None = None) -> list[CheckResult]:
    """Check every identity (or those ``names``), returning one :class:`CheckResult` each."""
    selected = list(IDENTITIES) if names is None else list(names)
    return [IDENTITIES[name].check() for name in selected]
