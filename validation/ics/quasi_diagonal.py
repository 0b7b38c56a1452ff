"""Quasi-diagonal preconditioning (001 Sec. 3.1, Eqs. 9-10): gradient descent in the coordinates
``W~ = W Sigma^(1/2)``, ``b~ = b + W m`` is exactly invariant to a shift of a layer's inputs,
where SGD and the diagonal preconditioner are not.

Config: the digits MLP without normalization with its inputs shifted (``model.input_shift``,
the first bias compensating it), each optimizer of :data:`PRECONDITIONERS` at the best
learning rate of a grid. Runs (:func:`models.train`) -> the shifted run's smoothed loss against
the unshifted run's at the same lr -> ``loss@k`` records -> an exact bound on the
quasi-diagonal one -> text and figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalewise import models
from scalewise.models.store import Run
from scalewise.models.training import run_data
from scalewise.validation.ics.runs import (
    EXACT,
    config,
    curves_figure,
    losses,
    sizes,
    smoothed,
    steps_to,
)
from scalewise.validation.markdown import listing
from scalewise.validation.report import Bound, Report, curve_frame, record, spread_steps
from scalewise.validation.suite import Settings, Size, train_runs

EXPERIMENT = "quasi-diagonal"
INPUT_SHIFT = 3.0  # added to every (standardized) pixel
PRECONDITIONERS = ("sgd", "diagonal", "quasi-diagonal")  # values of optimizer.name
LR_GRID = (0.03, 0.1, 0.01, 0.3, 0.003)
"""Learning rates tried by every optimizer, in the order a shorter grid takes them."""
DAMPING = 1e-3  # optimizer.statistics.damping of the two preconditioners
THRESHOLD = 0.1  # the smoothed loss whose first step the text reports
CHECKS = 12  # steps of a curve at which it is recorded
NETWORK = {"model.norm": "none", "model.width": 64, "model.depth": 2,
           "optimizer.statistics.damping": DAMPING}


@dataclass(frozen=True)
class Scale:
    steps: int
    lr_grid: int  # learning rates tried per optimizer: the first lr_grid of LR_GRID


SCALES = {Size.SMOKE: Scale(steps=120, lr_grid=2), Size.REFERENCE: Scale(steps=1000, lr_grid=5)}


def quasi_diagonal(report: Report, settings: Settings) -> None:
    """The quasi-diagonal preconditioner vs SGD vs the diagonal one, on shifted inputs."""
    tuned = {name: best_lr(name, settings) for name in PRECONDITIONERS}
    references = train_runs([run_config(settings, name, run.config.optimizer.lr, 0.0)
                             for name, (run, _) in tuned.items()], settings,
                            desc="ics: unshifted inputs")
    unshifted = {name: smoothed(losses(run)) for name, run in zip(tuned, references)}
    report.add_runs([*(run for run, _ in tuned.values()), *references])
    for name, (run, curve) in tuned.items():
        report.add(*(record(EXPERIMENT, name, "", f"loss@{k}", predicted=unshifted[name][k],
                            measured=curve[k])
                     for k in spread_steps(len(curve) // CHECKS, len(curve) - 1, CHECKS)))
        steps = np.arange(len(curve))
        report.add_curves(curve_frame(EXPERIMENT, name, "", "train_loss", "measured", steps,
                                      curve))
        report.add_curves(curve_frame(EXPERIMENT, name, "", "train_loss", "predicted", steps,
                                      unshifted[name]))
    report.bounds.append(Bound(
        EXPERIMENT, "loss", EXACT, optimizer="quasi-diagonal",
        description="quasi-diagonal: the run on shifted inputs = the run on unshifted inputs "
        "(001 Eq. 9 invariance)"))
    section = report.section("Quasi-diagonal preconditioning (001 Sec. 3.1, Eqs. 9-10)",
                             text(settings, tuned, unshifted))
    styles = {f"{n} ({kind})": f"C{i}{line}" for i, n in enumerate(PRECONDITIONERS)
              for kind, line in (("shifted", "-"), ("unshifted", ":"))}
    curves = {f"{n} (shifted)": c for n, (_, c) in tuned.items()} | {
        f"{n} (unshifted)": c for n, c in unshifted.items()}
    section.figure("ics_quasi_diagonal_curves", curves_figure(curves, THRESHOLD, styles),
                   "Smoothed training loss of each optimizer (best lr) on shifted inputs "
                   "(solid) and on unshifted inputs (dotted).")


def run_config(settings: Settings, name: str, lr: float, shift: float) -> models.TrainConfig:
    """The digits MLP trained by optimizer ``name`` at ``lr`` on inputs shifted by ``shift``
    (the first bias moved by ``-W shift 1``, so that every shift starts from one function)."""
    return config(settings.seed, settings.scale(SCALES).steps, {
        **NETWORK, "model.input_shift": shift, "optimizer.name": name, "optimizer.lr": lr})


def best_lr(name: str, settings: Settings) -> tuple[Run, np.ndarray]:
    """The run of the grid with the lowest final smoothed loss on the shifted inputs (diverged
    runs lose), and its smoothed curve."""
    grid = LR_GRID[:settings.scale(SCALES).lr_grid]
    runs = train_runs([run_config(settings, name, lr, INPUT_SHIFT) for lr in grid], settings,
                      desc=f"ics: {name} learning rates")
    curves = [smoothed(losses(run)) for run in runs]
    best = min(range(len(runs)), key=lambda i: np.nan_to_num(curves[i][-1], nan=np.inf))
    return runs[best], curves[best]


def input_mean_sq(run_config: models.TrainConfig) -> float:
    """``||m||^2`` of the first layer's inputs: the mean training image, shifted."""
    inputs = run_data(run_config).train.inputs.flatten(1) + run_config.model.input_shift
    mean = inputs.mean(0)
    return float(mean @ mean)


