"""scalewise.theory: every identity of the seeds as an exactly checkable SymPy object.

>>> import theory
>>> theory.IDENTITIES["wd_effective_lr"].check().holds
True

Importing this package registers the identities of every topic module in
:data:`IDENTITIES` (name -> :class:`~theory.identity.Identity`) and the seeds' slips in
:data:`SLIPS`.
"""

from __future__ import annotations

from collections.abc import Iterable

from theory import equilibrium  # noqa: F401  (each topic module registers its identities)
from theory import homogeneity  # noqa: F401
from theory import normalization  # noqa: F401
from theory import optimizers  # noqa: F401
from theory import schedules  # noqa: F401
from theory import adaptive  # noqa: F401
from theory import kronecker  # noqa: F401
from theory import preconditioning  # noqa: F401
from theory import kfac  # noqa: F401
from theory import regularization  # noqa: F401
from theory.identity import IDENTITIES, SLIPS, CheckResult, Identity, Slip

__all__ = ["IDENTITIES", "SLIPS", "CheckResult", "Identity", "Slip", "check_all"]


def check_all(names: Iterable[str] | None = None) -> list[CheckResult]:
    """Check every identity (or those ``names``), returning one :class:`CheckResult` each."""
    selected = list(IDENTITIES) if names is None else list(names)
    return [IDENTITIES[name].check() for name in selected]
