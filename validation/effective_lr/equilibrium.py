"""Theory's weight-decay equilibria against settled runs, with the estimators theory states them
for, seeds and 95% intervals (001 Eq. 23-25; :mod:`scalewise.theory.equilibria`).

Config: SGD, momentum SGD, AdamW, Adam with L2, RMSprop, and beyond the seeds Nesterov SGD, Lion
and Muon (:mod:`scalewise.theory.lion_muon_nesterov`) at moderate ``lr * wd`` on the digits
MLP with batch, layer and weight norm and the batch-norm CNN, several seeds, each run as long as
theory's time constant asks (:mod:`.runs`). Runs -> per compared layer (normalization margin at
least 100 eps, scale-invariant units) and settled run, the angular update as a ratio of sums,
``E||w||^2`` per unit and the effective LR at it against theory at each unit's measured
``sqrt(E[g^2])`` (:mod:`.settled`) -> one record per seed -> bounds declared below: within 3%
(median over layers and seeds) for SGD, momentum SGD and AdamW, AdamW's ``||w||^2`` within 5%,
the angular update of Nesterov SGD, Lion and Muon within 5%
-> a table of measured/predicted with 95% intervals over seeds, the runs that did not settle,
the layers left out, and a figure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from scalewise.validation.effective_lr.plots import grid, ratio_panel
from scalewise.validation.effective_lr.runs import (
    DIGITS,
    MIN_STEPS,
    Measured,
    Setting,
    config,
    labels,
    measure,
    seeds,
)
from scalewise.validation.effective_lr.settled import QUANTITIES, Estimate, estimate, settle
from scalewise.validation.estimators import interval
from scalewise.validation.markdown import interval_cell, markdown_table
from scalewise.validation.report import (
    RECORD_FIELDS,
    Bound,
    Record,
    Report,
    curve_frame,
    record,
)
from scalewise.validation.suite import Settings, Size

EXPERIMENT = "equilibrium"
LIMIT = 0.03  # angular update and effective LR: median relative error over layers and seeds
NORM_LIMIT = 0.05  # AdamW's ||w||^2 against the exact finite-lr*wd form
BOUNDED = ("sgd", "sgdm", "adamw")
BEYOND_LIMIT = 0.05  # Nesterov SGD, Lion and Muon (beyond the seeds): angular update
BEYOND = ("nesterov", "lion", "muon")

SETTINGS = (
    Setting("sgd", 0.1, 0.05),
    Setting("sgdm", 0.01, 0.05),
    Setting("adamw", 0.003, 1.67),
    Setting("adam", 0.01, 0.1),
    Setting("rmsprop", 0.01, 0.1),
    Setting("nesterov", 0.01, 0.05),
    Setting("lion", 0.001, 5.0),
    Setting("muon", 0.02, 0.25, momentum=0.95),
)
"""``lr * wd`` of 5e-3 (momentum SGD and Nesterov SGD: 5e-4, the same per effective step
``lr / (1 - mu)``); the Adam family's expansion parameter of a few 1e-3; Lion and Muon, whose
steps have a fixed size, at the same ``lr * wd`` of 5e-3 (time constant 100 steps), Lion with
its paper's betas (0.9, 0.99), Muon with torch's momentum 0.95."""


@dataclass(frozen=True)
class Scale:
    networks: tuple[str, ...]
    seeds: int
    decay_factor: float  # on every setting's weight decay: stronger in a smoke run, so it settles
    min_steps: int  # the shortest run (Setting.steps)
    resnet: dict[str, object]  # the CIFAR-10 ResNet's changes, where the data are given


SCALES = {
    # a smoke run only checks that the ResNet path runs (a thin ResNet, small batches)
    Size.SMOKE: Scale(networks=("mlp-bn",), seeds=1, decay_factor=4.0, min_steps=60,
                      resnet={"model.width": 4, "data.batch_size": 32}),
    Size.REFERENCE: Scale(networks=DIGITS, seeds=3, decay_factor=1.0, min_steps=MIN_STEPS,
                          resnet={}),
}


def scaled(setting: Setting, settings: Settings) -> Setting:
    """``setting`` with the weight decay of the size (:attr:`Scale.decay_factor`)."""
    return setting.scaled(weight_decay=settings.scale(SCALES).decay_factor)


def equilibrium_runs(settings: Settings, optimizers: tuple[str, ...] | None = None,
                     networks: tuple[str, ...] | None = None) -> list[Measured]:
    """Every network x setting x seed of the size, with the CIFAR-10 ResNet where
    ``settings.data_root`` is given (those of ``optimizers`` and ``networks`` when given); the
    other experiments read the same runs, which the store keeps."""
    scale = settings.scale(SCALES)
    if networks is None:
        networks = (*scale.networks, *(("resnet-bn",) if settings.data_root else ()))
    resnet = {"data.root": settings.data_root, **scale.resnet}
    jobs = [(net, s, seed, config(net, s, seed=seed, steps=s.steps(scale.min_steps),
                                  extra=resnet if net == "resnet-bn" else None))
            for net in networks
            for s in (scaled(s, settings) for s in SETTINGS
                      if optimizers is None or s.optimizer in optimizers)
            for seed in seeds(settings, scale.seeds)]
    return measure(jobs, settings, desc="effective-lr equilibrium runs")


def settled_estimates(measured: list[Measured]) -> tuple[list[tuple[Measured, str, Estimate]],
                                                          list[str]]:
    """``(run, layer, estimate)`` of every compared layer of every settled run, and a sentence
    for each layer that had not settled."""
    estimates, unsettled = [], []
    for m in measured:
        for layer, mask in m.compared().items():
            judged = settle(m, layer)
            if judged.settled:
                estimates.append((m, layer, estimate(m, layer, mask)))
            else:
                unsettled.append(f"{m.setting.label} seed {m.seed} {m.layer(layer)}: "
                                 f"{judged.reason}")
    return estimates, unsettled


def equilibrium(report: Report, settings: Settings) -> None:
    """Settled equilibria against theory, per layer and seed."""
    measured = equilibrium_runs(settings)
    estimates, unsettled = settled_estimates(measured)
    records = [r for m, layer, e in estimates for r in _records(m, layer, e)]
    report.add(*records)
    report.add_runs(m.run for m in measured)
    curves = [_curves(m, layer) for m in measured for layer in m.compared()]
    if curves:
        report.add_curves(pd.concat(curves, ignore_index=True))
    report.bounds += BOUNDS
    excluded = [line for m in measured for line in m.excluded()]
    section = report.section("Equilibria", _text(records, unsettled, excluded, measured))
    section.figure("equilibrium", _figure(records, labels(measured)),
                   "Measured / predicted at equilibrium per optimizer and layer, the mean over "
                   "seeds with its 95% interval; the shaded band is the declared bound.")


BOUNDS = [
    *(Bound(EXPERIMENT, q, LIMIT, optimizer=o, statistic="median",
            description=f"{q.replace('_', ' ')} at equilibrium, median over layers and seeds")
      for o in BOUNDED for q in ("angular_update", "effective_lr")),
    Bound(EXPERIMENT, "norm_sq", NORM_LIMIT, optimizer="adamw", statistic="median",
          description="AdamW's ||w||^2 against the exact mean-field form, median over layers "
          "and seeds"),
    *(Bound(EXPERIMENT, "angular_update", BEYOND_LIMIT, optimizer=o, statistic="median",
            description="angular update at equilibrium, median over layers and seeds")
      for o in BEYOND),
]
"""Declared before the reference run; never loosened to fit a result."""


def _records(m: Measured, layer: str, e: Estimate) -> list[Record]:
    """One record per quantity, plus the mean of per-step angles for contrast."""
    name = m.layer(layer)
    return [*(record(EXPERIMENT, m.setting.label, name, q, predicted=e.predicted[q],
                     measured=e.measured[q]) for q in QUANTITIES),
            record(EXPERIMENT, m.setting.label, name, "angular_update_mean_of_steps",
                   predicted=e.predicted["angular_update"], measured=e.mean_of_steps)]


def _curves(m: Measured, layer: str) -> pd.DataFrame:
    """The layer's ``E||w||^2`` per unit over the run (from the layer sums), measured."""
    sums = m.sums("sum_norm_sq")[layer]
    units = m.units.layers[layer].units.size
    return curve_frame(EXPERIMENT, m.setting.label, m.layer(layer), "norm_sq",
                       f"measured (seed {m.seed})", sums.index.to_numpy(), sums.to_numpy() / units)


