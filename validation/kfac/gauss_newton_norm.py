"""004 Fig. 5: the K-FAC Gauss-Newton norm against theory's ``(L+1) ||J||_F^2`` across the
family of MLPs without normalization (004 Lemma 2, Theorem 1), with the exact case (bias-free
linear networks, whitened inputs, :mod:`.gauss_newton`) as the control.

Config: the family of :mod:`.runs` and the untrained networks of :data:`SCALES`. Runs -> per
network the measured and the predicted norm -> records, and the correlation of their logs ->
bounds (exact on the control, a correlation on the trained family) -> text and figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise.validation.kfac import runs
from scalewise.validation.kfac.gauss_newton import network_family_norms
from scalewise.validation.kfac.runs import (
    DAMPING,
    KFAC_LR,
    SGD_LR,
    WEIGHT_DECAY,
    family_table,
    final_curves,
    label,
)
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings, Size

EXPERIMENT = "gauss_newton_norm"
EXACT = 1e-9  # float64 rounding of the control
CORRELATION_LIMIT = 0.1  # rel. error of the logs' correlation against 1: at least 1 / 1.1


@dataclass(frozen=True)
class Scale:
    init_depths: tuple[int, ...]  # the untrained linear/ReLU family (exact control)


SCALES = {Size.SMOKE: Scale(init_depths=(0, 1, 2)),
               Size.REFERENCE: Scale(init_depths=(0, 1, 2, 3, 4))}


def gauss_newton_norm(report: Report, settings: Settings) -> None:
    """004 Fig. 5: the K-FAC Gauss-Newton norm against ``(L+1) ||J||_F^2`` across the family;
    the exact case (bias-free linear networks, whitened inputs) as the control."""
    table = family_table(settings)
    init = network_family_norms(settings.scale(SCALES).init_depths, seed=settings.seed)
    correlation = log_correlation(table["theory_kfac_gn_norm"].to_numpy(),
                                  table["kfac_gn_norm"].to_numpy())
    report.add(*control_records(init), *family_records(table),
               record(EXPERIMENT, "all", "", "log_correlation", predicted=1.0,
                      measured=correlation))
    report.bounds += bounds()
    section = report.section("Mechanism II: K-FAC Gauss-Newton norm against the Jacobian norm",
                             text(settings, table, init, report.records, correlation))
    section.figure("kfac_gn_norm_vs_jacobian", figure(table, init),
                   "K-FAC Gauss-Newton norm (measured) against (L+1)||J||_F^2 (theory's "
                   "prediction); the line is equality. Crosses: untrained bias-free linear "
                   "networks with whitened inputs, where theory is exact.")
    report.add_curves(final_curves(EXPERIMENT, table, {
        "kfac_gn_norm": ("kfac_gn_norm", "measured"),
        "theory_kfac_gn_norm": ("kfac_gn_norm", "predicted")}))


def control_records(init: pd.DataFrame) -> list[Record]:
    """Per untrained network: its K-FAC GN norm and GN norm against theory's ratios times its
    Jacobian norm (label ``init-<activation>``)."""
    return [record(EXPERIMENT, f"init-{row.activation}", f"d{row.L}-w4", quantity,
                   predicted=getattr(row, ratio) * row.jacobian_sq_norm,
                   measured=getattr(row, quantity))
            for row in init.itertuples()
            for quantity, ratio in (("kfac_gn_norm", "theory_kfac_ratio"),
                                    ("gn_norm", "theory_gn_ratio"))]


def family_records(table: pd.DataFrame) -> list[Record]:
    """Per trained network: its K-FAC GN norm against ``(L+1) ||J||_F^2``."""
    return [record(EXPERIMENT, row.label, f"d{row.depth}-w{row.width}", "kfac_gn_norm",
                   predicted=row.theory_kfac_gn_norm, measured=row.kfac_gn_norm)
            for row in table.itertuples()]


def log_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of ``log x`` and ``log y``.

    >>> round(log_correlation(np.array([1.0, 10.0, 100.0]), np.array([2.0, 20.0, 200.0])), 12)
    1.0
    """
    return float(np.corrcoef(np.log(x), np.log(y))[0, 1])


def bounds() -> list[Bound]:
    return [
        Bound(EXPERIMENT, "kfac_gn_norm", EXACT, optimizer="init-linear",
              description="K-FAC GN norm = (L+1)||J||_F^2 exactly for bias-free linear "
                          "networks with whitened inputs (004 Theorem 1)"),
        Bound(EXPERIMENT, "gn_norm", EXACT, optimizer="init-linear",
              description="GN norm = (L+1)^2 ||J||_F^2 exactly in the same case (004 Lemma 2)"),
        Bound(EXPERIMENT, "log_correlation", CORRELATION_LIMIT,
              description="trained networks: corr(log K-FAC GN norm, log (L+1)||J||_F^2) >= "
                          f"{1 / (1 + CORRELATION_LIMIT):.2f} (004 Fig. 5: highly correlated)"),
    ]


