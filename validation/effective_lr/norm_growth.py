"""The weight norm's growth without weight decay (001 Sec. 4.3, Fig. 6): ``||w_k||^2 = ||w_0||^2
sqrt(1 + k/k0)``, ``k0 = ||w_0||^4 / (2 alpha^2 g^2)``, and the late-time effective LR
``alpha / ||w_k||^2 -> 1 / (g sqrt(2k))``, which does not depend on ``alpha``.

Config: SGD without decay at :data:`LRS` (two decades) on every network of the size, all from
the same small initial norm (:data:`INIT_SCALE` times the default), so that ``k >> k0`` at every
learning rate; several seeds. Runs -> per scale-invariant unit, the growth ``||w_K||^2 -
||w_0||^2`` against the law's at the unit's ``g = sqrt(E[g_k^2])`` over the run (each step adds
``2 alpha^2 g_k^2`` to ``||w||^4``, identity norm_growth_discrete_lower_bound), summed over the
layer's units -> one record per layer and seed; and over the last tenth of the run the layer's
effective LR per learning rate, its spread across them -> bounds -> table and figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise.theory import equilibrium as eq
from scalewise.validation.effective_lr.plots import grid, legend
from scalewise.validation.effective_lr.runs import (
    FixedRuns,
    Measured,
    Setting,
    config,
    measure,
    seeds,
    unit_grad_norm,
    unit_values,
)
from scalewise.validation.estimators import interval
from scalewise.validation.markdown import interval_cell, markdown_table
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings, Size

EXPERIMENT = "norm_growth"
LRS = (0.01, 0.1, 1.0)
INIT_SCALE = 0.1
"""The initial scale-invariant weights times this: ``||w_0||^2`` about 3e-3 per unit where the
default is 0.33, so ``k0`` is a few steps at every learning rate on these networks, while one
step still changes the norm by a small fraction at the largest."""
GROWTH_LIMIT = 0.05  # the growth of ||w||^2 over the run, per layer (median over seeds)
SPREAD_LIMIT = 0.05  # the late effective LR's largest deviation from its mean across LRS
LATE = 0.1  # the late effective LR is averaged over this last fraction of the run


SCALES = {
    Size.SMOKE: FixedRuns(networks=("mlp-bn",), seeds=1, steps=60),
    Size.REFERENCE: FixedRuns(networks=("mlp-bn", "mlp-wn"), seeds=2, steps=1500),
}


def growth_runs(settings: Settings, lrs: tuple[float, ...] = LRS) -> list[Measured]:
    """SGD without decay at ``lrs`` from the small initial norm, every network and seed of the
    size."""
    scale = settings.scale(SCALES)
    jobs = [(net, s, seed, config(net, s, seed=seed, steps=scale.steps,
                                  extra={"model.invariant_init_scale": INIT_SCALE}))
            for net in scale.networks for s in (Setting("sgd", lr, 0.0) for lr in lrs)
            for seed in seeds(settings, scale.seeds)]
    return measure(jobs, settings, desc="effective-lr norm growth runs")


def norm_growth(report: Report, settings: Settings) -> None:
    """The growth law and the late effective LR's independence of the learning rate."""
    measured = growth_runs(settings)
    rows = pd.DataFrame([row for m in measured for row in layer_rows(m)])
    records = [*_growth_records(rows), *_spread_records(rows)]
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.bounds += BOUNDS
    section = report.section("Norm growth without weight decay", _text(rows, records))
    section.figure("norm-growth", _figure(measured),
                   "SGD without weight decay from the same small initial norm: the layer's "
                   "effective LR over training at each learning rate (seed 0); 001 Fig. 6 "
                   "states that the late values meet (the text gives their measured spread).")


BOUNDS = [
    Bound(EXPERIMENT, "growth", GROWTH_LIMIT, optimizer="sgd-nowd", statistic="max",
          description="||w_K||^2 - ||w_0||^2 against the square-root law at each unit's RMS "
          "g, per layer and learning rate (mean over seeds), the worst"),
    Bound(EXPERIMENT, "late_effective_lr_spread", SPREAD_LIMIT, optimizer="sgd-nowd",
          description="late effective LR: largest deviation from the mean across learning "
          "rates (mean over seeds)"),
]
"""Declared before the reference run; never loosened to fit a result."""


def layer_rows(m: Measured) -> list[dict[str, object]]:
    """Per scale-invariant layer of ``m``: the measured and predicted growth summed over its
    invariant units, the late effective LR ``alpha / E||w||^2`` (unit mean) and its product with
    the late RMS ``g``."""
    lr, steps = m.run.config.optimizer.lr, m.run.config.steps
    out = []
    for layer, mask in m.compared(margin=0.0).items():
        v = unit_values(m, layer, mask)
        x0, last = v["norm_sq"][0], v["next_norm_sq"][-1]
        g = np.sqrt((unit_grad_norm(v) ** 2).mean(axis=0))
        late = unit_values(m, layer, mask, first=int(steps * (1 - LATE)))
        effective = float(np.mean(lr / late["norm_sq"].mean(axis=0)))
        late_g = float(np.sqrt((unit_grad_norm(late) ** 2).mean()))
        out.append({"layer": m.layer(layer), "lr": lr, "seed": m.seed,
                    "measured": float((last - x0).sum()),
                    "predicted": float((eq.growth_norm_sq(steps, x0, lr, g) - x0).sum()),
                    "k0": float(np.median(eq.growth_k0(x0, lr, g))),
                    "effective_lr": effective, "effective_lr_g": effective * late_g})
    return out