def ratios(records: list[Record]) -> pd.DataFrame:
    """measured / predicted per record, with its optimizer, layer and quantity."""
    frame = pd.DataFrame([r.__dict__ for r in records], columns=list(RECORD_FIELDS))
    return frame.assign(ratio=frame["measured"] / frame["predicted"])


def _table(records: list[Record]) -> pd.DataFrame:
    """Per optimizer and layer: the mean ratio over seeds and its 95% interval, per quantity."""
    frame = ratios(records)
    cells: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for (opt, layer, quantity), group in frame.groupby(["optimizer", "layer", "quantity"],
                                                      sort=False):
        cells[(opt, layer)][quantity] = interval_cell(interval(group["ratio"].to_numpy()), 4)
    table = pd.DataFrame.from_dict(cells, orient="index")
    table.index.names = ["optimizer", "layer"]
    return table[[c for c in (*QUANTITIES, "angular_update_mean_of_steps") if c in table]]


def _text(records: list[Record], unsettled: list[str], excluded: list[str],
          measured: list[Measured]) -> str:
    frame = ratios(records)
    lines = [
        "Each run lasts twelve of theory's time constants. A layer is compared once it has "
        "settled: at least five time constants, and its unit-mean squared norm over theory's "
        "equilibrium norm at its unit-mean $g$ of each step (the norm tracks an equilibrium that "
        "moves as $g$ falls with the loss) steady to 1% between the last two windows of one "
        "time constant. Over the last two time constants "
        "(at least 100 steps), per scale-invariant unit: $\\mathbb{E}\\|w\\|^2$, the effective "
        "learning rate at it ($\\eta/\\mathbb{E}\\|w\\|^2$, or $\\eta/\\sqrt{\\mathbb{E}\\|w\\|^2}$ "
        "for the Adam family), and theory's prediction at the unit's own "
        "$g = \\sqrt{\\mathbb{E}[g_k^2]}$; the angular update is "
        "$\\arccos$ of the ratio of sums over steps and units, "
        "$\\mathbb{E}\\langle w_k, w_{k+1}\\rangle/\\sqrt{\\mathbb{E}\\|w_k\\|^2\\,"
        "\\mathbb{E}\\|w_{k+1}\\|^2}$. The mean of per-step angles is "
        "shown for contrast.",
        "",
        f"{len(measured)} runs; {len(frame) // 4} settled layers compared. Measured / "
        "predicted, the mean over seeds with its 95% interval:",
        "",
        markdown_table(_table(records)) if records else "No layer settled.",
        "",
        _contrast_sentence(frame),
    ]
    if unsettled:
        lines += ["", f"Not settled ({len(unsettled)}), left out:", "",
                  *(f"- {line}" for line in unsettled)]
    if excluded:
        lines += ["", f"Left out of the comparison ({len(excluded)}):", "",
                  *(f"- {line}" for line in excluded)]
    return "\n".join(lines)


