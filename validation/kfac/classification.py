"""004 Fig. 1, Fig. 8 and Table 1 (000 slides 'KFAC with Weight Decay'): the test accuracy of
SGD, Adam, K-FAC-G and K-FAC-F with decoupled weight decay, with L2 and with neither, on the
digits CNN with batch norm, and of K-FAC with and without decay on the same CNN without batch
norm; accuracy over training for Fig. 8.

The claims, from 004 Sec. 2 (observations 1, 3 and 4) and the 000 slide:

- weight decay improves the test accuracy over the baseline for every optimizer, on a network
  with batch norm too (``wd_gain``);
- it is more effective than L2 where the two differ, Adam and K-FAC (``wd_over_l2``);
- its boost to K-FAC is larger without batch norm (``kfac_bn_boost``).

Each is a paired difference of final test accuracies (the runs of one seed share their
initialization and batch order), and each is bounded one-sidedly, declared before the reference
run: the lower end of its 95% interval over seeds is at least one test image (digits has 359,
so an accuracy moves in steps of 0.28%).

Config: :data:`OPTIMIZERS`, :data:`DECAY` and the size's :data:`SCALES`. Runs
(:func:`models.train`, evaluated every :attr:`Scale.eval_every` steps) -> final test accuracies
-> paired differences and their intervals -> records and one-sided bounds -> table, text and
figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise import models
from scalewise.models.store import Run, RunStatus
from scalewise.validation.comparison import wide
from scalewise.validation.estimators import Interval, interval
from scalewise.validation.kfac.runs import DAMPING, KFAC_LR, SGD_LR, WEIGHT_DECAY, label
from scalewise.validation.markdown import interval_cell, markdown_table
from scalewise.validation.report import Bound, Record, Report, curve_frame, record
from scalewise.validation.suite import Settings, Size, train_groups

EXPERIMENT = "classification"
ADAM_LR = 1e-3
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer.name": "sgd", "optimizer.lr": SGD_LR},
    "adam": {"optimizer.name": "adam", "optimizer.lr": ADAM_LR},
    "kfac-g": {"optimizer.name": "kfac", "optimizer.lr": KFAC_LR,
               "optimizer.kfac.curvature": "gauss-newton", "optimizer.kfac.damping": DAMPING},
    "kfac-f": {"optimizer.name": "kfac", "optimizer.lr": KFAC_LR,
               "optimizer.kfac.curvature": "fisher", "optimizer.kfac.damping": DAMPING},
}
"""Optimizer label -> config changes: the suite's SGD and K-FAC (no momentum), Adam at its
usual learning rate."""
SHRINK = 1e-3
"""The decoupled decay's shrink per step ``lr * wd`` of SGD and Adam (K-FAC keeps the suite's
``wd`` = :data:`~scalewise.validation.kfac.runs.WEIGHT_DECAY`, a shrink of 4e-4)."""
DECAY = {
    "l2": dict.fromkeys(OPTIMIZERS, WEIGHT_DECAY),
    "decoupled": {"sgd": SHRINK / SGD_LR, "adam": SHRINK / ADAM_LR, "kfac-g": WEIGHT_DECAY,
                  "kfac-f": WEIGHT_DECAY},
}
"""Mode -> optimizer label -> ``lambda``. L2 is a term of the loss: the same penalty
``lambda ||w||^2 / 2`` for every optimizer. Decoupled decay is a rule of the dynamics: the same
shrink per step for SGD and Adam (for SGD the two forms are one update in exact arithmetic,
identity wd_is_l2_for_sgd; rounding makes the runs part over many steps)."""
MODES = ("none", "l2", "decoupled")
DIFFERING = ("adam", "kfac-g", "kfac-f")
"""Where L2 and decoupled decay differ (for SGD they are one update in exact arithmetic)."""
KFAC = ("kfac-g", "kfac-f")
NETWORK = {"data.name": "digits", "model.arch": "vgg", "model.width": 32, "probe_every": 0,
           "costly_probe_every": 0, "checkpoint_every": 0}
NORMS = {"bn": "batch", "no-bn": "none"}
"""Network label -> ``model.norm``: every optimizer and mode on ``bn``; K-FAC without and with
decoupled decay on ``no-bn``."""
TEST_IMAGES = 359  # digits' test split (tests check it)
MIN_GAIN = 1 / TEST_IMAGES
"""The smallest difference a claim counts: one test image."""
CLAIM_LIMIT = 1e-9  # a one-sided bound's shortfall allowed: none beyond rounding
CLAIMS = {
    "wd_gain": "decoupled weight decay's test accuracy minus the baseline's",
    "wd_over_l2": "decoupled weight decay's test accuracy minus L2's",
    "kfac_bn_boost": "K-FAC's gain from decoupled decay without batch norm minus with it",
}
"""Quantity -> the paired difference it records: the lower end of its 95% interval, against
:data:`MIN_GAIN`."""
BOUNDS = [
    *(Bound(EXPERIMENT, "wd_gain", CLAIM_LIMIT, optimizer=o, layer="bn", side="at least",
            description=f"{o}: weight decay improves test accuracy over the baseline with batch "
                        "norm (004 Sec. 2, obs. 1 and 3): the 95% interval of the paired gain "
                        "lies above one test image")
      for o in OPTIMIZERS),
    *(Bound(EXPERIMENT, "wd_over_l2", CLAIM_LIMIT, optimizer=o, side="at least",
            description=f"{o}: weight decay beats L2 (004 Sec. 2, obs. 1; 000 'KFAC with Weight "
                        "Decay'): the 95% interval of the paired difference lies above one test "
                        "image")
      for o in DIFFERING),
    *(Bound(EXPERIMENT, "kfac_bn_boost", CLAIM_LIMIT, optimizer=o, side="at least",
            description=f"{o}: weight decay's boost is larger without batch norm (004 Sec. 2, "
                        "obs. 4): the 95% interval of the paired difference lies above one test "
                        "image")
      for o in KFAC),
]


@dataclass(frozen=True)
class Scale:
    steps: int
    seeds: int
    eval_every: int


SCALES = {Size.SMOKE: Scale(steps=30, seeds=2, eval_every=10),
          Size.REFERENCE: Scale(steps=500, seeds=5, eval_every=25)}

Key = tuple[str, str, str]  # (network, optimizer, mode)


def classification(report: Report, settings: Settings) -> None:
    """004 Fig. 1 / Table 1 / Fig. 8 on the digits CNN: weight decay, L2 and neither."""
    runs = trained_runs(settings)
    accuracy = {key: np.array([final_accuracy(run) for run in group])
                for key, group in runs.items()}
    report.add_runs(run for group in runs.values() for run in group)
    report.add(*records(accuracy))
    report.bounds += BOUNDS
    for (network, optimizer, mode), group in runs.items():
        curves = [wide(run.metrics, "test_accuracy")[""] for run in group
                  if run.status is RunStatus.COMPLETED]
        if curves:
            mean = pd.concat(curves, axis=1).mean(axis=1)
            report.add_curves(curve_frame(EXPERIMENT, label(optimizer, mode), network,
                                          "test_accuracy", "measured", mean.index, mean))
    section = report.section(
        "Weight decay, L2 and neither: test accuracy (004 Fig. 1, Table 1, Fig. 8)",
        text(settings, accuracy, sgd_forms(runs)))
    section.figure("kfac_classification", figure(accuracy),
                   "Final test accuracy on digits (mean over seeds, bars: 95% interval) per "
                   "optimizer and decay, on the CNN with batch norm (left) and, for K-FAC, "
                   "without it (right).")


def keys() -> list[Key]:
    """Every (network, optimizer, mode) trained: all on ``bn``, K-FAC's none and decoupled on
    ``no-bn``."""
    return ([("bn", o, m) for o in OPTIMIZERS for m in MODES]
            + [("no-bn", o, m) for o in KFAC for m in ("none", "decoupled")])


def run_config(settings: Settings, key: Key, seed: int) -> models.TrainConfig:
    network, optimizer, mode = key
    scale = settings.scale(SCALES)
    return models.override(models.TrainConfig(), {
        **NETWORK, "model.norm": NORMS[network], "steps": scale.steps, "seed": seed,
        "eval_every": scale.eval_every, **OPTIMIZERS[optimizer], "optimizer.momentum": 0.0,
        "optimizer.wd_mode": mode,
        "optimizer.weight_decay": DECAY[mode][optimizer] if mode in DECAY else 0.0})


def trained_runs(settings: Settings) -> dict[Key, list[Run]]:
    """Per key of :func:`keys`, its runs over the seeds of the size."""
    seeds = range(settings.seed, settings.seed + settings.scale(SCALES).seeds)
    return train_groups({key: [run_config(settings, key, seed) for seed in seeds]
                         for key in keys()}, settings, desc="kfac: classification")


def final_accuracy(run: Run) -> float:
    """``run``'s test accuracy at its last step; NaN for a run that failed."""
    if run.status is not RunStatus.COMPLETED:
        return float("nan")
    return float(wide(run.metrics, "test_accuracy")[""].iloc[-1])


