"""Batch norm's stochastic regularization (001 Sec. 4.1, 4.4 and 6; 000 slides 'Batch Norm'):
each example is normalized with the statistics of the batch it lands in, so its
computation is noisy, the more so the smaller the batch (001 Sec. 6: "With BN, the batch size
affects the amount of stochastic regularization"); layer norm normalizes each example by itself
and has no such noise (001 Sec. 4.4). The claim, measured: batch norm's generalization gap grows
with the batch size by more than layer norm's does.

Config: the digits MLP (:data:`NETWORK`) with batch norm and with layer norm, trained on
:data:`TRAIN_IMAGES` images (where there is a gap to close) at each batch size of
:data:`BATCH_SIZES` for the same number of steps, several seeds. Runs (:func:`models.train`) ->
each run's final generalization gap, the loss on the test split minus the loss on its training
images (evaluation mode) -> per seed the difference in differences, ``(gap_BN(large) -
gap_BN(small)) - (gap_LN(large) - gap_LN(small))``: what the batch size does to batch norm beyond
what it does through SGD's own gradient noise, which both networks share -> a one-sided bound on
its 95% interval, declared before the reference run -> text, table and figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise.models.store import Run
from scalewise.validation.estimators import Interval, interval
from scalewise.validation.ics.runs import config, final, sizes
from scalewise.validation.markdown import counted, interval_cell, markdown_table
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings, Size, StepsAndSeeds, train_groups

EXPERIMENT = "stochastic_regularization"
BATCH_SIZES = (16, 256)
"""The small and the large batch."""
TRAIN_IMAGES = 400
NORMS = {"bn": "batch", "ln": "layer"}
NETWORK = {"model.width": 64, "model.depth": 2, "optimizer.name": "sgd",
           "optimizer.momentum": 0.0, "optimizer.lr": 0.1, "data.train_size": TRAIN_IMAGES,
           "eval_every": 0}
BOUND = Bound(EXPERIMENT, "gap_difference", 1e-9, optimizer="sgd+bn", side="at least",
              description="batch norm's generalization gap grows from the small to the large "
                          "batch by more than layer norm's (001 Sec. 4.4, 6): the 95% interval of "
                          "the seed-paired difference in differences lies above 0")

SCALES = {Size.SMOKE: StepsAndSeeds(steps=40, seeds=2),
          Size.REFERENCE: StepsAndSeeds(steps=1500, seeds=5)}

Key = tuple[str, int]  # (norm label, batch size)


def stochastic_regularization(report: Report, settings: Settings) -> None:
    """Batch norm's and layer norm's generalization gaps at a small and a large batch."""
    runs = trained_runs(settings)
    gaps = {key: np.array([generalization_gap(run) for run in group])
            for key, group in runs.items()}
    difference = interval(gap_difference(gaps))
    report.add_runs(run for group in runs.values() for run in group)
    report.add(*records(gaps, difference))
    report.bounds.append(BOUND)
    section = report.section("Batch norm's stochastic regularization (001 Sec. 4.4, 6)",
                             text(settings, gaps, difference))
    section.figure("ics_stochastic_regularization", figure(gaps),
                   "Final generalization gap (test loss minus training loss) at the small and "
                   "the large batch, mean over seeds with 95% intervals, batch norm and layer "
                   "norm.")


def trained_runs(settings: Settings) -> dict[Key, list[Run]]:
    """Per (norm label, batch size), its runs over the seeds of the size."""
    scale = settings.scale(SCALES)
    seeds = range(settings.seed, settings.seed + scale.seeds)
    return train_groups({(norm, batch): [config(seed, scale.steps, {
        **NETWORK, "model.norm": NORMS[norm], "data.batch_size": batch}) for seed in seeds]
        for norm in NORMS for batch in BATCH_SIZES}, settings,
        desc="ics: stochastic regularization")


def generalization_gap(run: Run) -> float:
    """``run``'s final test loss minus its final training loss (evaluation mode, the training
    images it saw); NaN for a run that failed."""
    return final(run, "test_loss") - final(run, "train_loss")


def gap_difference(gaps: dict[Key, np.ndarray]) -> np.ndarray:
    """Per seed, ``(gap_BN(large) - gap_BN(small)) - (gap_LN(large) - gap_LN(small))``."""
    small, large = BATCH_SIZES

    def growth(norm: str) -> np.ndarray:
        return gaps[norm, large] - gaps[norm, small]

    return growth("bn") - growth("ln")


def records(gaps: dict[Key, np.ndarray], difference: Interval) -> list[Record]:
    """The lower end of the difference in differences' interval against 0 (the bound's
    record), and each network's mean gap at the large batch against its gap at the small one
    (no bound)."""
    small, large = BATCH_SIZES
    return [record(EXPERIMENT, "sgd+bn", "", "gap_difference", predicted=0.0,
                   measured=difference.low),
            *(record(EXPERIMENT, f"sgd+{norm}", "", "gap", predicted=np.nanmean(gaps[norm, small]),
                     measured=np.nanmean(gaps[norm, large])) for norm in NORMS)]


def text(settings: Settings, gaps: dict[Key, np.ndarray], difference: Interval) -> str:
    scale = settings.scale(SCALES)
    network = sizes(config(settings.seed, scale.steps, NETWORK))
    small, large = BATCH_SIZES
    table = pd.DataFrame([{"": norm, **{f"batch {b}": interval_cell(interval(gaps[norm, b]))
                                        for b in BATCH_SIZES},
                           "large minus small": interval_cell(interval(
                               gaps[norm, large] - gaps[norm, small]))} for norm in NORMS])
    verdict = ("the interval lies above 0: the claim holds" if difference.low > 0 else
               "the interval lies below 0: layer norm's gap grows more"
               if difference.high < 0 else "the interval holds 0: the claim is not shown")
    return (
        f"A {network} ReLU MLP on {TRAIN_IMAGES} digits training images (float64, SGD at lr "
        f"{NETWORK['optimizer.lr']:g} without momentum), with batch norm (`bn`) and with layer "
        f"norm (`ln`) before each ReLU, at batch {small} and at batch {large} for the same "
        f"{scale.steps} steps, {counted(scale.seeds, 'seed')}. The generalization gap is the "
        "final loss on the test split minus the final loss on the training images, both in "
        "evaluation mode (batch norm with its running statistics). Mean over seeds with its 95% "
        "interval:\n\n" + markdown_table(table, index=False) + "\n\n"
        "The notes' claim (001 Sec. 6: 'With BN, the batch size affects the amount of "
        "stochastic regularization'; Sec. 4.4: layer norm has no such effect): batch norm's "
        "gap grows "
        "from the small to the large batch by more than layer norm's: the difference of the two "
        "growths takes out what the batch size does through SGD's own gradient noise, as far as "
        "that acts alike on both networks (assumed, not tested). Seed-paired difference in "
        f"differences: {interval_cell(difference)}; {verdict}.")


def figure(gaps: dict[Key, np.ndarray]) -> Figure:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for norm, color in zip(NORMS, ("tab:blue", "tab:orange")):
        stats = [interval(gaps[norm, b]) for b in BATCH_SIZES]
        ax.errorbar(BATCH_SIZES, [i.mean for i in stats],
                    yerr=[i.half_width if i.n > 1 else 0.0 for i in stats], marker="o",
                    color=color, capsize=3, label=f"sgd+{norm}")
    ax.set(xscale="log", xlabel="batch size", ylabel="test loss - training loss",
           title="001 Sec. 4.4, 6: batch norm's stochastic regularization")
    ax.legend()
    return fig