def _worst(records: list[Record], optimizer: str) -> float:
    return max(r.rel_error for r in records
               if r.experiment == EXPERIMENT and r.optimizer == optimizer)


def _skipped_text(table: pd.DataFrame) -> str:
    skipped = int(table["skipped"].iloc[0]) if len(table) else 0
    return f" {skipped} run(s) diverged and are left out." if skipped else ""


def text(settings: Settings, table: pd.DataFrame, init: pd.DataFrame, records: list[Record],
         correlation: float) -> str:
    scale = settings.scale(runs.SCALES)
    ratio = table["kfac_gn_norm"] / table["theory_kfac_gn_norm"]
    gap_correlation = float(np.corrcoef(np.log(table["jacobian_sq_norm"]),
                                        table["test_loss"] - table["train_loss"])[0, 1])
    relu = init[init["activation"] == "relu"]
    relu_error = (relu["kfac_ratio"] / relu["theory_kfac_ratio"] - 1).abs().max()
    return (
        "**Measured.** MLPs without normalization on digits, hidden layers "
        f"{list(scale.depths)} x widths {list(scale.widths)} (ReLU, with biases), trained "
        f"{scale.family_steps} steps (batch 128) with SGD (lr {SGD_LR:g}), K-FAC-G and K-FAC-F "
        f"(lr {KFAC_LR:g}, damping {DAMPING:g}, factors averaged with decay 0.95), each "
        "without weight "
        f"decay, with decoupled decay and with L2 (lambda = {WEIGHT_DECAY:g}), no momentum. At "
        "the end of training the costly probes measure, on 64 training images in eval mode, "
        "``||J||_F^2 = E_x ||dz/dx||_F^2`` and the K-FAC Gauss-Newton norm "
        "``sum_l <W_l, S_l W_l A_{l-1}>`` with the exact expectation over the sampled "
        "pseudo-gradients (`models.probes.kfac_gn_norm`). Each record compares one network "
        "(its `layer` names the network: hidden layers and width).\n\n"
        "**Predicted.** `theory.kfac.KFAC_GN_NORM` = (L+1)||J||_F^2 with L+1 weight matrices "
        "(004 Lemma 2 and Theorem 1; 000 slides, Mechanism 2), exact for bias-free *linear* "
        "networks with whitened inputs. As the control, the untrained family of "
        "`validation.kfac.gauss_newton` (bias-free, width 4, whitened inputs, float64) meets it "
        "to rounding: records `init-linear`, worst relative error "
        f"{_worst(records, 'init-linear'):.1e}. For ReLU networks at initialization "
        f"the same ratio misses by up to {relu_error:.0%} (records `init-relu`).\n\n"
        f"**Result.** Over the {len(table)} trained networks the Pearson correlation of the "
        f"logs is **{correlation:.3f}**; the ratio measured/predicted ranges "
        f"{ratio.min():.2f} to {ratio.max():.2f} (median {ratio.median():.2f}). Theory's "
        "proportionality carries over as a correlation, not as the constant: the trained "
        "networks are nonlinear, have biases (the network is then not homogeneous in its "
        "parameters, so 004 Lemma 1 fails) and digits are not whitened, each of which breaks "
        "Theorem 1's equality; the K-FAC GN norm comes out "
        f"{ratio.median():.1f} times the prediction at the median. As in 004 Fig. 5 the "
        "Jacobian norm also tracks the generalization gap (test minus training loss): "
        f"correlation of log ||J||_F^2 with the gap {gap_correlation:.3f}."
        + _skipped_text(table))


MARKERS = {"none": "o", "decoupled": "s", "l2": "^"}
COLORS = {"sgd": "tab:gray", "kfac-g": "tab:blue", "kfac-f": "tab:orange"}


def figure(table: pd.DataFrame, init: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for (optimizer, mode), group in table.groupby(["optimizer", "wd_mode"]):
        ax.scatter(group["theory_kfac_gn_norm"], group["kfac_gn_norm"], c=COLORS[optimizer],
                   marker=MARKERS[mode], label=label(optimizer, mode), alpha=0.8)
    linear = init[init["activation"] == "linear"]
    ax.scatter(linear["theory_kfac_ratio"] * linear["jacobian_sq_norm"], linear["kfac_gn_norm"],
               c="k", marker="x", label="init, linear (exact)")
    values = np.concatenate([table["theory_kfac_gn_norm"], table["kfac_gn_norm"],
                             linear["kfac_gn_norm"]])
    span = np.array([values.min() / 2, values.max() * 2])
    ax.plot(span, span, "k--", lw=1, label="theory: equality")
    ax.set(xscale="log", yscale="log", xlabel="predicted (L+1) ||J||_F^2",
           ylabel="measured K-FAC GN norm", title="004 Fig. 5 on digits MLPs")
    ax.legend(fontsize=7, ncol=2)
    return fig