def paired(accuracy: dict[Key, np.ndarray]) -> dict[tuple[str, str, str], Interval]:
    """The paired differences of :data:`CLAIMS` per (quantity, optimizer, network) with their
    95% intervals over seeds (a seed whose runs failed drops out of its pair)."""
    gain = {(n, o): accuracy[n, o, "decoupled"] - accuracy[n, o, "none"]
            for n, o, m in keys() if m == "none"}
    out = {("wd_gain", o, n): interval(g) for (n, o), g in gain.items()}
    out.update({("wd_over_l2", o, "bn"): interval(accuracy["bn", o, "decoupled"]
                                                  - accuracy["bn", o, "l2"])
                for o in DIFFERING})
    out.update({("kfac_bn_boost", o, "no-bn"): interval(gain["no-bn", o] - gain["bn", o])
                for o in KFAC})
    return out


def records(accuracy: dict[Key, np.ndarray]) -> list[Record]:
    """Per claim the lower end of its interval against one test image (the bounds' records;
    a failed interval is NaN); per optimizer
    and mode the mean test accuracy against the baseline's (no bound)."""
    claims = [record(EXPERIMENT, o, network, quantity, predicted=MIN_GAIN, measured=i.low)
              for (quantity, o, network), i in paired(accuracy).items()]
    means = [record(EXPERIMENT, label(o, m), n, "accuracy",
                    predicted=np.nanmean(accuracy[n, o, "none"]),
                    measured=np.nanmean(accuracy[n, o, m]))
             for n, o, m in keys() if m != "none"]
    return claims + means


