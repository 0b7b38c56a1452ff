"""AdaGraft (000 Algorithm 2, Agarwal et al. 2020): the step of one optimizer's magnitude on
another's direction, per parameter tensor, both ways between SGD and Adam.

Config: the default digits BN MLP with the optimizers of :data:`GRAFT_RUNS`, each at every
learning rate of its magnitude's grid (:data:`LEARNING_RATES`), several seeds. Runs
(:func:`models.train`) -> the exact check of grafted steps (from the initial state and the last
checkpoint of each grafted run of the first seed at the default learning rate) -> exact bounds
on the step norms and directions; each optimizer at its best learning rate (fewest steps to
:data:`~scalewise.validation.ics.runs.LOSS_THRESHOLD`) -> the slides' first claim as a one-sided
bound on the seed-paired ratio of steps, declared before the reference run, and records of the
final losses and accuracies -> text and figure.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from scalewise.models.grafting import AdaGraft
from scalewise.models.store import Run
from scalewise.models.training import RunState, checkpoint_state, initial_state, run_data
from scalewise.validation.estimators import Interval, interval
from scalewise.validation.ics.runs import (
    AS_FAST,
    EXACT,
    LOSS_THRESHOLD,
    Grid,
    best_rates,
    config,
    curves_figure,
    final,
    losses,
    smoothed,
    steps_table,
    steps_to_threshold,
)
from scalewise.validation.markdown import (
    counted,
    grid_ends,
    interval_cell,
    listing,
    markdown_table,
)
from scalewise.validation.report import Bound, Record, Report, curve_frame, record
from scalewise.validation.suite import Settings, Size, StepsAndSeeds, open_store, train_groups

EXPERIMENT = "grafting"
GRAFT_RUNS: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer.name": "sgd"},
    "adam": {"optimizer.name": "adam"},
    "graft:adam>sgd": {"optimizer.name": "adam", "optimizer.graft_direction": "sgd"},
    "graft:sgd>adam": {"optimizer.name": "sgd", "optimizer.graft_direction": "adam"},
}
"""Label -> optimizer; ``graft:M>D`` is M's magnitude on D's direction (000 Algorithm 2)."""
REFERENCES = {"graft:adam>sgd": "adam", "graft:sgd>adam": "sgd"}
"""Grafted run -> the run whose magnitude it takes."""
LEARNING_RATES = {"sgd": (0.03, 0.1, 0.3, 1.0), "adam": (3e-4, 1e-3, 3e-3, 1e-2)}
"""Magnitude optimizer -> its learning-rate grid; a grafted run takes its magnitude's grid."""
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}
"""Magnitude optimizer -> its usual learning rate, the runs of the exact check."""
CHECKS = 6  # grafted steps checked from each of a run's initial state and last checkpoint
BOUND = Bound(EXPERIMENT, "steps_ratio", 1 - 1 / AS_FAST, optimizer="graft:adam>sgd",
              side="at most", description=(
                  f"Adam's magnitude on SGD's direction trains as fast as Adam (000, after "
                  f"Algorithm 2): at most {AS_FAST:g}x Adam's steps to the loss threshold, each "
                  "at its best learning rate; the upper end of the 95% interval of the "
                  "seed-paired ratio"))

SCALES = {Size.SMOKE: StepsAndSeeds(steps=120, seeds=1),
          Size.REFERENCE: StepsAndSeeds(steps=1000, seeds=5)}


def grafting(report: Report, settings: Settings) -> None:
    """AdaGraft both ways against SGD and Adam, over learning-rate grids."""
    grid = graft_runs(settings)
    checks = pd.concat([step_checks(grid[label, default_rate(label)][0], settings)
                        .assign(label=label) for label in REFERENCES], ignore_index=True)
    steps = steps_to_threshold(grid, LOSS_THRESHOLD)
    best = best_rates(steps)
    runs = {label: grid[label, best[label]] for label in GRAFT_RUNS}
    curves = {label: np.mean([smoothed(losses(run)) for run in group], axis=0)
              for label, group in runs.items()}
    accuracy = {label: float(np.mean([final(run, "test_accuracy") for run in group]))
                for label, group in runs.items()}
    ratios = {label: interval(steps[label, best[label]] / steps[ref, best[ref]])
              for label, ref in REFERENCES.items()}
    report.add_runs(run for group in grid.values() for run in group)
    check = check_records(checks)
    report.add(*check, *training_records(curves, accuracy),
               *(record(EXPERIMENT, label, "", "steps_ratio", predicted=1.0, measured=i.high)
                 for label, i in ratios.items()))
    for label, curve in curves.items():
        report.add_curves(curve_frame(EXPERIMENT, label, "", "train_loss", "measured",
                                      np.arange(len(curve)), curve))
    report.bounds += [*bounds(), BOUND]
    section = report.section("Grafting: AdaGraft (000 Algorithm 2)",
                             text(settings, runs, check, steps, best, curves, accuracy, ratios))
    section.figure("ics_grafting_curves", curves_figure(
        {f"{label} (lr {best[label]:g})": c for label, c in curves.items()}),
        "Smoothed training loss of SGD, Adam and the two grafted optimizers, mean over seeds, "
        "each at its best learning rate.")