def _growth_records(rows: pd.DataFrame) -> list[Record]:
    means = rows.groupby(["layer", "lr"], sort=False)[["predicted", "measured"]].mean()
    return [record(EXPERIMENT, "sgd-nowd", f"{layer} lr={lr:g}", "growth",
                   predicted=row.predicted, measured=row.measured)
            for (layer, lr), row in means.iterrows()]


def _spread_records(rows: pd.DataFrame) -> list[Record]:
    """Per layer: the learning rate's late effective LR farthest from the mean across them
    (each the mean over seeds), against that mean."""
    out = []
    for layer, group in rows.groupby("layer", sort=False):
        by_lr = group.groupby("lr")["effective_lr"].mean()
        mean = float(by_lr.mean())
        far = float(by_lr.iloc[np.argmax(np.abs(by_lr.to_numpy() - mean))])
        out.append(record(EXPERIMENT, "sgd-nowd", layer, "late_effective_lr_spread",
                          predicted=mean, measured=far))
    return out


def _text(rows: pd.DataFrame, records: list[Record]) -> str:
    frame = pd.DataFrame([r.__dict__ for r in records])
    growth = frame[frame["quantity"] == "growth"]
    spread = frame[frame["quantity"] == "late_effective_lr_spread"]
    by = rows.groupby(["layer", "lr"], sort=False)
    table = pd.DataFrame({
        "k0 (median unit)": by["k0"].median(),
        "growth / law": by.apply(lambda r: _ratio_cell(r["measured"] / r["predicted"])),
        "late eff. LR": by.apply(lambda r: _ratio_cell(r["effective_lr"])),
        "late eff. LR x g": by.apply(lambda r: _ratio_cell(r["effective_lr_g"])),
    })
    g_spread = rows.groupby(["layer", "lr"])["effective_lr_g"].mean().groupby("layer").agg(
        lambda s: float(np.max(np.abs(s / s.mean() - 1))))
    return "\n".join([
        "SGD without weight decay from the same small initial norm at learning rates "
        f"{', '.join(f'{lr:g}' for lr in LRS)}. Each step adds "
        "$\\alpha^2 g_k^2/\\|w_k\\|^2$ to $\\|w\\|^2$ (001 Eq. 19), so $\\|w_k\\|^2 = \\|w_0\\|^2"
        "\\sqrt{1 + k/k_0}$ with $k_0 = \\|w_0\\|^4/(2\\alpha^2 g^2)$ (001 Sec. 4.3); the law is "
        "evaluated per unit at its $g = \\sqrt{\\mathbb{E}[g_k^2]}$ over the run, and the "
        "growth $\\|w_K\\|^2 - \\|w_0\\|^2$ (not the level) is compared, summed over a layer's "
        "units. Late in training the effective LR tends to $1/(g\\sqrt{2k})$, whatever "
        "$\\alpha$ (001 Fig. 6); it is measured over the last "
        f"{LATE:.0%} of each run. Mean over seeds with 95% intervals:",
        "", markdown_table(table),
        "",
        f"Growth against the law: largest error {growth['rel_error'].max():.3g} (bound "
        f"{GROWTH_LIMIT:g}). Late effective LR: largest deviation from the mean across learning "
        f"rates {spread['rel_error'].max():.3g} (bound {SPREAD_LIMIT:g}); the late effective LR "
        "times the late RMS $g$, which the law says is the same for every $\\alpha$, deviates "
        f"by at most {g_spread.max():.3g}, so "
        + ("the spread comes mostly from $g$ differing between the runs."
           if g_spread.max() < spread["rel_error"].max() / 2 else
           "the spread does not come from $g$ alone."),
    ])


def _ratio_cell(values: pd.Series) -> str:
    return interval_cell(interval(values.to_numpy()))


def _figure(measured: list[Measured]) -> Figure:
    first = [m for m in measured if m.seed == min(x.seed for x in measured)]
    layers = list(dict.fromkeys(m.layer(layer) for m in first for layer in m.compared(0.0)))
    fig, axes = grid(["effective_lr"], layers)
    for ax, name in zip(axes[0], layers):
        for i, m in enumerate(m for m in first if name.startswith(m.network + "/")):
            series = m.sums("effective_lr")[name.split("/", 1)[1]]
            ax.plot(series.index, series.to_numpy(), color=f"C{i}", lw=1,
                    label=f"lr {m.run.config.optimizer.lr:g}")
        ax.set(title=name, xlabel="step", ylabel="effective LR", xscale="log", yscale="log")
        legend(ax)
    return fig
