"""scalewise.sweep: grids of training runs on Ray, resumable, recorded in the run store.

:mod:`~scalewise.sweep.spec` reads a spec and expands its grid, :mod:`~scalewise.sweep.runner`
trains the trials on Ray, :mod:`~scalewise.sweep.summary` reports their status and results.
"""

from __future__ import annotations

from scalewise.sweep.runner import (
    PENDING,
    RAY_MISSING,
    SweepReport,
    TrialResult,
    import_ray,
    partition,
    record,
    run_sweep,
    run_trial,
)
from scalewise.sweep.spec import GOALS, SweepSpec, Trial, expand, load_spec, parse_spec
from scalewise.sweep.summary import summarize, sweep_status

__all__ = [
    "GOALS", "PENDING", "RAY_MISSING", "SweepReport", "SweepSpec", "Trial", "TrialResult",
    "expand", "import_ray", "load_spec", "parse_spec", "partition", "record", "run_sweep",
    "run_trial", "summarize", "sweep_status",
]
