"""The knock-out experiment (001 Sec. 4.2, after Santurkar et al. 2018; 000 slides
'Normalization'): batch norm followed by a random per-batch affine transform that re-introduces
shifted and rescaled statistics, against plain batch norm, batch norm after the ReLU and no
normalization. The notes' claims: the knock-out leaves optimization essentially as fast as
batch norm, and batch norm before the activation works at least as well as after.

Config: :data:`VARIANTS` (options of :class:`models.config.ModelConfig`), each at every
learning rate of :data:`LEARNING_RATES`, several seeds. Runs (:func:`models.train`) -> per run
its smoothed training loss and the first step it reaches the loss threshold of
:mod:`~scalewise.validation.ics.runs` -> each variant at its best learning rate (fewest steps,
mean over seeds) -> the claims as one-sided bounds on the seed-paired ratio of steps, declared
before the reference run (:data:`BOUNDS`; the margins ``AS_FAST`` of
:mod:`~scalewise.validation.ics.runs` and :data:`AT_LEAST_AS_WELL`), and records of the losses
against batch norm's -> text, table and figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scalewise.validation.estimators import Interval, interval
from scalewise.validation.ics.runs import (
    AS_FAST,
    LOSS_THRESHOLD,
    SMOOTHING,
    Grid,
    best_rates,
    config,
    curves_figure,
    final,
    losses,
    sizes,
    smoothed,
    steps_table,
    steps_to,
    steps_to_threshold,
)
from scalewise.validation.markdown import (
    counted,
    grid_ends,
    interval_cell,
    listing,
    markdown_table,
)
from scalewise.validation.report import (
    Bound,
    Record,
    Report,
    curve_frame,
    record,
    spread_steps,
)
from scalewise.validation.suite import Settings, Size, StepsAndSeeds, train_groups

EXPERIMENT = "knock-out"
LEARNING_RATES = (0.03, 0.1, 0.3, 1.0)
CHECKS = 12  # steps of a curve at which it is recorded
SPREAD = 0.5  # the knock-out's gamma ~ U(1 - SPREAD, 1 + SPREAD)
NETWORK = {"model.width": 64, "model.depth": 3, "optimizer.name": "sgd"}
VARIANTS: dict[str, dict[str, Any]] = {
    "bn": {"model.norm": "batch"},
    "knockout": {"model.norm": "batch", "model.knockout_spread": SPREAD,
                 "model.knockout_shift": 0.3},
    "knockout-strong": {"model.norm": "batch", "model.knockout_spread": SPREAD,
                        "model.knockout_shift": 1.0},
    "bn-after": {"model.norm": "batch", "model.norm_position": "after"},
    "none": {"model.norm": "none"},
}
"""Variant -> its changes to :data:`NETWORK`; the first, plain BN, is the prediction."""
AT_LEAST_AS_WELL = 1.05
""""At least as well": BN before the ReLU needs at most this many times the steps of BN after."""
BOUNDS = [
    Bound(EXPERIMENT, "steps_ratio", 1 - 1 / AS_FAST, optimizer="sgd+knockout",
          side="at most", description=(
              f"the mild knock-out reaches the loss threshold in at most {AS_FAST:g}x BN's "
              "steps, each at its best learning rate (001 Sec. 4.2): the upper end of the 95% "
              "interval of the seed-paired ratio")),
    Bound(EXPERIMENT, "before_after_ratio", 1 - 1 / AT_LEAST_AS_WELL, optimizer="sgd+bn-after",
          side="at most", description=(
              f"BN before the ReLU reaches the threshold in at most {AT_LEAST_AS_WELL:g}x the "
              "steps of BN after it, each at its best learning rate (001 Sec. 4.2): the upper "
              "end of the 95% interval of the seed-paired ratio")),
]

SCALES = {Size.SMOKE: StepsAndSeeds(steps=120, seeds=2),
          Size.REFERENCE: StepsAndSeeds(steps=1500, seeds=5)}

def knock_out(report: Report, settings: Settings) -> None:
    """Knock-out after BN, BN before vs after the ReLU, no normalization, over a learning-rate
    grid."""
    grid = variant_runs(settings)
    steps = steps_to_threshold(grid, LOSS_THRESHOLD)
    best = best_rates(steps)
    runs = {v: grid[v, best[v]] for v in VARIANTS}
    curves = {v: np.mean([smoothed(losses(run)) for run in group], axis=0)
              for v, group in runs.items()}
    clean = {v: float(np.mean([final(run, "train_loss") for run in group]))
             for v, group in runs.items()}
    ratios = paired_ratios({v: steps[v, best[v]] for v in VARIANTS})
    report.add_runs(run for group in grid.values() for run in group)
    report.add(*records(curves, clean), *ratio_records(ratios))
    report.bounds += BOUNDS
    for variant, curve in curves.items():
        report.add_curves(curve_frame(EXPERIMENT, f"sgd+{variant}", "", "train_loss",
                                      "measured", np.arange(len(curve)), curve))
    section = report.section("The knock-out experiment (001 Sec. 4.2, 000 'Normalization')",
                             text(settings, steps, best, curves, clean, ratios))
    section.figure("ics_knockout_curves", curves_figure(
        {f"sgd+{v} (lr {best[v]:g})": c for v, c in curves.items()}, LOSS_THRESHOLD),
        "Smoothed training loss, mean over seeds, each variant at its best learning rate: BN, "
        "BN with the knock-out transform, BN after the ReLU and no normalization.")


def variant_runs(settings: Settings) -> Grid:
    """Per variant and learning rate, its runs over the seeds of the size."""
    scale = settings.scale(SCALES)
    seeds = range(settings.seed, settings.seed + scale.seeds)
    return train_groups({(v, lr): [config(seed, scale.steps,
                                          {**NETWORK, **changes, "optimizer.lr": lr})
                                   for seed in seeds]
                         for v, changes in VARIANTS.items() for lr in LEARNING_RATES},
                        settings, desc="ics: knock-out")


def paired_ratios(steps: dict[str, np.ndarray]) -> dict[str, Interval]:
    """The claims' ratios of steps to the threshold, seed by seed, with their 95% intervals:
    each knock-out over BN (``steps_ratio``) and BN before over BN after
    (``before_after_ratio``)."""
    return {"knockout": interval(steps["knockout"] / steps["bn"]),
            "knockout-strong": interval(steps["knockout-strong"] / steps["bn"]),
            "bn-after": interval(steps["bn"] / steps["bn-after"])}


def ratio_records(ratios: dict[str, Interval]) -> list[Record]:
    """The upper end of each claim's interval against theory's 1 (the bounds' records)."""
    return [record(EXPERIMENT, f"sgd+{v}", "",
                   "before_after_ratio" if v == "bn-after" else "steps_ratio",
                   predicted=1.0, measured=i.high) for v, i in ratios.items()]


def records(curves: dict[str, np.ndarray], clean: dict[str, float]) -> list[Record]:
    """Per variant but BN: steps to the threshold, final smoothed and clean losses and the
    smoothed loss at spread steps, each against BN's."""
    bn = curves["bn"]
    steps = len(bn)
    out = []
    for variant in list(VARIANTS)[1:]:
        label = f"sgd+{variant}"
        out += [record(EXPERIMENT, label, "", "steps_to_threshold",
                       predicted=steps_to(bn, LOSS_THRESHOLD),
                       measured=steps_to(curves[variant], LOSS_THRESHOLD)),
                record(EXPERIMENT, label, "", "final_loss", predicted=bn[-1],
                       measured=curves[variant][-1]),
                record(EXPERIMENT, label, "", "final_clean_loss", predicted=clean["bn"],
                       measured=clean[variant]),
                *(record(EXPERIMENT, label, "", f"loss@{k}", predicted=bn[k],
                         measured=curves[variant][k])
                  for k in spread_steps(steps // CHECKS, steps - 1, CHECKS))]
    return out


def text(settings: Settings, steps: dict[tuple[str, float], np.ndarray],
         best: dict[str, float], curves: dict[str, np.ndarray], clean: dict[str, float],
         ratios: dict[str, Interval]) -> str:
    scale = settings.scale(SCALES)
    network = sizes(config(settings.seed, scale.steps, NETWORK))
    finals = {v: curves[v][-1] for v in VARIANTS}
    return (
        f"A {network} ReLU MLP on digits, SGD at each learning rate of "
        f"{list(LEARNING_RATES)}, batch 64, {scale.steps} steps, "
        f"{counted(scale.seeds, 'seed')}, trained by `models.train`; the minibatch loss "
        f"smoothed over {SMOOTHING} steps. Variants "
        "(`model.norm`, `model.norm_position`, `model.knockout_*`): BN before "
        "each ReLU; the same with the knock-out transform after each BN (per batch and unit "
        rf"$a \leftarrow \gamma a + m$, $\gamma \sim U({1 - SPREAD:g}, {1 + SPREAD:g})$, "
        rf"$m \sim N(0, s^2)$ with $s$ = {VARIANTS['knockout']['model.knockout_shift']:g} "
        f"(`knockout`) or {VARIANTS['knockout-strong']['model.knockout_shift']:g} "
        "(`knockout-strong`), freshly drawn every batch from a seeded generator: a "
        "simplification of Santurkar et al. 2018 as in 001 Sec. 4.2, re-introducing shifted "
        "and rescaled statistics); BN after the ReLU; no normalization. Steps to a smoothed "
        f"loss of {LOSS_THRESHOLD}, mean over seeds with its 95% interval (the best learning "
        "rate of each variant, the fewest steps, in bold):\n\n"
        + markdown_table(steps_table(steps, best), index=False) + "\n\n"
        + grid_ends(best, LEARNING_RATES, "learning rates").strip() + "\n\n"
        "The notes' claims (001 Sec. 4.2), each variant at its best learning rate and the "
        "ratios taken seed by seed: the knock-out leaves optimization essentially as fast as "
        f"BN (declared: at most {AS_FAST:g}x BN's steps) and BN before the activation works "
        f"at least as well as after (declared: at most {AT_LEAST_AS_WELL:g}x the steps of BN "
        "after). A claim holds when the upper end of its 95% interval is within its margin:"
        "\n\n" + markdown_table(_claims_table(ratios), index=False) + "\n\n"
        "At the best learning rates, final smoothed loss: " + listing(finals)
        + "; final loss on the whole training set in evaluation mode (BN with its running "
        "statistics, the knock-out transform at its mean, the identity; `final_clean_loss`): "
        + listing(clean) + ". The clean loss, measured without the transform, separates what "
        "a knock-out network learned from the noise of the transform in the loss it was "
        f"trained on: against BN's, the mild knock-out's is {clean['knockout'] / clean['bn']:.2g}x "
        f"and the strong one's {clean['knockout-strong'] / clean['bn']:.2g}x.")


def _claims_table(ratios: dict[str, Interval]) -> pd.DataFrame:
    rows = []
    for variant, what, margin in (
            ("knockout", "mild knock-out / BN", AS_FAST),
            ("knockout-strong", "strong knock-out / BN (no bound)", AS_FAST),
            ("bn-after", "BN before / BN after", AT_LEAST_AS_WELL)):
        i = ratios[variant]
        rows.append({"ratio of steps": what, "seed-paired ratio": interval_cell(i),
                     "margin": f"{margin:g}",
                     "holds": "—" if not np.isfinite(i.high) else
                     "yes" if i.high <= margin else "no"})
    return pd.DataFrame(rows)
