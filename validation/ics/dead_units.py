"""Batch norm against dead units (001 Sec. 4.1): a ReLU unit whose input is never positive
computes 0 on every example and its incoming weights get no gradient, so nothing brings it
back; batch norm forces each pre-activation to mean 0 over the batch, so it is positive on some
examples and the unit cannot die. The notes' claim, measured: no batch-normalized unit is dead
at the end of training, at any learning rate; the same MLP without normalization, where nothing
prevents it, is the contrast (how many of its units die, and at which learning rates it
diverges: batch norm's "stabilizes" of the same section).

Config: a digits MLP (:data:`NETWORK`) with batch norm before each ReLU and without
normalization, SGD at each of :data:`LEARNING_RATES`, several seeds. Runs (:func:`models.train`)
-> the trained network (its checkpoint) in evaluation mode on the whole training set -> per
hidden unit whether its ReLU input is positive on any example -> records: the dead fraction of
every batch-normalized run against theory's 0 (bound), of every run without normalization
against the same 0 (no bound: theory does not say how many die), and with batch norm the
fraction whose normalized pre-activation is never positive (the argument's own quantity, the
cause where units with batch norm die) -> text, table and figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from scalewise.models.store import Run, RunStatus
from scalewise.models.training import checkpoint_state, run_data
from scalewise.validation.estimators import interval
from scalewise.validation.ics.runs import config, sizes
from scalewise.validation.markdown import interval_cell, markdown_table
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings, Size, StepsAndSeeds, open_store, train_groups

EXPERIMENT = "dead_units"
LEARNING_RATES = (0.03, 0.1, 0.3, 1.0, 3.0)
NETWORK = {"model.width": 64, "model.depth": 2, "optimizer.name": "sgd",
           "optimizer.momentum": 0.0}
NORMS = {"bn": "batch", "none": "none"}
"""Label -> ``model.norm``; the first is the one theory's claim is about."""
BOUND = Bound(EXPERIMENT, "dead_fraction", 0.5, optimizer="sgd+bn", description=(
    "no dead unit in any batch-normalized network, at any learning rate and seed (001 Sec. "
    "4.1): the relative error against theory's 0 is 0 where none is dead and 1 otherwise"))


SCALES = {Size.SMOKE: StepsAndSeeds(steps=40, seeds=1),
          Size.REFERENCE: StepsAndSeeds(steps=1500, seeds=5)}


def dead_units(report: Report, settings: Settings) -> None:
    """Dead ReLU units after training, with batch norm and without, over learning rates."""
    runs = trained_runs(settings)
    activities = {key: [activity(run, settings) for run in group]
                  for key, group in runs.items()}
    report.add_runs(run for group in runs.values() for run in group)
    report.add(*records(activities))
    report.bounds.append(BOUND)
    section = report.section("Batch norm against dead units (001 Sec. 4.1)",
                             text(settings, activities))
    section.figure("ics_dead_units", figure(fractions(activities)),
                   "Fraction of dead hidden units after training (mean over seeds, bars: 95% "
                   "interval) against the learning rate; crosses mark learning rates where "
                   "runs diverged. Theory: none with batch norm.")


def trained_runs(settings: Settings) -> dict[tuple[str, float], list[Run]]:
    """Per (norm label, learning rate), its runs over the seeds of the size."""
    scale = settings.scale(SCALES)
    seeds = range(settings.seed, settings.seed + scale.seeds)
    return train_groups({(norm, lr): [config(seed, scale.steps, {
        **NETWORK, "model.norm": NORMS[norm], "optimizer.lr": lr}) for seed in seeds]
        for norm in NORMS for lr in LEARNING_RATES}, settings, desc="ics: dead units")


@dataclass(frozen=True)
class Activity:
    """A trained network's hidden units on the training set, in evaluation mode: ``dead``
    (ReLU input at most 0 on every example) of ``units``; with batch norm, ``normalized_dead``
    units whose normalized pre-activation (batch norm's ``(a - mean) / std`` before its learned
    scale and shift) is never positive, and ``shifted`` dead units whose normalized
    pre-activation is positive on some example, so that the learned shift turned them off."""

    dead: int
    units: int
    normalized_dead: int
    shifted: int

    @property
    def fraction(self) -> float:
        return self.dead / self.units


