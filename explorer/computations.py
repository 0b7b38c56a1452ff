"""What the explorer's pages compute, behind ``st.cache_data``: each wrapper takes hashable
arguments, keeps at most ``max_entries`` results, and calls one function of theory/, sim/,
figures/, models/ or validation/. Nothing here draws; the pages test these results through
AppTest and ``bench/bench_app.py`` times them. The run store is opened in one place,
:func:`open_store`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from scalewise import models, theory, validation
from scalewise.figures import curves
from scalewise.figures import schedule_curves as schedules
from scalewise.figures.comparison import Comparison
from scalewise.models.store import (
    RunStore,
    UnitStats,
    default_store_path,
    store_or_reason,
)
from scalewise.sim import mean_field
from scalewise.theory import equilibrium as eq
from scalewise.validation import comparison, overview
from scalewise.validation import suite as suites
from scalewise.validation.estimators import Interval
from scalewise.validation.ics import covariate_shift
from scalewise.validation.kfac import gauss_newton
from scalewise.validation.report import LoadedReport
from scalewise.vocabulary import Decay, Optimizer

OPTIMIZERS = tuple(o.value for o in Optimizer if o.properties.simulated)
LR_CHOICES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
STEP_CHOICES = (100, 300, 1000, 3000, 10_000, 30_000, 100_000)
DIM_CHOICES = (8, 16, 32, 64, 128, 256, 1024)
SPHERE_DIM = 64  # the dimension of a unit's weight vector the pages start from
SETTLING = 3  # time constants a run needs to show its settling
SCHEDULES = schedules.SCHEDULES
SCHEDULE_OPTIMIZERS = schedules.OPTIMIZERS
MEAN_NORM_POINTS = 13  # points of the covariate-shift curves between 0 and the largest ||m||
STORE_TIMEOUT = 5.0  # seconds a page waits for a store another process keeps locked


def default_lr(optimizer: str) -> float:
    """The learning rate the pages start ``optimizer`` from: 1e-3 where Adam's betas set a step of
    about ``lr`` per coordinate whatever the gradient's scale, 0.1 otherwise."""
    return 1e-3 if "betas" in Optimizer.parse(optimizer).properties.hyperparameters else 0.1


def default_weight_decay(optimizer: str) -> float:
    """0.1 for a decoupled decay (AdamW's ``lr * wd`` is then 1e-4, whose equilibrium settles in
    tens of thousands of steps), 0.01 otherwise."""
    return 0.1 if Optimizer.parse(optimizer).properties.decay is Decay.DECOUPLED else 0.01


def time_constant(approach_rate: float) -> float:
    """Steps per e-fold of a deviation from the equilibrium (theory's ``TIME_CONSTANT``); for a
    negative rate, an oscillating approach, its envelope's."""
    return float(eq.time_constant(approach_rate)) if math.isfinite(approach_rate) else math.nan


def settling_steps(approach_rate: float) -> int | None:
    """The fewest steps of :data:`STEP_CHOICES` spanning :data:`SETTLING` time constants (None
    where none does, or the rate is unknown)."""
    needed = SETTLING * time_constant(approach_rate)
    return next((s for s in STEP_CHOICES if s >= needed), None)


@st.cache_data(max_entries=256, show_spinner=False)
def check(name: str) -> tuple[bool, bool, float]:
    result = theory.IDENTITIES[name].check()
    return result.holds, result.control_rejected, result.seconds


@st.cache_data(max_entries=32, show_spinner=False)
def norm_growth(lrs: tuple[float, ...], steps: int, grad_norm: float) -> pd.DataFrame:
    return curves.norm_growth_table(lrs, steps=steps, grad_norm=grad_norm)


@st.cache_data(max_entries=32, show_spinner=False)
def wd_trajectory(optimizer: str, lr: float, weight_decay: float, steps: int, momentum: float,
                  betas: tuple[float, float], dim: int) -> pd.DataFrame | None:
    """The mean-field trajectory (None where theory has no mean-field map: Adagrad)."""
    if optimizer not in mean_field.OPTIMIZERS:
        return None
    return curves.wd_trajectory_table(optimizer, lr=lr, weight_decay=weight_decay, steps=steps,
                                      momentum=momentum, betas=betas, dim=dim)


