"""The approach to equilibrium: a deviation of ``||w||^2`` from its equilibrium shrinks by
theory's approach rate per step (:mod:`scalewise.theory.equilibria`, ``approach_rate``; for SGD
``2 (1 - alpha lam)^2 - 1``, 001 Eq. 23 linearized).

Config: SGD, momentum SGD and AdamW on the batch-norm digits MLP, started :data:`FACTOR` times
above and below the equilibrium norm the equilibrium experiment measured (the initial
scale-invariant weights rescaled, ``model.invariant_init_scale``; the function is unchanged),
seeds. Runs -> per compared layer, the layer's unit-mean ``||w_k||^2`` from its sums, the
deviation from its settled value, and the least-squares slope of ``log |deviation|`` while it
lies between :data:`FIT_RANGE` (the linear regime) -> the fitted rate ``-slope`` against theory's
``-log(approach_rate)`` at the layer's measured ``g`` -> a bound -> a table with intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalewise.validation.effective_lr.equilibrium import (
    SETTINGS,
    equilibrium_runs,
    scaled,
    settled_estimates,
)
from scalewise.validation.effective_lr.runs import MIN_STEPS, Measured, config, measure, seeds
from scalewise.validation.effective_lr.settled import window
from scalewise.validation.estimators import interval
from scalewise.validation.markdown import interval_cell, markdown_table
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings, Size

EXPERIMENT = "approach"
OPTIMIZERS = ("sgd", "sgdm", "adamw")
NETWORK = "mlp-bn"
FACTOR = 3.0
FIT_RANGE = (0.03, 0.5)  # |x_k / x_inf - 1| fitted between these
LIMIT = 0.10


@dataclass(frozen=True)
class Scale:
    seeds: int
    min_steps: int


SCALES = {Size.SMOKE: Scale(seeds=1, min_steps=60), Size.REFERENCE: Scale(seeds=3, min_steps=MIN_STEPS)}


def approach(report: Report, settings: Settings) -> None:
    """Fitted relaxation rates of ``||w||^2`` from above and below against theory's."""
    scale = settings.scale(SCALES)
    ratios = equilibrium_ratios(settings)
    jobs = [(NETWORK, s, seed, config(NETWORK, s, seed=seed, steps=s.steps(scale.min_steps), unit_every=10, extra={
                "model.invariant_init_scale": math.sqrt(side * ratios[s.optimizer])}))
            for s in (scaled(b, settings) for b in SETTINGS if b.optimizer in ratios)
            for side in (FACTOR, 1 / FACTOR) for seed in seeds(settings, scale.seeds)]
    measured = measure(jobs, settings, desc="effective-lr approach runs")
    rows = pd.DataFrame([row for m in measured for row in fitted_rates(m)])
    records = _records(rows)
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.bounds += [Bound(EXPERIMENT, "rate", LIMIT, optimizer=o,
                            description="fitted relaxation rate of ||w||^2 against theory's, per "
                            "layer and side (mean over seeds), the worst") for o in ratios]
    report.section("The approach to equilibrium", _text(rows))


def equilibrium_ratios(settings: Settings) -> dict[str, float]:
    """Per optimizer, the median over the settled layers of :data:`NETWORK`'s equilibrium runs
    of ``E||w||^2`` at equilibrium over its initial value (the optimizers with none left out)."""
    measured = equilibrium_runs(settings, optimizers=OPTIMIZERS, networks=(NETWORK,))
    estimates, _ = settled_estimates(measured)
    ratios: dict[str, list[float]] = {}
    for m, layer, e in estimates:
        initial = float(m.sums("sum_norm_sq")[layer].iloc[0])
        units = m.units.layers[layer].units.size
        ratios.setdefault(m.setting.optimizer, []).append(e.measured["norm_sq"] * units / initial)
    return {opt: float(np.median(values)) for opt, values in ratios.items()}


def fitted_rates(m: Measured) -> list[dict[str, object]]:
    """Per compared layer of ``m``: the fitted and theory's rate (e-folds per step)."""
    out = []
    for layer in m.compared():
        x = m.sums("sum_norm_sq")[layer].to_numpy()
        settled = float(x[-window(m):].mean())
        fitted = relaxation_rate(x, settled)
        if math.isnan(fitted):
            continue
        g = float(np.sqrt(np.mean(m.sums("grad_norm_unit")[layer].to_numpy()[-window(m):] ** 2)))
        rate = m.setting.equilibrium(grad_norm=g, dim=m.dims[layer])["approach_rate"]
        out.append({"optimizer": m.setting.optimizer, "layer": m.layer(layer), "seed": m.seed,
                    "side": "above" if x[0] > settled else "below", "fitted": fitted,
                    "theory": -math.log(float(rate))})
    return out


def relaxation_rate(x: np.ndarray, settled: float) -> float:
    """``-slope`` of ``log|x_k / settled - 1|`` against ``k`` by least squares over the steps
    before the deviation first falls below ``FIT_RANGE[0]`` where it lies in
    :data:`FIT_RANGE`; NaN with fewer than three such steps.

    >>> round(relaxation_rate(2.0 * (1 + 0.9 * 0.95 ** np.arange(400)), 2.0), 6)
    0.051293
    """
    deviation = np.abs(np.asarray(x, dtype=np.float64) / settled - 1)
    below = np.flatnonzero(deviation < FIT_RANGE[0])
    end = below[0] if below.size else len(deviation)
    inside = np.flatnonzero(deviation[:end] <= FIT_RANGE[1])
    if inside.size < 3:
        return math.nan
    return float(-np.polyfit(inside, np.log(deviation[inside]), 1)[0])


def _records(rows: pd.DataFrame) -> list[Record]:
    if rows.empty:
        return []
    means = rows.groupby(["optimizer", "layer", "side"], sort=False)[["fitted", "theory"]].mean()
    return [record(EXPERIMENT, opt, f"{layer} from {side}", "rate", predicted=row["theory"],
                   measured=row["fitted"]) for (opt, layer, side), row in means.iterrows()]


def _text(rows: pd.DataFrame) -> str:
    lines = [
        f"Runs started {FACTOR:g} times above and below the equilibrium $\\|w\\|^2$ that the "
        "equilibrium experiment measured. Per layer the deviation of the unit-mean "
        "$\\|w_k\\|^2$ from its settled value decays as $r^k$ near equilibrium, $r$ theory's "
        "approach rate; $-\\log r$ (e-folds per step) is set beside the slope of "
        f"$\\log|x_k/x_\\infty - 1|$ fitted while the deviation lies in {FIT_RANGE}. Mean over "
        "seeds with 95% intervals:", ""]
    if rows.empty:
        return "\n".join([*lines, "No layer had a deviation in the fitted range."])
    grouped = rows.groupby(["optimizer", "layer", "side"], sort=False)
    table = pd.DataFrame({
        "fitted": grouped["fitted"].apply(lambda s: interval_cell(interval(s.to_numpy()))),
        "theory": grouped["theory"].mean(),
        "fitted / theory": grouped.apply(lambda r: interval_cell(interval(
            (r["fitted"] / r["theory"]).to_numpy())))})
    return "\n".join([*lines, markdown_table(table)])