def activity(run: Run, settings: Settings) -> Activity | None:
    """The :class:`Activity` of ``run``'s trained network (its checkpoint); None for a run that
    diverged."""
    if run.status is not RunStatus.COMPLETED:
        return None
    with open_store(settings) as store:
        model = checkpoint_state(run.config, store).model
    inputs = run_data(run.config).train.inputs.to(next(model.parameters()).dtype)
    relu, normalized = positive_counts(model, inputs)
    dead = np.concatenate(relu) == 0
    if not normalized:
        return Activity(int(dead.sum()), dead.size, 0, 0)
    normalized_dead = np.concatenate(normalized) == 0  # one batch norm before each ReLU
    return Activity(int(dead.sum()), dead.size, int(normalized_dead.sum()),
                    int((dead & ~normalized_dead).sum()))


def positive_counts(model: nn.Module, inputs: torch.Tensor
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per ReLU of ``model`` (in order) and unit, on how many of ``inputs`` its input is
    positive; likewise per batch norm, its input minus its running mean (the sign of the
    normalized pre-activation before its scale and shift). In evaluation mode."""
    relu: list[np.ndarray] = []
    normalized: list[np.ndarray] = []

    def count(into: list[np.ndarray], values: torch.Tensor) -> None:
        into.append((values > 0).sum(dim=0).cpu().numpy())

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            hooks.append(module.register_forward_pre_hook(
                lambda _m, args: count(relu, args[0])))
        elif isinstance(module, nn.BatchNorm1d):
            hooks.append(module.register_forward_pre_hook(
                lambda m, args: count(normalized, args[0] - m.running_mean)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(inputs)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return relu, normalized


def records(activities: dict[tuple[str, float], list[Activity | None]]) -> list[Record]:
    """Per norm, learning rate and seed that did not diverge: its dead fraction against 0; with
    batch norm also the fraction whose normalized pre-activation is never positive, against 0
    (the argument's own quantity)."""
    out = []
    for (norm, lr), group in activities.items():
        for i, a in enumerate(group):
            if a is None:
                continue
            label, layer = f"sgd+{norm}", f"lr{lr:g} seed{i}"
            out.append(record(EXPERIMENT, label, layer, "dead_fraction", predicted=0.0,
                              measured=a.fraction))
            if NORMS[norm] == "batch":
                out.append(record(EXPERIMENT, label, layer, "normalized_dead_fraction",
                                  predicted=0.0, measured=a.normalized_dead / a.units))
    return out


def _cell(values: list[float]) -> str:
    finite = [v for v in values if np.isfinite(v)]
    diverged = len(values) - len(finite)
    cell = interval_cell(interval(np.array(finite))) if finite else "—"
    return cell + (f" ({diverged} of {len(values)} diverged)" if diverged else "")


def fractions(activities: dict[tuple[str, float], list[Activity | None]]
              ) -> dict[tuple[str, float], list[float]]:
    """Each run's dead fraction (NaN for a run that diverged), as :func:`dead_units` groups
    them."""
    return {key: [a.fraction if a else math.nan for a in group]
            for key, group in activities.items()}


def text(settings: Settings, activities: dict[tuple[str, float], list[Activity | None]]
         ) -> str:
    found = fractions(activities)
    scale = settings.scale(SCALES)
    network = sizes(config(settings.seed, scale.steps, NETWORK))
    rows = [{"learning rate": f"{lr:g}", **{norm: _cell(found[norm, lr]) for norm in NORMS}}
            for lr in LEARNING_RATES]
    bn = [v for lr in LEARNING_RATES for v in found["bn", lr] if np.isfinite(v)]
    dead_bn = sum(v > 0 for v in bn)
    plain = {lr: [v for v in found["none", lr] if np.isfinite(v)] for lr in LEARNING_RATES}
    worst = max(LEARNING_RATES, key=lambda lr: np.mean(plain[lr]) if plain[lr] else -1.0)
    diverged = {norm: sum(not np.isfinite(v) for lr in LEARNING_RATES for v in found[norm, lr])
                for norm in NORMS}
    verdict = ("no batch-normalized network has a dead unit" if dead_bn == 0 else
               f"{dead_bn} of {len(bn)} batch-normalized networks have dead units, "
               "against theory")
    contrast = (f"without normalization the most units die at learning rate {worst:g} "
                f"({np.mean(plain[worst]):.1%} of them at the mean)" if plain[worst] else
                "every run without normalization diverged")
    return (
        _setup(network, scale) + markdown_table(pd.DataFrame(rows), index=False) + "\n\n"
        f"**Result.** {verdict[0].upper() + verdict[1:]}; {contrast}. Runs that diverged: "
        f"{diverged['bn']} with batch norm, {diverged['none']} without."
        + _cause(activities))


def _cause(activities: dict[tuple[str, float], list[Activity | None]]) -> str:
    """Where batch-normalized units died: whether their normalized pre-activation did too."""
    bn = {lr: [a for a in activities["bn", lr] if a] for lr in LEARNING_RATES}
    dead = sum(a.dead for group in bn.values() for a in group)
    if not dead:
        return ""
    shifted = sum(a.shifted for group in bn.values() for a in group)
    normalized = sum(a.normalized_dead for group in bn.values() for a in group)
    where = ", ".join(f"{lr:g}" for lr, group in bn.items() if any(a.dead for a in group))
    return (
        f"\n\n**Why batch-normalized units died** (learning rate {where}). The notes' argument "
        r"is about the normalized pre-activation $\hat a = (a - \mu)/\sigma$, before batch "
        r"norm's learned scale $\gamma$ and shift $\beta$. Of the "
        f"{dead} dead batch-normalized units, "
        f"{shifted} have a normalized pre-activation that is positive on some training image: "
        r"the argument holds for them, and the learned scale and shift turned them off after "
        r"the normalization ($\gamma \hat a_n + \beta \le 0$ on every image $n$). Over all "
        "batch-normalized networks "
        f"{normalized} units have a normalized pre-activation that is never positive (records "
        "`normalized_dead_fraction`, against 0; no bound: this measurement was chosen after "
        "the declared one had missed).")


def _setup(network: str, scale: StepsAndSeeds) -> str:
    return (
        f"A {network} ReLU MLP on digits (float64, batch 64), SGD without momentum for "
        f"{scale.steps} steps at each learning rate, {scale.seeds} seed(s), with batch norm "
        "before each ReLU (`bn`, affine: its learned shift could still push a unit below 0) "
        "and without normalization (`none`). After training, each hidden unit's ReLU input on "
        "every one of the training images, the network in evaluation mode (batch norm with "
        "its running statistics): a unit is dead when that input is at most 0 on all of "
        "them, so that it outputs 0 and its incoming weights get no gradient (001 Sec. 4.1). "
        "Theory: batch norm makes each pre-activation 0 in expectation, so it is positive on "
        "some examples and no unit dies. Fraction of dead hidden units, mean over seeds with "
        "its 95% interval:\n\n")


def figure(found: dict[tuple[str, float], list[float]]) -> Figure:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for norm, color in zip(NORMS, ("tab:blue", "tab:gray")):
        points = [(lr, interval(np.array([v for v in found[norm, lr] if np.isfinite(v)])))
                  for lr in LEARNING_RATES]
        kept = [(lr, i) for lr, i in points if i.n]
        ax.errorbar([lr for lr, _ in kept], [i.mean for _, i in kept],
                    yerr=[[i.mean - i.low if i.n > 1 else 0 for _, i in kept],
                          [i.high - i.mean if i.n > 1 else 0 for _, i in kept]],
                    marker="o", color=color, capsize=3, label=f"sgd+{norm}")
        failed = [lr for lr in LEARNING_RATES if any(not np.isfinite(v)
                                                      for v in found[norm, lr])]
        ax.scatter(failed, [0.0] * len(failed), marker="x", s=60, color=color)
    ax.axhline(0.0, color="black", lw=4, alpha=0.3, label="theory with batch norm: none")
    ax.set(xscale="log", xlabel="learning rate", ylabel="fraction of dead hidden units",
           title="001 Sec. 4.1: batch norm prevents dead units")
    ax.legend(fontsize=8)
    return fig
