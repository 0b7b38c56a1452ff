"""Only the product of learning rate and weight decay matters (001 Eq. 24-25; the ground of
mechanism I, 004 Sec. 4.1): SGD's equilibrium effective LR times the gradient norm,
``sqrt(alpha lam (2 - alpha lam))``, depends on ``alpha lam`` alone.

Config: SGD at the equilibrium experiment's ``alpha lam`` split three ways (the learning rate
times :data:`SPLITS`, the weight decay divided by it), every network and seed of the size.
Runs -> per settled compared layer, ``alpha sum_i g_i / sum_i E||w_i||^2`` over the settled
window -> per split and layer the mean over seeds against the middle split's -> a bound
-> a table with 95% intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalewise.validation.effective_lr.equilibrium import (
    SCALES,
    SETTINGS,
    scaled,
    settled_estimates,
)
from scalewise.validation.effective_lr.runs import Measured, config, measure, seeds, unit_grad_norm
from scalewise.validation.effective_lr.settled import window_values
from scalewise.validation.estimators import interval
from scalewise.validation.markdown import interval_cell, markdown_table
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings

EXPERIMENT = "product_only"
SPLITS = (0.1, 1.0, 10.0)  # the learning rate's factor; the weight decay's is its inverse
LIMIT = 0.03  # each split's effective LR x g against the middle split's, per layer, the worst


def product_only(report: Report, settings: Settings) -> None:
    """SGD's equilibrium effective LR x g under three splits of one ``alpha lam``."""
    base = scaled(next(s for s in SETTINGS if s.optimizer == "sgd"), settings)
    scale = settings.scale(SCALES)
    jobs = [(net, s, seed, config(net, s, seed=seed, steps=s.steps(scale.min_steps)))
            for net in scale.networks for s in (base.scaled(f, 1 / f) for f in SPLITS)
            for seed in seeds(settings, scale.seeds)]
    measured = measure(jobs, settings, desc="effective-lr product-only runs")
    estimates, unsettled = settled_estimates(measured)
    rows = pd.DataFrame([{"lr": m.setting.lr, "weight_decay": m.setting.weight_decay,
                          "layer": m.layer(layer), "seed": m.seed,
                          "value": effective_lr_times_g(m, layer)}
                         for m, layer, _ in estimates])
    records = _records(rows, base.lr)
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.bounds.append(Bound(EXPERIMENT, "effective_lr", LIMIT, optimizer="sgd",
                               description="equilibrium effective LR x g of each split against "
                               "the middle one's, per layer (mean over seeds), the worst"))
    report.section("Only the product of learning rate and weight decay",
                   _text(rows, records, base, unsettled))


def effective_lr_times_g(m: Measured, layer: str) -> float:
    """``alpha sum_i g_i / sum_i E||w_i||^2`` over the settled window, ``g_i =
    sqrt(E[g_i^2])``: at equilibrium each unit's ``||w_i||^2`` is proportional to its ``g_i``
    (001 Eq. 24), so this ratio of sums is every unit's ``alpha g_i / ||w_i||^2``, and units
    of small ``g``, slow to settle, do not rule it."""
    v = window_values(m, layer, m.compared()[layer])
    x = v["norm_sq"].mean(axis=0)
    g = np.sqrt((unit_grad_norm(v) ** 2).mean(axis=0))
    return float(m.setting.lr * g.sum() / x.sum())


def _records(rows: pd.DataFrame, middle: float) -> list[Record]:
    if rows.empty:
        return []
    means = rows.groupby(["layer", "lr"])["value"].mean()
    return [record(EXPERIMENT, "sgd", f"{layer} lr={lr:g}", "effective_lr",
                   predicted=means.loc[(layer, middle)], measured=value)
            for (layer, lr), value in means.items()
            if lr != middle and (layer, middle) in means.index]


def _text(rows: pd.DataFrame, records: list[Record], base, unsettled: list[str]) -> str:
    theory = float(base.equilibrium(grad_norm=1.0)["effective_lr"])
    lines = [
        f"SGD at $\\alpha\\lambda = {base.lr * base.weight_decay:.3g}$ split three ways "
        f"(learning rate {', '.join(f'{base.lr * f:g}' for f in SPLITS)}, weight decay the "
        "inverse). At equilibrium the effective LR times $g$ is "
        "$\\sqrt{\\alpha\\lambda(2-\\alpha\\lambda)}$ "
        f"= {theory:.4g} whatever the split (001 Eq. 25); measured over each settled window as "
        "$\\alpha \\sum_i g_i/\\sum_i\\mathbb{E}\\|w_i\\|^2$. Mean over seeds with its 95% "
        "interval:", ""]
    if rows.empty:
        return "\n".join([*lines, "No layer settled.", *unsettled])
    table = rows.groupby(["layer", "lr"])["value"].apply(
        lambda s: interval_cell(interval(s.to_numpy()), 4)).unstack("lr")
    worst = max((r.rel_error for r in records), default=float("nan"))
    lines += [markdown_table(table), "",
              f"The largest departure of a split from the middle one is {worst:.2%} (bound "
              f"{LIMIT:.0%}); theory's value is met within "
              f"{float(np.max(np.abs(rows['value'] / theory - 1))):.2%} by every layer and seed."]
    if unsettled:
        lines += ["", f"Not settled ({len(unsettled)}), left out:", "",
                  *(f"- {line}" for line in unsettled)]
    return "\n".join(lines)