def text(settings: Settings, tuned: dict[str, tuple[Run, np.ndarray]],
         unshifted: dict[str, np.ndarray]) -> str:
    scale = settings.scale(SCALES)
    shift_error = {name: float(np.nanmax(np.abs(tuned[name][1] / unshifted[name] - 1)))
                   for name in PRECONDITIONERS}
    shifted_config = run_config(settings, "sgd", LR_GRID[0], INPUT_SHIFT)
    return (
        f"A {sizes(shifted_config)} ReLU MLP without normalization on digits, every "
        f"standardized pixel shifted by {INPUT_SHIFT:g} (`model.input_shift`: ||m||^2 = "
        f"{input_mean_sq(shifted_config):.0f} at the input against "
        f"{input_mean_sq(run_config(settings, 'sgd', LR_GRID[0], 0.0)):.3g} unshifted, and "
        "the hidden ReLU activations are uncentered too), batch 64, "
        f"{scale.steps} steps, trained by `models.train`. Optimizers: SGD; the diagonal "
        "preconditioner "
        "`models.quasi_diagonal.DiagonalSecondMoment` (the diagonal of 001 Eq. 10's curvature: "
        "each input column divided by its running E[a_j^2]); and "
        "`models.quasi_diagonal.QuasiDiagonal` (GD in W~ = W Sigma^(1/2), b~ = b + W m with "
        f"running statistics, damping {DAMPING:g}). Each takes the best lr of "
        f"the same grid {sorted(LR_GRID[:scale.lr_grid])} (lowest final loss): "
        + listing({n: run.config.optimizer.lr for n, (run, _) in tuned.items()}, "{:g}")
        + f". Steps to a smoothed loss of {THRESHOLD}: "
        + listing({n: steps_to(c, THRESHOLD) for n, (_, c) in tuned.items()}, "{:.0f}")
        + "; final smoothed loss: " + listing({n: c[-1] for n, (_, c) in tuned.items()})
        + ".\n\nThe prediction recorded (`loss@k`) is each optimizer's run with the same lr on "
        "the unshifted inputs (same initial function: the first bias is moved by -W m). The "
        "quasi-diagonal update is exactly invariant to the input shift (its statistics shift "
        "with the data, the first batch initializing them), so its two curves must agree to "
        "rounding; SGD and the diagonal preconditioner are not invariant. Largest rel. "
        "difference over the run: " + listing(shift_error, "{:.2g}")
        + ". A NaN in a curve is a diverged run.")