def sgd_forms(runs: dict[Key, list[Run]]) -> str:
    """How far SGD's L2 and decoupled runs of each seed part, in words: the relative difference
    of their minibatch losses over the first 10 steps and at the last step, the largest over
    the seeds whose two runs completed."""
    pairs = [(wide(l2.metrics, "loss")[""].to_numpy(), wide(dec.metrics, "loss")[""].to_numpy())
             for l2, dec in zip(runs["bn", "sgd", "l2"], runs["bn", "sgd", "decoupled"])
             if RunStatus.FAILED not in (l2.status, dec.status)]

    def largest(steps: slice) -> float:
        return max(float(np.max(np.abs(d[steps] - l[steps]) / np.abs(l[steps])))
                   for l, d in pairs)

    if not pairs:
        return "no seed has both runs"
    return (f"their minibatch losses agree to {largest(slice(0, 10)):.1g} over the first 10 "
            f"steps and part by rounding to {largest(slice(-1, None)):.1g} at the last")


def text(settings: Settings, accuracy: dict[Key, np.ndarray], forms: str) -> str:
    scale = settings.scale(SCALES)
    table = pd.DataFrame(
        [{"network": n, "optimizer": o, **{m: interval_cell(interval(accuracy[n, o, m]))
                                            for m in MODES if (n, o, m) in accuracy}}
         for n in NORMS for o in OPTIMIZERS if (n, o, "none") in accuracy])
    intervals = paired(accuracy)
    claims = pd.DataFrame([{"claim": quantity, "what": CLAIMS[quantity], "optimizer": o,
                            "network": n, "difference": interval_cell(i),
                            "holds": _verdict(i)}
                           for (quantity, o, n), i in intervals.items()])
    held = sum(i.low >= MIN_GAIN for i in intervals.values())
    means = [float(np.nanmean(v)) for v in accuracy.values() if np.isfinite(v).any()]
    return (
        f"The digits CNN (VGG-style, width 32) with batch norm and without, {scale.steps} "
        f"steps of batch 128, {scale.seeds} seeds, no momentum, test accuracy on the "
        f"{TEST_IMAGES} test images every {scale.eval_every} steps. SGD lr {SGD_LR:g}, Adam lr "
        f"{ADAM_LR:g}, K-FAC-G and K-FAC-F lr {KFAC_LR:g} with damping {DAMPING:g}. L2, a "
        "term of the loss, adds "
        f"lambda w to every optimizer's gradient with lambda = {WEIGHT_DECAY:g} (the "
        "preconditioners then rescale it); decoupled decay, a rule of the dynamics, shrinks the "
        "weights by lr x lambda per step with lambda "
        + ", ".join(f"{o} {DECAY['decoupled'][o]:g}" for o in OPTIMIZERS)
        + f" (a shrink of {SHRINK:g} per step for SGD and Adam; for SGD the two forms are one "
        f"update in exact arithmetic: {forms}). Final test accuracy, mean over seeds "
        "with its 95% interval:\n\n" + markdown_table(table, index=False) + "\n\n"
        "The claims (004 Sec. 2; 000 'KFAC with Weight Decay'), each a paired difference of "
        "final accuracies, mean with its 95% interval; a claim holds when the interval lies "
        "above one test image (1/359):\n\n" + markdown_table(claims, index=False) + "\n\n"
        f"**Result.** {held} of {len(intervals)} claims hold on digits. Every variant's mean "
        f"test accuracy lies between {min(means):.4f} and {max(means):.4f}: "
        f"{(1 - max(means)) * TEST_IMAGES:.1f} to {(1 - min(means)) * TEST_IMAGES:.1f} of the "
        f"{TEST_IMAGES} test images wrong, so the variants differ by at most "
        f"{(max(means) - min(means)) * TEST_IMAGES:.1f} images on average. The curves of test "
        "accuracy over training (004 Fig. 8) are in this report's curves (quantity "
        "`test_accuracy`, one per optimizer, decay and network, mean over seeds).")


