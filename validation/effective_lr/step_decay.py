"""The effective LR's response to step decays of the learning rate (004 Sec. 4.1, Fig. 3): an
immediate drop by ``gamma``, then recovery towards the new equilibrium, ``sqrt(gamma)`` times the
old (001 Eq. 25).

Config: SGD with weight decay on every network of the size, the learning rate times
:data:`GAMMA` at a third and two thirds of the run, seeds; per-unit records every step. Runs ->
per scale-invariant unit, :func:`scalewise.sim.drive` fed the measured ``g_k`` and the run's
schedule (:func:`.driven_sgd.driven_norm_sq`) -> the layer's effective LR (the unit mean of
``alpha_k / ||w_i||^2``) driven and measured at steps spread over the run and around each decay
-> a bound -> a table and a figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise.validation.effective_lr.driven_sgd import driven_norm_sq
from scalewise.validation.effective_lr.equilibrium import SETTINGS, scaled
from scalewise.validation.effective_lr.plots import grid, legend, plot_pair
from scalewise.validation.effective_lr.runs import (
    FixedRuns,
    Measured,
    config,
    measure,
    seeds,
    step_lrs,
)
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import Bound, Record, Report, curve_frame, record, spread_steps
from scalewise.validation.suite import Settings, Size

EXPERIMENT = "step_decay"
GAMMA = 0.3  # the learning rate's factor at each decay
LIMIT = 0.05  # the driven effective LR, every recorded step, layer and seed
RECORD_POINTS = 12


SCALES = {
    Size.SMOKE: FixedRuns(networks=("mlp-bn",), seeds=1, steps=90),
    Size.REFERENCE: FixedRuns(networks=("mlp-bn", "mlp-wn"), seeds=2, steps=1500),
}


def step_decay(report: Report, settings: Settings) -> None:
    """The driven effective LR through two step decays against the measured one."""
    scale = settings.scale(SCALES)
    milestones = (scale.steps // 3, 2 * scale.steps // 3)
    sgd = scaled(next(s for s in SETTINGS if s.optimizer == "sgd"), settings)
    decays = {"optimizer.schedule": "step", "optimizer.milestones": milestones,
              "optimizer.gamma": GAMMA}
    jobs = [(net, sgd, seed, config(net, sgd, seed=seed, steps=scale.steps, extra=decays))
            for net in scale.networks for seed in seeds(settings, scale.seeds)]
    measured = measure(jobs, settings, desc="effective-lr step decays")
    at = sorted({*spread_steps(0, scale.steps - 1, RECORD_POINTS),
                 *(k + d for k in milestones for d in (-1, scale.steps // 30))})
    curves = {(m.layer(layer), m.seed): effective_lrs(m, layer, mask)
              for m in measured for layer, mask in m.compared(margin=0.0).items()}
    records = [record(EXPERIMENT, "sgd", layer, f"effective_lr@{k}",
                      predicted=frame.loc[k, "predicted"], measured=frame.loc[k, "measured"])
               for (layer, _), frame in curves.items() for k in at]
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.add_curves(pd.concat([curve_frame(EXPERIMENT, "sgd", layer, "effective_lr", source,
                                             frame.index.to_numpy(), frame[source].to_numpy())
                                 for (layer, seed), frame in curves.items() if seed == settings.seed
                                 for source in frame.columns], ignore_index=True))
    report.bounds.append(Bound(EXPERIMENT, "effective_lr", LIMIT, optimizer="sgd",
                               description="effective LR through two step decays, 001 Eq. (23) "
                               "driven per unit by the measured gradient norms (max)"))
    section = report.section("Step decays", _text(records, milestones, len(measured)))
    section.figure("step-decay", _figure(curves, settings.seed),
                   f"Effective LR through two step decays (gamma = {GAMMA:g}): measured (solid) "
                   "and driven per unit by the measured gradient norms (dashed), seed "
                   f"{settings.seed}.")


def effective_lrs(m: Measured, layer: str, mask: np.ndarray) -> pd.DataFrame:
    """The layer's effective LR after each step, the unit mean of ``alpha_{k+1} /
    ||w_{k+1}||^2``, measured and predicted (driven), indexed by step ``k``."""
    predicted, measured = driven_norm_sq(m, layer, mask)
    steps = np.arange(len(measured))
    lr = step_lrs(m, len(steps) + 1)[1:]
    return pd.DataFrame({"measured": (lr[:, None] / measured).mean(axis=1),
                         "predicted": (lr[:, None] / predicted).mean(axis=1)}, index=steps)


def _text(records: list[Record], milestones: tuple[int, ...], runs: int) -> str:
    frame = pd.DataFrame([r.__dict__ for r in records])
    table = frame.groupby("layer", sort=False)["rel_error"].agg(median="median", max="max")
    return "\n".join([
        f"SGD with weight decay, {runs} runs, the learning rate multiplied by {GAMMA:g} at "
        f"steps {', '.join(map(str, milestones))}. 004 Sec. 4.1 (Fig. 3): the effective LR "
        "drops with the learning rate, then climbs back as the norm shrinks towards its new "
        "equilibrium, $\\sqrt{\\gamma}$ times the old (001 Eq. 25). The prediction drives each "
        "scale-invariant unit's recurrence (001 Eq. 23) by its measured $g_k$ and the run's "
        "schedule; the layer's effective LR is the unit mean of $\\alpha_k/\\|w_i\\|^2$, driven "
        f"and measured, compared at {RECORD_POINTS} steps spread over the run and just before "
        "and after each decay. Relative error per layer (seeds pooled):",
        "", markdown_table(table),
        "", f"The largest error is {table['max'].max():.3g} (bound {LIMIT:g}).",
    ])


def _figure(curves: dict[tuple[str, int], pd.DataFrame], seed: int) -> Figure:
    layers = [layer for layer, s in curves if s == seed]
    fig, axes = grid(["effective_lr"], layers)
    for ax, layer in zip(axes[0], layers):
        frame = curves[(layer, seed)]
        plot_pair(ax, frame["measured"], frame["predicted"], "measured / driven", "C0")
        ax.set(title=layer, xlabel="step", ylabel="effective LR", yscale="log")
        legend(ax)
    return fig