@st.cache_data(max_entries=16, show_spinner=False)
def sphere_trajectory(optimizer: str, lr: float, weight_decay: float, steps: int,
                      momentum: float, betas: tuple[float, float], dim: int) -> pd.DataFrame:
    return curves.sphere_trajectory_table(optimizer, lr=lr, weight_decay=weight_decay,
                                          steps=steps, momentum=momentum, betas=betas, dim=dim)


@st.cache_data(max_entries=32, show_spinner=False)
def wd_equilibrium(optimizer: str, lr: float, weight_decay: float, momentum: float,
                   betas: tuple[float, float], dim: int) -> dict[str, float] | str:
    return curves.equilibrium_or_reason(optimizer, lr=lr, weight_decay=weight_decay,
                                        momentum=momentum, betas=betas, dim=dim)


@st.cache_data(max_entries=32, show_spinner=False)
def schedule_curves(optimizer: str, schedule: str, lr: float, weight_decay: float, steps: int,
                    corrected: bool, momentum: float) -> pd.DataFrame:
    return schedules.schedule_table(optimizer, schedule, lr=lr, weight_decay=weight_decay,
                                    steps=steps, corrected=corrected, momentum=momentum,
                                    dim=SPHERE_DIM)


@st.cache_data(max_entries=32, show_spinner=False)
def damping(lr: float, weight_decay: float, eta: float, steps: int) -> pd.DataFrame:
    return curves.effective_damping_table(lr=lr, weight_decay=weight_decay, damping=eta,
                                          steps=steps)


@st.cache_data(max_entries=8, show_spinner=False)
def family_norms(depths: tuple[int, ...], width: int, seed: int) -> pd.DataFrame:
    return gauss_newton.network_family_norms(depths, width=width, seed=seed)


@st.cache_data(max_entries=16, show_spinner=False)
def outliers(max_mean_norm: float, dim: int, samples: int, seed: int) -> pd.DataFrame:
    mean_norms = tuple(np.linspace(0.0, max_mean_norm, MEAN_NORM_POINTS))
    return covariate_shift.outlier_curves(mean_norms, dim=dim, samples=samples, seed=seed)


# ---------------------------------------------------------------- the run store


def open_store(*, create: bool = True) -> RunStore | str:
    """The user's run store (made when absent and ``create``), or the one line a page shows
    instead of a traceback: no store, a folder, a 0-byte file, a damaged header or damaged
    pages, a store locked for longer than :data:`STORE_TIMEOUT`, one that cannot be created."""
    return store_or_reason(default_store_path(), timeout=STORE_TIMEOUT, create=create)


def version(row) -> str:
    """What identifies the stored state of a run (a row of ``RunStore.runs()``)."""
    return f"{row.updated}/{row.last_step}"


@st.cache_data(max_entries=16, show_spinner=False)
def stored_run(path: str, run_id: str, version: str) -> tuple[models.Run, UnitStats]:
    """The run ``run_id`` of the store at ``path`` and its per-unit records; ``version`` (its
    update time and last step) keys the cache to what is stored. StoreError (a ValueError)
    where it cannot be read."""
    with RunStore(path, timeout=STORE_TIMEOUT, create=False) as store:
        return store[run_id], store.unit_stats(run_id)


@st.cache_data(max_entries=16, show_spinner=False)
def run_comparison(path: str, run_id: str, version: str) -> tuple[pd.DataFrame, pd.DataFrame] | str:
    """The comparison table and relative errors of a run, or why it is not compared (a run the
    recurrence does not describe, or an unreadable one)."""
    try:
        run, _ = stored_run(path, run_id, version)
    except ValueError as error:
        return f"Run {run_id} cannot be read from {path} (corrupt record): {error}"
    try:
        table = comparison.compare_run(run)
    except ValueError as error:
        return str(error)
    return table, comparison.relative_errors(table, comparison.invariant_layers(run.metrics))


