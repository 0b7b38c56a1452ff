"""Weight norm, effective learning rate, angular update and gradient-to-weight ratio of a
scale-invariant weight over a learning-rate schedule, by every source the project has: theory's
continuous solution and quasi-static value, the exact per-step recurrence, and the sphere engine
running the optimizer itself (:mod:`scalewise.sim.norm_schedules`,
:mod:`scalewise.theory.norm_under_schedules`).

The norm equations have two kinds: a step that scales with the gradient (``"sgd"``: SGD,
momentum and Nesterov SGD) and a step of fixed size (``"scale_free"``: AdamW, Lion, Muon). An
optimizer with momentum enters its kind's equation with the energy that gives its own
equilibrium at the schedule's peak (:func:`matched_scale`): ``g^2 = x*^2 lam (2 - eta lam) /
eta`` or ``C = x* lam (2 - eta lam) / eta``, exact for SGD and for a momentum-free scale-free
step, leading order for the others (the buffer relaxed against the norm). The angular update of
the theory curves is that step's size over the norm, ``eta g / x`` or ``eta sqrt(C / x)``; with
momentum the sphere's differs from it by the factor ``sqrt(K)`` of
:data:`scalewise.theory.lion_muon_nesterov.ANGLE_FACTOR`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalewise import checks
from scalewise.figures.comparison import Comparison
from scalewise.sim import norm_schedules
from scalewise.sim.dynamics import simulate
from scalewise.sim.effective import effective_lr
from scalewise.sim.equilibria import equilibrium
from scalewise.sim.schedules import (
    Constant,
    Exponential,
    Linear,
    StepDecay,
    WarmupCosine,
    WarmupStableDecay,
)
from scalewise.vocabulary import Optimizer

SCHEDULES = ("constant", "step", "linear", "cosine", "warmup-stable-decay", "exponential")
OPTIMIZERS = tuple(o.value for o in Optimizer
                   if o.properties.simulated and o.properties.shrinks(o.properties.decay))
"""The optimizers whose decay shrinks the weights by ``1 - lr wd`` (not preconditioned)."""
RECORDS = 400


def make_schedule(name: str, steps: int):
    """The schedule ``name`` over ``steps``: step decays by 10 at 50% and 75%, the exponential
    to 1% at the end, warmup-stable-decay with 5% warmup and 20% decay."""
    checks.one_of("schedule", name, SCHEDULES)
    return {"constant": lambda: Constant(),
            "step": lambda: StepDecay((steps // 2, 3 * steps // 4), 0.1),
            "linear": lambda: Linear(),
            "cosine": lambda: WarmupCosine(0),
            "warmup-stable-decay": lambda: WarmupStableDecay(steps // 20, 0.2),
            "exponential": lambda: Exponential(0.01 ** (1 / steps))}[name]()


def kind_of(optimizer: Optimizer) -> str:
    return "sgd" if optimizer.properties.effective_lr_power == 2 else "scale_free"


def matched_scale(optimizer: Optimizer, *, lr: float, weight_decay: float, momentum: float,
                  betas: tuple[float, float], dim: int) -> float:
    """``g`` or ``C`` of the optimizer's kind that reproduces its equilibrium at ``lr``."""
    x_star = float(equilibrium(optimizer.value, lr=lr, weight_decay=weight_decay,
                               momentum=momentum, betas=betas, dim=dim)["norm_sq"])
    balance = weight_decay * (2 - lr * weight_decay) / lr
    if kind_of(optimizer) == "sgd":
        return float(np.sqrt(x_star**2 * balance))
    return x_star * balance


def schedule_table(optimizer: str, schedule: str, *, lr: float, weight_decay: float,
                   steps: int, corrected: bool = False, momentum: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.99), dim: int = 64, runs: int = 4,
                   seed: int = 0) -> pd.DataFrame:
    """Long table (``step``, ``source``, ``quantity``, ``value``) of ``norm_sq``,
    ``effective_lr``, ``angular_update`` and ``grad_weight_ratio`` (gradient norm 1 at unit
    weight norm) from the sources of the module docstring; the sphere engine only without
    ``corrected`` (it runs a constant decay)."""
    name = Optimizer.parse(optimizer, simulated=True)
    checks.one_of("optimizer", name.value, OPTIMIZERS)
    steps = checks.integer("steps", steps, 10)
    lr_t = lr * make_schedule(schedule, steps).factors(steps)
    wd_t = norm_schedules.decay_schedule(lr_t, weight_decay, corrected=corrected)
    kind = kind_of(name)
    scale = matched_scale(name, lr=lr, weight_decay=weight_decay, momentum=momentum,
                          betas=betas, dim=dim)
    common = dict(scale=scale, init_norm_sq=1.0)
    norms = {
        "theory (continuous)": norm_schedules.norm_continuous(kind, lr_t, wd_t, **common)[:-1],
        "theory (quasi-static)": norm_schedules.quasi_static_norm_sq(kind, lr_t, wd_t,
                                                                     scale=scale),
        "simulation (recurrence)": norm_schedules.norm_recurrence(kind, lr_t, wd_t,
                                                                  **common)[:-1],
    }
    keep = np.unique(np.linspace(0, steps - 1, RECORDS).astype(int))
    rows = [_rows(source, keep, x[keep], lr_t[keep], name, kind, scale)
            for source, x in norms.items()]
    if not corrected:
        run = simulate(name.value, lr=lr, weight_decay=weight_decay, steps=steps,
                       momentum=momentum, betas=betas, dim=dim, runs=runs, seed=seed,
                       schedule=lr_t / lr)
        sphere = _rows("simulation (sphere)", keep, run.run_mean("norm_sq")[keep], lr_t[keep],
                       name, kind, scale)
        sphere.loc[sphere["quantity"] == "angular_update", "value"] = (
            run.run_mean("angular_update")[keep])
        rows.append(sphere)
    return pd.concat(rows, ignore_index=True)


def _rows(source: str, step: np.ndarray, x: np.ndarray, lr_t: np.ndarray, name: Optimizer,
          kind: str, scale: float) -> pd.DataFrame:
    angle = lr_t * scale / x if kind == "sgd" else lr_t * np.sqrt(scale / x)
    values = {"norm_sq": x, "effective_lr": effective_lr(name, x, lr_t),
              "angular_update": angle,
              "grad_weight_ratio": norm_schedules.grad_weight_ratio(x, 1.0)}
    return pd.concat([pd.DataFrame({"step": step, "source": source, "quantity": quantity,
                                    "value": value}) for quantity, value in values.items()],
                     ignore_index=True)


TITLES = {"norm_sq": "‖w‖²", "effective_lr": "effective LR",
          "angular_update": "angular update (rad/step)",
          "grad_weight_ratio": "‖∇J(w)‖ / ‖w‖"}
"""The panels of :func:`schedule_comparison`, by quantity."""


def schedule_comparison(data: pd.DataFrame) -> Comparison:
    """:func:`schedule_table` as theory (its ``theory (...)`` sources) beside data (the
    simulations), one panel per quantity of :data:`TITLES`."""
    rows = data[data["quantity"].isin(list(TITLES))]
    table = pd.DataFrame({
        "panel": rows["quantity"].map(TITLES), "series": rows["source"],
        "role": np.where(rows["source"].str.startswith("theory"), "theory", "data"),
        "step": rows["step"], "value": rows["value"]})
    return Comparison(table.reset_index(drop=True), theory="theory", data="simulation",
                      log_y=tuple(TITLES.values()))