def _verdict(i: Interval) -> str:
    if not np.isfinite(i.low):
        return "no interval"
    return "yes" if i.low >= MIN_GAIN else "no"


def figure(accuracy: dict[Key, np.ndarray]) -> Figure:
    fig = Figure(figsize=(10, 4))
    for ax, network in zip(fig.subplots(1, 2, sharey=True), NORMS):
        optimizers = [o for o in OPTIMIZERS if (network, o, "none") in accuracy]
        for shift, mode in enumerate(MODES):
            found = [(x, interval(accuracy[network, o, mode]))
                     for x, o in enumerate(optimizers) if (network, o, mode) in accuracy]
            if not found:
                continue
            xs = np.array([x for x, _ in found]) + (shift - 1) * 0.25
            means = np.array([i.mean for _, i in found])
            half = np.array([i.half_width if i.n > 1 else 0.0 for _, i in found])
            ax.bar(xs, means, width=0.25, yerr=half, capsize=3, label=mode)
        ax.set_xticks(range(len(optimizers)), optimizers)
        ax.set_title(f"digits CNN, {network}")
    lows = [np.nanmin(v) for v in accuracy.values() if np.isfinite(v).any()]
    if lows:
        fig.axes[0].set_ylim(max(min(lows) - 0.02, 0.0), 1.0)
    fig.axes[0].set_ylabel("final test accuracy")
    fig.axes[0].legend(title="decay", fontsize=8)
    return fig
