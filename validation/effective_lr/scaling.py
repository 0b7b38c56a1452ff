"""The scaling law of the equilibrium angular update: ``theta ~ sqrt(2 eta lam)`` for SGD and
AdamW, ``sqrt(2 eta lam / (1 + mu))`` for momentum SGD (001 Eq. 24-25;
:mod:`scalewise.theory.equilibria`), a slope of 1/2 in log-log.

Config: SGD, momentum SGD and AdamW on the batch-norm digits MLP, the weight decay times each of
:data:`FACTORS` (two decades of ``eta lam``), seeds; each run lasts theory's twelve time
constants, per-unit records every :data:`UNIT_EVERY` steps. Runs -> per settled compared layer
the angular update ``arccos(E<w_k, w_{k+1}> / E||w_k||^2)`` over its window (ratio of sums) and
theory's at the layer's measured ``g`` -> per seed the least-squares line of ``log theta``
against ``log(eta lam)`` over the layers and points, measured and theory's -> slope and
prefactor with 95% intervals over seeds -> bounds -> a figure with theory's line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise.validation.effective_lr.equilibrium import SETTINGS, scaled, settled_estimates
from scalewise.validation.effective_lr.plots import grid, legend
from scalewise.validation.effective_lr.runs import MIN_STEPS, config, measure, seeds
from scalewise.validation.estimators import interval
from scalewise.validation.markdown import interval_cell, markdown_table
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings, Size

EXPERIMENT = "scaling"
OPTIMIZERS = ("sgd", "sgdm", "adamw")
NETWORK = "mlp-bn"
UNIT_EVERY = 10
SLOPE_LIMIT = 0.06  # relative: +-0.03 on a slope of 0.5
PREFACTOR_LIMIT = 0.03


@dataclass(frozen=True)
class Scale:
    optimizers: tuple[str, ...]
    factors: tuple[float, ...]  # on the equilibrium setting's weight decay
    seeds: int
    min_steps: int


SCALES = {
    Size.SMOKE: Scale(optimizers=("sgd",), factors=(1.0, 3.0), seeds=1, min_steps=60),
    Size.REFERENCE: Scale(optimizers=OPTIMIZERS, factors=tuple(10 ** np.linspace(-1, 1, 5)),
                          seeds=2, min_steps=MIN_STEPS),
}


def scaling(report: Report, settings: Settings) -> None:
    """The fitted log-log slope and prefactor of the equilibrium angular update against
    ``eta lam``, measured and theory's."""
    scale = settings.scale(SCALES)
    jobs = [(NETWORK, s, seed, config(NETWORK, s, seed=seed, steps=s.steps(scale.min_steps),
                                        unit_every=UNIT_EVERY))
            for base in SETTINGS if base.optimizer in scale.optimizers
            for s in (scaled(base, settings).scaled(weight_decay=f) for f in scale.factors)
            for seed in seeds(settings, scale.seeds)]
    measured = measure(jobs, settings, desc="effective-lr scaling runs")
    estimates, unsettled = settled_estimates(measured)
    points = pd.DataFrame([{"optimizer": m.setting.optimizer, "seed": m.seed,
                            "layer": m.layer(layer),
                            "product": m.setting.lr * m.setting.weight_decay,
                            "measured": e.measured["angular_update"],
                            "predicted": e.predicted["angular_update"]}
                           for m, layer, e in estimates], columns=POINTS)
    fits = fitted(points)
    records = _records(fits)
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.bounds += BOUNDS
    section = report.section("The scaling law of the angular update",
                             _text(fits, unsettled, scale.factors))
    section.figure("scaling", _figure(points),
                   "Equilibrium angular update against eta lam: theory (line) and the settled "
                   "layers of every seed (points).")


BOUNDS = [
    *(Bound(EXPERIMENT, "slope", SLOPE_LIMIT, optimizer=o,
            description="log-log slope of the angular update against eta lam (mean over "
            "seeds), relative: +-0.03 at 1/2") for o in OPTIMIZERS),
    *(Bound(EXPERIMENT, "prefactor", PREFACTOR_LIMIT, optimizer=o,
            description="the fitted line's value at eta lam = 1e-3 against theory's (mean over "
            "seeds)") for o in OPTIMIZERS),
]
"""Declared before the reference run; never loosened to fit a result."""

