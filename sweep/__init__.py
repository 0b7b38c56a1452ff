"""scalewise.sweep: grids of training runs on Ray, resumable, recorded in the run store.

:mod:`~scalewise.sweep.spec` reads a spec and expands its grid, :mod:`~scalewise.sweep.runner`
trains trials (a sweep's, or a validation suite's runs) where its :class:`Workers` say,
:mod:`~scalewise.sweep.cluster` starts or joins Ray for it, :mod:`~scalewise.sweep.summary`
reports a sweep's status and results.
"""

from __future__ import annotations

from scalewise.sweep.cluster import (
    CONNECT_BOUND_S,
    RAY_MISSING,
    ClusterError,
    import_ray,
    ray_installed,
)
from scalewise.sweep.runner import (
    PENDING,
    SweepReport,
    TrialResult,
    Workers,
    partition,
    record,
    run_sweep,
    run_trial,
)
from scalewise.sweep.spec import GOALS, SweepSpec, Trial, expand, load_spec, parse_spec
from scalewise.sweep.summary import summarize, sweep_status

__all__ = [
    "CONNECT_BOUND_S", "ClusterError", "GOALS", "PENDING", "RAY_MISSING", "SweepReport",
    "SweepSpec", "Trial", "TrialResult", "Workers", "expand", "import_ray", "load_spec",
    "parse_spec", "partition", "ray_installed", "record", "run_sweep", "run_trial", "summarize",
    "sweep_status",
]