def default_rate(label: str) -> float:
    """The usual learning rate of ``label``'s magnitude optimizer (:data:`DEFAULT_LR`)."""
    return DEFAULT_LR[GRAFT_RUNS[label]["optimizer.name"]]


def graft_runs(settings: Settings) -> Grid:
    """Per label and learning rate of its magnitude's grid, its runs over the seeds."""
    scale = settings.scale(SCALES)
    seeds = range(settings.seed, settings.seed + scale.seeds)
    return train_groups({(label, lr): [config(seed, scale.steps,
                                              {**changes, "optimizer.lr": lr})
                                       for seed in seeds]
                         for label, changes in GRAFT_RUNS.items()
                         for lr in LEARNING_RATES[changes["optimizer.name"]]},
                        settings, desc="ics: grafting")


# ------------------------------------------------------------------------------ the exact check


def step_checks(run: Run, settings: Settings) -> pd.DataFrame:
    """:func:`check_steps` of the grafted ``run`` from its initial state and from its last
    checkpoint, on the batches the run's own sampler draws from there."""
    with open_store(settings) as store:
        states = [initial_state(run.config), checkpoint_state(run.config, store)]
    train = run_data(run.config).train
    return pd.DataFrame([row for state in states
                         for row in check_steps(state, train.inputs, train.targets)])


def check_steps(state: RunState, inputs: torch.Tensor,
                targets: torch.Tensor) -> list[dict[str, Any]]:
    """:data:`CHECKS` steps of the AdaGraft optimizer of ``state`` from there, each checked by
    :func:`check_step` (step ``k`` counts the updates done before it)."""
    rows = []
    for i in range(CHECKS):
        batch = state.sampler.next()
        rows += check_step(state.model, state.optimizer, inputs[batch], targets[batch],
                           state.step + i)
    return rows