POINTS = ("optimizer", "seed", "layer", "product", "measured", "predicted")
"""The columns of the settled points the lines are fitted through."""
AT = 1e-3
"""The prefactor is the fitted line's angular update at ``eta lam = AT`` (inside the swept
range, where the intercept at 1 would extrapolate)."""


def fitted(points: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer and seed, the least-squares slope and value at :data:`AT` of
    ``log theta`` against ``log(eta lam)``, measured and theory's (NaN with fewer than two
    distinct products)."""
    rows = []
    for (opt, seed), group in points.groupby(["optimizer", "seed"], sort=False):
        row = {"optimizer": opt, "seed": seed}
        for source in ("measured", "predicted"):
            slope, at = _line(group["product"].to_numpy(), group[source].to_numpy())
            row.update({f"slope_{source}": slope, f"prefactor_{source}": at})
        rows.append(row)
    return pd.DataFrame(rows, columns=["optimizer", "seed", *(f"{q}_{s}" for s in (
        "measured", "predicted") for q in ("slope", "prefactor"))])


def _line(product: np.ndarray, theta: np.ndarray) -> tuple[float, float]:
    if len(np.unique(product)) < 2:
        return np.nan, np.nan
    slope, intercept = np.polyfit(np.log(product), np.log(theta), 1)
    return float(slope), float(np.exp(intercept + slope * np.log(AT)))


def _records(fits: pd.DataFrame) -> list[Record]:
    means = fits.groupby("optimizer", sort=False).mean(numeric_only=True)
    return [record(EXPERIMENT, opt, NETWORK, quantity, predicted=row[f"{quantity}_predicted"],
                   measured=row[f"{quantity}_measured"])
            for opt, row in means.iterrows() for quantity in ("slope", "prefactor")]


def _text(fits: pd.DataFrame, unsettled: list[str], factors: tuple[float, ...]) -> str:
    lines = [
        f"SGD, momentum SGD and AdamW on {NETWORK}, the weight decay times "
        f"{', '.join(f'{f:.3g}' for f in factors)}. Per settled layer the angular update "
        "$\\arccos(\\mathbb{E}\\langle w_k, w_{k+1}\\rangle/\\mathbb{E}\\|w_k\\|^2)$; per seed a "
        "least-squares line of $\\log\\theta$ against $\\log\\eta\\lambda$ through every settled "
        "layer, and the same line through theory's values at the same points. Slope and the "
        f"line's value at $\\eta\\lambda = {AT:g}$, mean over seeds with 95% intervals:", ""]
    if fits.empty:
        return "\n".join([*lines, "No layer settled.", *unsettled])
    table = pd.DataFrame({
        column: fits.groupby("optimizer", sort=False)[column].apply(
            lambda s: interval_cell(interval(s.to_numpy()), 4))
        for column in ("slope_measured", "slope_predicted", "prefactor_measured",
                       "prefactor_predicted")})
    lines.append(markdown_table(table))
    if unsettled:
        lines += ["", f"Not settled ({len(unsettled)}), left out:", "",
                  *(f"- {line}" for line in unsettled)]
    return "\n".join(lines)


def _figure(points: pd.DataFrame) -> Figure:
    optimizers = list(dict.fromkeys(points["optimizer"])) or list(OPTIMIZERS)
    fig, axes = grid(["angular_update"], optimizers)
    for ax, opt in zip(axes[0], optimizers):
        rows = points[points["optimizer"] == opt].sort_values("product")
        theory = rows.groupby("product")["predicted"].mean()
        ax.plot(theory.index, theory.to_numpy(), "-", color="0.6", lw=4, alpha=0.6,
                label="theory")
        ax.plot(rows["product"], rows["measured"], "o", ms=3, color="C0", label="measured")
        ax.set(title=opt, xlabel="eta lam", ylabel="angular update (rad)")
        if not rows.empty:  # a log axis needs data
            ax.set(xscale="log", yscale="log")
        legend(ax)
    return fig
