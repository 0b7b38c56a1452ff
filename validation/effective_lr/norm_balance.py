"""The norm balance of every optimizer, exact: ``||w_{k+1}||^2 = rho^2 ||w_k||^2 - 2 rho <w_k, u_k>
+ ||u_k||^2`` for the step ``w_{k+1} = rho w_k - u_k`` (identity ``norm_balance``,
:mod:`scalewise.theory.radial_update`; 001 Eq. 22-23).

Config: every optimizer of :data:`SETTINGS` on the batch-norm digits MLP, in float32 and float64,
per-unit records every step. Runs -> per layer, ``||w_{k+1}||^2`` reconstructed from the probes'
``||w_k||^2``, radial part ``<w_k, u_k>`` and ``||u_k||^2`` against the measured
``||w_{k+1}||^2``, for every unit and record and for the layer's sums -> one record per layer at
its worst step (and unit) -> bounds by precision -> a table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalewise.theory.radial_update import balanced_norm_sq
from scalewise.validation.effective_lr.runs import (
    Measured,
    Setting,
    config,
    measure,
    unit_values,
)
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings, Size

EXPERIMENT = "norm_balance"
NETWORK = "mlp-bn"
LIMITS = {"float32": 1e-5, "float64": 1e-12}
"""Max relative error of the reconstructed ``||w_{k+1}||^2`` by the runs' precision."""

SETTINGS = (
    Setting("sgd", 0.1, 5e-3),
    Setting("sgdm", 0.01, 5e-3),
    Setting("adam", 0.003, 0.01),
    Setting("adamw", 0.003, 0.3),
    Setting("rmsprop", 0.003, 0.01),
    Setting("adagrad", 0.03, 0.01),
    Setting("kfac", 0.01, 0.01, momentum=0.0),
)
"""One setting per optimizer; the balance holds whatever the hyperparameters."""


@dataclass(frozen=True)
class Scale:
    steps: int


SCALES = {Size.SMOKE: Scale(steps=10), Size.REFERENCE: Scale(steps=200)}


def norm_balance(report: Report, settings: Settings) -> None:
    """The reconstructed norm of every optimizer's step against the measured one."""
    steps = settings.scale(SCALES).steps
    jobs = [(NETWORK, s, settings.seed,
             config(NETWORK, s, seed=settings.seed, steps=steps, extra={"precision": precision}))
            for s in SETTINGS for precision in LIMITS]
    measured = measure(jobs, settings, desc="effective-lr norm balance runs")
    records = [r for m in measured for r in balance_records(m)]
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.bounds += BOUNDS
    report.section("The norm balance of every optimizer", _text(records, steps))


BOUNDS = [Bound(EXPERIMENT, "norm_sq", limit, layer=f"* ({precision})",
                description=f"||w_(k+1)||^2 from the split rho w - u, every unit, layer and step, "
                f"{precision} (max)")
          for precision, limit in LIMITS.items()]
"""Declared before the reference run; never loosened to fit a result."""


def balance_records(m: Measured) -> list[Record]:
    """Per layer of ``m``: the worst unit and record, and the worst step of the layer's sums."""
    precision = m.run.config.precision.value
    rho = m.sums("decay_factor")
    out = []
    for layer, stats in m.units.layers.items():
        v = unit_values(m, layer)
        layer_rho = rho[layer].reindex(stats.steps).to_numpy()[:, None]
        out.append(_worst(m, f"{m.layer(layer)}/units ({precision})", balanced_norm_sq(
            layer_rho, v["norm_sq"], v["w_dot_update"], v["update_sq"]), v["next_norm_sq"]))
        sums = pd.DataFrame({name: m.sums(f"sum_{name}")[layer] for name in
                             ("norm_sq", "w_dot_update", "update_sq", "next_norm_sq")})
        sums = sums.assign(rho=rho[layer]).dropna()
        out.append(_worst(m, f"{m.layer(layer)} ({precision})", balanced_norm_sq(
            sums["rho"].to_numpy(), sums["norm_sq"].to_numpy(), sums["w_dot_update"].to_numpy(),
            sums["update_sq"].to_numpy()), sums["next_norm_sq"].to_numpy()))
    return out


def _worst(m: Measured, layer: str, predicted: np.ndarray, measured: np.ndarray) -> Record:
    error = np.abs(predicted - measured) / np.abs(measured)
    worst = np.unravel_index(np.nanargmax(error), error.shape)
    return record(EXPERIMENT, m.setting.optimizer, layer, "norm_sq",
                  predicted=predicted[worst], measured=measured[worst])


def _text(records: list[Record], steps: int) -> str:
    frame = pd.DataFrame([r.__dict__ for r in records])
    frame["precision"] = frame["layer"].str.extract(r"\((\w+)\)$", expand=False)
    frame["over"] = np.where(frame["layer"].str.contains("/units "), "units", "layer sums")
    table = frame.pivot_table(index="optimizer", columns=["precision", "over"],
                              values="rel_error", aggfunc="max", sort=False)
    table.columns = [f"{p}, {o}" for p, o in table.columns]
    return (
        "Every optimizer steps a unit as $w_{k+1} = \\rho w_k - u_k$, $\\rho = 1 - \\alpha\\lambda$ "
        "where its decay multiplies the weights and $\\rho = 1$ where the decay is part of the "
        "preconditioned update, and then $\\|w_{k+1}\\|^2 = \\rho^2\\|w_k\\|^2 - 2\\rho\\langle "
        "w_k, u_k\\rangle + \\|u_k\\|^2$ exactly (identity norm_balance). Each run's probes "
        f"record, at each of {steps} steps and for every unit, $\\|w_k\\|^2$, the radial part "
        "$\\langle w_k, u_k\\rangle$, $\\|u_k\\|^2$ and the measured $\\|w_{k+1}\\|^2$; the table "
        "gives the largest relative error of the reconstruction over all units and steps and "
        "over the layers' sums, by the runs' precision (bounds "
        + ", ".join(f"{limit:.0e} in {p}" for p, limit in LIMITS.items()) + "):\n\n"
        + markdown_table(table))