@st.cache_data(max_entries=16, show_spinner=False)
def unit_comparison(path: str, run_id: str, version: str, layer: str) -> pd.DataFrame | str:
    """Per unit of ``layer``, measured ``||w||^2`` beside the recurrence driven by the unit's
    own gradient norms, or why there is none."""
    try:
        run, stats = stored_run(path, run_id, version)
        return comparison.unit_comparison(run, stats, layer)
    except ValueError as error:
        return str(error)


@st.cache_data(max_entries=16, show_spinner=False)
def seed_runs(path: str, run_id: str, versions: tuple[tuple[str, str], ...]) -> list[str]:
    """The stored runs (``versions``: every run's id and version, which key the cache to the
    store's state) that repeat ``run_id``'s configuration with another seed, ``run_id``
    included; only configs are read, and a run whose config cannot be read is left out."""
    store = store_or_reason(path, timeout=STORE_TIMEOUT, create=False)
    if isinstance(store, str):
        return []
    configs = {}
    with store:
        for other, _ in versions:
            try:
                configs[other] = store.status(other)[0]
            except (ValueError, TypeError, KeyError):  # a corrupt config
                continue
    return comparison.seeds_of(configs[run_id], configs) if run_id in configs else []


def seed_interval(path: str, seeds: tuple[tuple[str, str], ...], layer: str) -> Interval | None:
    """Measured / predicted ``||w||^2`` of ``layer``'s units at the last step over the runs
    ``seeds`` (id, version), with its interval; None where a run has no unit comparison."""
    units = [unit_comparison(path, run_id, run_version, layer) for run_id, run_version in seeds]
    if any(isinstance(u, str) for u in units):
        return None
    return comparison.seed_interval(units)


def unit_layers(path: str, run_id: str, version: str) -> list[str]:
    """The layers with per-unit records (none for an unreadable run)."""
    try:
        return list(stored_run(path, run_id, version)[1].layers)
    except ValueError:
        return []


def stored_gn_norms() -> pd.DataFrame:
    """Gauss-Newton norms from the stored runs' costly probes (empty if none measured them).
    The store is listed on every call (runs come and go); each run is read through
    :func:`stored_run`'s cache."""
    store = open_store(create=False)
    if isinstance(store, str):  # none, or unreadable: the page computes the live family
        return pd.DataFrame()
    try:
        with store:
            runs = store.runs()
        frames = [gauss_newton.stored_norms(stored_run(str(store.path), r.id, version(r))[0]
                                            .metrics)
                  .assign(run=r.id) for r in runs.itertuples()]
    except (ValueError, OSError):  # an unreadable store or run: fall back to the live family
        return pd.DataFrame()
    found = [f for f in frames if "gn_norm" in f.columns]
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


# ---------------------------------------------------------------- reference reports


@st.cache_data(max_entries=8, show_spinner=False)
def reference_report(suite: str, version: float) -> LoadedReport | str:
    """The committed reference report of ``suite``, or why it cannot be read; ``version`` (the
    modification time of its index) keys the cache to what is on disk."""
    try:
        return validation.reference(suite)
    except ValueError as error:
        return str(error)


@st.cache_data(max_entries=8, show_spinner=False)
def report_overview(suite: str, version: float) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Per experiment of a readable report: the summary row and the table of its curves."""
    report = reference_report(suite, version)
    return overview.summary(report), {e: overview.curve_table(report, e)
                                      for e in overview.experiments(report)}


@st.cache_data(max_entries=64, show_spinner=False)
def report_headline(suite: str, version: float, experiment: str, quantity: str, optimizer: str,
                    layer: str) -> Comparison:
    return overview.headline(reference_report(suite, version), experiment, quantity, optimizer,
                             layer)


@st.cache_data(max_entries=64, show_spinner=False)
def report_records(suite: str, version: float, experiment: str) -> Comparison | None:
    return overview.records_comparison(reference_report(suite, version), experiment)


@st.cache_data(max_entries=64, show_spinner=False)
def report_overlay(suite: str, version: float, experiment: str, quantity: str) -> Comparison:
    return overview.overlay(reference_report(suite, version), experiment, quantity)


def report_version(suite: str) -> float:
    # REFERENCE_DIR is read at each call: the tests point it at an empty folder
    index = suites.REFERENCE_DIR / suite / "index.json"
    return index.stat().st_mtime if index.exists() else 0.0
