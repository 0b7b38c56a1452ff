"""AdaGraft (000 Algorithm 2, Agarwal et al. 2020): the step of one optimizer's magnitude on
another's direction, per parameter tensor, both ways between SGD and Adam.

Config: the default digits BN MLP with the optimizers of :data:`GRAFT_RUNS`. Runs
(:func:`models.train`) -> the exact check of grafted steps (from the runs' initial states and
their last checkpoints) and the smoothed losses and test accuracies -> records -> exact bounds on
the step norms and directions, none on training (it depends on the task) -> text and figure.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from scalewise.models.grafting import AdaGraft
from scalewise.models.store import Run
from scalewise.models.training import RunState, checkpoint_state, initial_state, run_data
from scalewise.validation.ics.runs import EXACT, config, curves_figure, final, losses, smoothed
from scalewise.validation.markdown import listing
from scalewise.validation.report import Bound, Record, Report, curve_frame, record
from scalewise.validation.suite import Settings, Size, open_store, train_runs

EXPERIMENT = "grafting"
GRAFT_RUNS: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer.name": "sgd", "optimizer.lr": 0.1},
    "adam": {"optimizer.name": "adam", "optimizer.lr": 1e-3},
    "graft:adam>sgd": {"optimizer.name": "adam", "optimizer.lr": 1e-3,
                       "optimizer.graft_direction": "sgd"},
    "graft:sgd>adam": {"optimizer.name": "sgd", "optimizer.lr": 0.1,
                       "optimizer.graft_direction": "adam"},
}
"""Label -> optimizer; ``graft:M>D`` is M's magnitude on D's direction (000 Algorithm 2)."""
REFERENCES = {"graft:adam>sgd": "adam", "graft:sgd>adam": "sgd"}
"""Grafted run -> the run whose magnitude it takes."""
CHECKS = 6  # grafted steps checked from each of a run's initial state and last checkpoint


@dataclass(frozen=True)
class Scale:
    steps: int


SCALES = {Size.SMOKE: Scale(steps=120), Size.REFERENCE: Scale(steps=1000)}


def grafting(report: Report, settings: Settings) -> None:
    """AdaGraft both ways against SGD and Adam."""
    runs = dict(zip(GRAFT_RUNS, train_runs(
        [config(settings.seed, settings.scale(SCALES).steps, changes)
         for changes in GRAFT_RUNS.values()], settings, desc="ics: grafting")))
    curves = {label: smoothed(losses(run)) for label, run in runs.items()}
    accuracy = {label: final(run, "test_accuracy") for label, run in runs.items()}
    checks = pd.concat([step_checks(runs[label], settings).assign(label=label)
                        for label in REFERENCES], ignore_index=True)
    report.add_runs(runs.values())
    report.add(*check_records(checks), *training_records(curves, accuracy))
    for label, curve in curves.items():
        report.add_curves(curve_frame(EXPERIMENT, label, "", "train_loss", "measured",
                                      np.arange(len(curve)), curve))
    report.bounds += bounds()
    section = report.section("Grafting: AdaGraft (000 Algorithm 2)",
                             text(settings, runs, curves, accuracy))
    section.figure("ics_grafting_curves", curves_figure(curves),
                   "Smoothed training loss of SGD, Adam and the two grafted optimizers.")


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


def text(settings: Settings, runs: dict[str, Run], curves: dict[str, np.ndarray],
         accuracy: dict[str, float]) -> str:
    loss_error = {label: abs(curves[label][-1] / curves[ref][-1] - 1)
                  for label, ref in REFERENCES.items()}
    model = runs["sgd"].config.model
    return (
        f"An MLP of {model.depth} hidden layers of {model.width} with BN before each ReLU "
        "(the default digits network of `models.build_model`) on digits, batch 64, "
        f"{settings.scale(SCALES).steps} steps, trained by `models.train`: SGD (lr 0.1), "
        "Adam (lr 1e-3), Adam's magnitude on SGD's direction (`graft:adam>sgd`, "
        "`models.grafting.AdaGraft`) and SGD's magnitude on Adam's direction "
        "(`graft:sgd>adam`). Grafting is per parameter tensor (the slides: 'per-layer'; a "
        "layer's weight and BN's scale and shift are separate tensors here).\n\n"
        f"**Exact check.** For {CHECKS} steps from each grafted run's initial state and "
        f"{CHECKS} from its last checkpoint (continuing the run's own batches), deep copies of "
        "the magnitude and direction optimizers step from the same state and gradient; per "
        "tensor the grafted step norm must equal the magnitude optimizer's (`step_norm@k`) "
        "and the grafted step must point along the direction optimizer's (`step_cosine@k`, "
        "predicted 1): both hold to rounding.\n\n"
        "**The slides' claims** (000, after Algorithm 2): Adam's magnitudes grafted onto SGD "
        "work as well as Adam (shown there for BERT), and SGD's magnitudes on Adam's direction "
        "partly close the gap to SGD where SGD is better. The records compare each grafted run "
        "with the run whose magnitude it takes (final smoothed loss, test accuracy). Final "
        "smoothed loss: " + listing({k: c[-1] for k, c in curves.items()})
        + "; test accuracy: " + listing(accuracy, "{:.3f}")
        + ". Rel. difference of the final loss from the magnitude's optimizer: "
        + listing(loss_error, "{:.2g}")
        + ". On this small BN network all four train; no bound is declared on these training "
        "comparisons, which depend on the task and the learning rates.")
