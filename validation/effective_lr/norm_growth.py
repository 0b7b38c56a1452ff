"""The square-root growth of the weight norm without weight decay (001 Sec. 4.3):
``||w_k||^2 = ||w_0||^2 sqrt(1 + k/k0)`` and the effective LR ``alpha_hat_0 / sqrt(1 + k/k0)``.

Config: the SGD runs without decay of :mod:`.runs`. Runs -> per scale-invariant layer, the law
at the run's RMS gradient norm beside the measured curves, and ``k0`` fitted -> records ->
a bound on ``||w||^2`` -> text and figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise.theory import equilibrium as eq
from scalewise.validation.effective_lr.plots import grid, plot_pair
from scalewise.validation.effective_lr.runs import (
    NO_DECAY,
    RECORD_POINTS,
    Measured,
    base_quantities,
    curve_records,
    equilibrium_runs,
    grad_norms,
    invariant,
    series,
    source_curves,
)
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import Bound, Record, Report, record, spread_steps
from scalewise.validation.suite import Settings

EXPERIMENT = "norm_growth"
LIMIT = 0.05  # ||w||^2 along the law: max relative error
Panel = tuple[str, pd.Series, pd.Series]  # (layer, measured ||w||^2, the law)


def norm_growth(report: Report, settings: Settings) -> None:
    """SGD without weight decay: ``||w_k||^2 = ||w_0||^2 sqrt(1 + k/k0)`` and the effective LR
    ``alpha_hat_0 / sqrt(1 + k/k0)`` (001 Sec. 4.3), ``k0 = ||w_0||^4 / (2 alpha^2 g^2)`` at the
    run's root-mean-square measured gradient norm (each step adds ``2 alpha^2 g_k^2`` to
    ``||w||^4``, identity norm_growth_discrete_lower_bound), against the measured curves and the
    fitted ``k0``."""
    measured = [m for m in equilibrium_runs(settings) if m.label == "sgd" + NO_DECAY]
    records, curves, panels = [], [], []
    for m in measured:
        for layer in invariant(m):
            layer_records, panel = compare_layer(m, layer)
            records += layer_records
            panels.append(panel)
            name, x, law = panel
            curves.append(source_curves(EXPERIMENT, m.label, name, "norm_sq",
                                        {"measured": x, "predicted": law}))
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.add_curves(pd.concat(curves, ignore_index=True))
    report.bounds.append(Bound(EXPERIMENT, "norm_sq", LIMIT, optimizer="sgd" + NO_DECAY,
                               description="||w||^2 along the square-root law of 001 Sec. 4.3 "
                               "at the RMS measured gradient norm (max error)"))
    section = report.section("Norm growth without weight decay", text(records))
    section.figure("norm-growth", figure(panels),
                   "SGD without weight decay: measured ||w||^2 (solid) and the square-root law "
                   "with theory's k0 at the RMS measured gradient norm (dashed).")


def compare_layer(m: Measured, layer: str) -> tuple[list[Record], Panel]:
    """``norm_sq@k``, ``effective_lr@k`` and ``k0`` records of one layer, and its panel."""
    lr = m.run.config.optimizer.lr
    x = series(m.table, layer, "norm_sq", "measured")
    g = float(np.sqrt((grad_norms(m)[layer] ** 2).mean()))
    law = pd.Series(eq.growth_norm_sq(x.index.to_numpy(), x.iloc[0], lr, g), index=x.index)
    law_lr = pd.Series(eq.effective_lr(law.to_numpy(), lr), index=x.index)
    name = f"{m.network}/{layer}"
    steps = spread_steps(0, len(x) - 1, RECORD_POINTS)
    records = [
        *curve_records(EXPERIMENT, m.label, name, "norm_sq", law, x, steps),
        *curve_records(EXPERIMENT, m.label, name, "effective_lr", law_lr,
                       series(m.table, layer, "effective_lr", "measured"), steps),
        record(EXPERIMENT, m.label, name, "k0", predicted=eq.growth_k0(x.iloc[0], lr, g),
               measured=fit_growth_k0(x.to_numpy())),
    ]
    return records, (name, x, law)


def fit_growth_k0(norm_sq: np.ndarray) -> float:
    """``k0`` of ``x_k = x_0 sqrt(1 + k/k0)`` (001 Sec. 4.3) by least squares in the variables
    where the law is linear, ``(x_k / x_0)^2 - 1 = k / k0`` (a line through the origin).

    >>> round(fit_growth_k0(2.0 * np.sqrt(1 + np.arange(50) / 30.0)), 6)
    30.0
    """
    k = np.arange(len(norm_sq), dtype=float)
    y = eq.growth_linear_variable(norm_sq, norm_sq[0])  # = k / k0 along the law
    return float(np.sum(k * k) / np.sum(k * y))


def text(records: list[Record]) -> str:
    frame = base_quantities(records)
    k0 = frame[frame["quantity"] == "k0"][["layer", "predicted", "measured", "rel_error"]]
    curves = frame[frame["base"] != "k0"].groupby(["layer", "base"])["rel_error"].max().unstack()
    return (
        "SGD runs without weight decay. Each step adds alpha^2 g^2 / ||w||^2 to ||w||^2 "
        "(001 Eq. 19, exact), whose continuous solution is ||w_k||^2 = ||w_0||^2 sqrt(1 + k/k0) "
        "with k0 = ||w_0||^4 / (2 alpha^2 g^2) (theory.equilibrium, identity "
        "norm_growth_sqrt_law), and the effective LR decays as alpha_hat_0 / sqrt(1 + k/k0). "
        "The law assumes a constant g; since each step adds 2 alpha^2 g_k^2 to ||w||^4 (to "
        "leading order, identity norm_growth_discrete_lower_bound), it is evaluated at the "
        "root mean square over the run of the measured gradient norm at unit weight norm. "
        "k0 is also fitted to the measured curve by least squares "
        "on (x_k/x_0)^2 - 1 = k/k0.\n\nk0, theory vs fitted:\n\n"
        + markdown_table(k0, index=False)
        + "\n\nLargest relative error along the curves:\n\n" + markdown_table(curves)
        + "\n\nWhere the law misses: on digits the gradient norm falls by several times during "
        "training (the loss goes down), so the growth is front-loaded: the real norm grows "
        "faster early and slower late than the law at one constant g, and the fitted k0, "
        "a least-squares average over the curve, differs from theory's at the RMS g by that "
        "much. ||w||^2 changes by tens of percent only, so the curves agree at the percent "
        "level. The measured effective LR is the unit mean of alpha / ||w_i||^2, which exceeds "
        "alpha over the unit-mean ||w||^2 by the spread of the units' norms (Jensen), so it "
        "sits above the law by that spread; only ||w||^2 is bounded.")


def figure(panels: list[Panel]) -> Figure:
    fig, axes = grid(["norm_sq"], [name for name, *_ in panels])
    for ax, (name, x, law) in zip(axes[0], panels):
        plot_pair(ax, x, law, "measured / law", "C0")
        ax.set(title=name, xlabel="step", ylabel="||w||^2 (unit mean)", yscale="log")
    return fig