def _contrast_sentence(frame: pd.DataFrame) -> str:
    """How far the mean of per-step angles lies from the ratio of sums, from the numbers."""
    if frame.empty:
        return ""
    by = frame.pivot_table(index=["optimizer", "layer"], columns="quantity", values="ratio")
    gap = (by["angular_update_mean_of_steps"] / by["angular_update"] - 1).median()
    side = "below" if gap < 0 else "above"
    return (f"The mean of per-step angles lies {abs(gap):.1%} {side} the ratio-of-sums estimator "
            "(median over layers): where the gradient norm varies from step to step, "
            "$\\mathbb{E}[\\theta_k]$ weighs $g_k$ where the balance weighs $g_k^2$.")


def _figure(records: list[Record], order: list[str]):
    frame = ratios(records)
    fig, axes = grid(["ratios"], list(QUANTITIES))
    for ax, quantity in zip(axes[0], QUANTITIES):
        rows = frame[frame["quantity"] == quantity]
        groups = [(o, layer) for o in order for layer in dict.fromkeys(rows["layer"])
                  if ((rows["optimizer"] == o) & (rows["layer"] == layer)).any()]
        intervals = [interval(rows[(rows["optimizer"] == o) & (rows["layer"] == layer)]
                              ["ratio"].to_numpy()) for o, layer in groups]
        ratio_panel(ax, [f"{o} {layer}" for o, layer in groups], intervals,
                    quantity.replace("_", " "), NORM_LIMIT if quantity == "norm_sq" else LIMIT)
    return fig