def check_step(model: nn.Module, optimizer: AdaGraft, inputs: torch.Tensor,
               targets: torch.Tensor, step: int) -> list[dict[str, Any]]:
    """One grafted step on the batch, beside the steps deep copies of its magnitude and
    direction optimizers take from the same state and gradient: per parameter tensor the
    grafted step's norm, the magnitude step's norm and the cosine of the grafted step with the
    direction step."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(inputs), targets).backward()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    names = {id(p): name for name, p in model.named_parameters()}
    twins = {role: twin_step(getattr(optimizer, role), names)
             for role in ("magnitude", "direction")}
    optimizer.step()
    rows = []
    for name, param in model.named_parameters():
        grafted = param.detach() - start[name]
        rows.append({"step": step, "tensor": name, "grafted_norm": float(grafted.norm()),
                     "magnitude_norm": float(twins["magnitude"][name].norm()),
                     "cosine": float(F.cosine_similarity(
                         grafted.flatten(), twins["direction"][name].flatten(), dim=0))})
    return rows


def twin_step(inner: torch.optim.Optimizer, names: dict[int, str]) -> dict[str, torch.Tensor]:
    """The step a deep copy of ``inner`` takes from its state with the current gradients, per
    parameter name; ``inner`` and its parameters are left as they are."""
    twin = copy.deepcopy(inner)
    params = [p for g in twin.param_groups for p in g["params"]]
    originals = [p for g in inner.param_groups for p in g["params"]]
    for param, original in zip(params, originals):
        param.grad = original.grad.clone()
    twin.step()
    return {names[id(o)]: (p - o).detach() for o, p in zip(originals, params)}


def check_records(checks: pd.DataFrame) -> list[Record]:
    return [r for row in checks.itertuples() for r in (
        record(EXPERIMENT, row.label, row.tensor, f"step_norm@{row.step}",
               predicted=row.magnitude_norm, measured=row.grafted_norm),
        record(EXPERIMENT, row.label, row.tensor, f"step_cosine@{row.step}",
               predicted=1.0, measured=row.cosine))]


# ------------------------------------------------------------------------------ training


def training_records(curves: dict[str, np.ndarray], accuracy: dict[str, float]) -> list[Record]:
    """Each grafted run's final smoothed loss and test accuracy against its magnitude's run."""
    return [r for label, reference in REFERENCES.items() for r in (
        record(EXPERIMENT, label, "", "final_loss", predicted=curves[reference][-1],
               measured=curves[label][-1]),
        record(EXPERIMENT, label, "", "test_accuracy", predicted=accuracy[reference],
               measured=accuracy[label]))]


def bounds() -> list[Bound]:
    return [
        Bound(EXPERIMENT, "step_norm", EXACT, description="per tensor, the grafted step has "
              "the magnitude optimizer's step norm (000 Algorithm 2, line 6)"),
        Bound(EXPERIMENT, "step_cosine", EXACT, description="per tensor, the grafted step "
              "points along the direction optimizer's step"),
    ]


def text(settings: Settings, runs: dict[str, list[Run]], check: list[Record],
         steps: dict[tuple[str, float], np.ndarray], best: dict[str, float],
         curves: dict[str, np.ndarray], accuracy: dict[str, float],
         ratios: dict[str, Interval]) -> str:
    scale = settings.scale(SCALES)
    model = runs["sgd"][0].config.model
    worst = {q: max(r.rel_error for r in check if r.quantity.startswith(q))
             for q in ("step_norm", "step_cosine")}
    claim = ratios["graft:adam>sgd"]
    return (
        f"An MLP of {model.depth} hidden layers of {model.width} with BN before each ReLU "
        "(the default digits network of `models.build_model`) on digits, batch 64, "
        f"{scale.steps} steps, {counted(scale.seeds, 'seed')}, trained by `models.train`: SGD "
        f"at learning rates {list(LEARNING_RATES['sgd'])}, Adam at "
        f"{list(LEARNING_RATES['adam'])}, Adam's "
        "magnitude on SGD's direction (`graft:adam>sgd`, `models.grafting.AdaGraft`, at "
        "Adam's rates) and SGD's magnitude on Adam's direction (`graft:sgd>adam`, at SGD's). "
        "Grafting is per parameter tensor (the slides: 'per-layer'; a layer's weight and BN's "
        "scale and shift are separate tensors here).\n\n"
        f"**Exact check.** For {CHECKS} steps from each grafted run's initial state and "
        f"{CHECKS} from its last checkpoint (the first seed at the default learning rate, "
        "continuing the run's own batches), deep copies of the magnitude and direction "
        "optimizers step from the same state and gradient; per tensor the grafted step norm "
        "must equal the magnitude optimizer's (`step_norm@k`) and the grafted step must point "
        "along the direction optimizer's (`step_cosine@k`, predicted 1): largest relative "
        f"errors {worst['step_norm']:.2g} and {worst['step_cosine']:.2g} (bound {EXACT:g}).\n\n"
        f"**Training.** Steps to a smoothed loss of {LOSS_THRESHOLD}, mean over seeds with its "
        "95% interval (each optimizer's best learning rate, the fewest steps, in bold):\n\n"
        + markdown_table(steps_table(steps, best), index=False) + "\n\n"
        + "".join(grid_ends({label: best[label] for label in GRAFT_RUNS
                             if GRAFT_RUNS[label]["optimizer.name"] == magnitude},
                            rates, f"{magnitude}'s learning rates")
                  for magnitude, rates in LEARNING_RATES.items()).strip() + "\n\n"
        "**The slides' claims** (000, after Algorithm 2): Adam's magnitudes grafted onto SGD "
        "work as well as Adam (shown there for BERT; declared here: at most "
        f"{AS_FAST:g}x Adam's steps), and SGD's magnitudes on Adam's direction partly close "
        "the gap to SGD where SGD is better (no bound). Seed-paired ratios of steps, each at "
        "its best learning rate: `graft:adam>sgd` / `adam` " + interval_cell(claim)
        + f" ({'within' if claim.high <= AS_FAST else 'not within'} the margin), "
        "`graft:sgd>adam` / `sgd` " + interval_cell(ratios["graft:sgd>adam"]) + ". At the "
        "best learning rates, final smoothed loss: "
        + listing({k: c[-1] for k, c in curves.items()})
        + "; test accuracy: " + listing(accuracy, "{:.3f}") + ".")
