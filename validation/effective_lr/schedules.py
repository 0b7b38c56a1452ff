"""Weight and gradient norms under decaying learning-rate schedules, with and without the
corrected decay (beyond the seeds: Defazio 2025; :mod:`scalewise.theory.norm_under_schedules`).

Config: SGD at the equilibrium setting on the digits MLP with batch and weight norm, under a
cosine and a warmup-stable-decay schedule, each with the decay as configured and with Defazio's
corrected decay ``lam eta_k / eta_max``, seeds; per-unit records every step. Runs -> per
scale-invariant unit, the exact per-step map (001 Eq. 23) under the run's learning rate and
decay of each step, driven by the unit's measured ``g_k`` (:func:`.driven_sgd.driven_norm_sq`)
-> the layer's ``||W||^2 = sum_i ||w_i||^2`` and ``||grad J(W)|| = sqrt(sum_i g_i^2 /
||w_i||^2)`` (001 Eq. 18), driven and measured, at steps spread over the run; theory's
quasi-static gradient-to-weight ratio (each unit at the equilibrium of the current rates and its
``sqrt(E[g^2])``, about ``sqrt(2 lam_k / eta_k)``) against the measured ratio of sums
``sqrt(E||grad J(W)||^2 / E||W||^2)`` over a window (:func:`window_mean`) in its regime: the
quasi-static target, at the schedule's rates and the measured ``E[g^2]``, moving by less than
:data:`SLOW` over the last five time constants (:func:`target_drift`; the norm forgets what came
before, the initial norm included), the other steps shown; the end-of-training rise of ``||grad J(W)||`` with and
without the corrected decay -> bounds -> a table and a figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise.sim import norm_schedules
from scalewise.validation.effective_lr.driven_sgd import driven_norm_sq
from scalewise.validation.effective_lr.equilibrium import SETTINGS, scaled
from scalewise.validation.effective_lr.plots import grid, legend
from scalewise.validation.effective_lr.runs import (
    FixedRuns,
    Measured,
    config,
    measure,
    seeds,
    step_decays,
    unit_grad_norm,
    unit_values,
)
from scalewise.validation.estimators import SETTLING_TIME_CONSTANTS
from scalewise.validation.markdown import cell, markdown_table
from scalewise.validation.report import Bound, Record, Report, curve_frame, record, spread_steps
from scalewise.validation.suite import Settings, Size

EXPERIMENT = "schedules"
SCHEDULES = {"cosine": {"optimizer.schedule": "warmup-cosine"},
             "wsd": {"optimizer.schedule": "warmup-stable-decay", "optimizer.decay_fraction": 0.3}}
"""The schedules, by label: cosine to zero over the run, and warmup-stable-decay (no warmup
here) decaying linearly over its last 30% of steps."""
SLOW = 0.1  # the quasi-static target moved less than 10% over the last five time constants
LIMIT = 0.10  # driven ||W||^2 and ||grad J(W)||; quasi-static ratio where slow; the rise
RECORD_POINTS = 16
WINDOW = 0.02  # share of the run in a window of the expectations, and at each end of the rise


SCALES = {
    Size.SMOKE: FixedRuns(networks=("mlp-bn",), seeds=1, steps=90),
    Size.REFERENCE: FixedRuns(networks=("mlp-bn", "mlp-wn"), seeds=2, steps=2000),
}


@dataclass(frozen=True)
class Curves:
    """A layer of a run, per step ``k``: ``||W_k||^2`` and ``||grad J(W_k)||`` measured and
    driven, the quasi-static ratio and the measured one, and whether the step lies in the
    quasi-static regime (``in_regime``)."""

    label: str  # schedule, and "+corrected" with the corrected decay
    layer: str
    seed: int
    frame: pd.DataFrame
    lr: np.ndarray  # (steps,)


def schedules(report: Report, settings: Settings) -> None:
    """Norms under decaying schedules against the driven map and the quasi-static ratio."""
    scale = settings.scale(SCALES)
    sgd = scaled(next(s for s in SETTINGS if s.optimizer == "sgd"), settings)
    jobs, labels = [], []
    for name, changes in SCHEDULES.items():
        for corrected in (False, True):
            extra = {**changes, "optimizer.corrected_decay": corrected}
            for net in scale.networks:
                for seed in seeds(settings, scale.seeds):
                    jobs.append((net, sgd, seed, config(net, sgd, seed=seed, steps=scale.steps,
                                                        extra=extra)))
                    labels.append(name + ("+corrected" if corrected else ""))
    measured = measure(jobs, settings, desc="effective-lr schedules")
    curves = [layer_curves(m, label, layer, mask) for m, label in zip(measured, labels)
              for layer, mask in m.compared(margin=0.0).items()]
    records = [r for c in curves for r in _records(c)]
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.add_curves(pd.concat([_curve_frame(c) for c in curves if c.seed == settings.seed],
                                ignore_index=True))
    report.bounds += BOUNDS
    excluded = [f"{label}: {line}" for m, label in zip(measured, labels)
                for line in m.excluded(margin=0.0)]
    section = report.section("Norms under decaying schedules and the corrected decay",
                             _text(records, curves, excluded, len(measured)))
    section.figure("schedules", _figure(curves, settings.seed),
                   "Gradient-to-weight ratio sqrt(E||grad J(W)||^2 / E||W||^2) over windows of "
                   f"{WINDOW:.0%} of the run: measured (solid; faint: each step's own), the "
                   "driven map (dashed) and theory's quasi-static value (dotted); grey "
                   "outside its regime (its target moved by 10% or more over the last five "
                   "time constants).")


BOUNDS = [
    Bound(EXPERIMENT, "norm_sq", LIMIT, description="||W||^2 under the schedule, the exact map "
          "driven by the measured g_k (max over recorded steps, layers and seeds)"),
    Bound(EXPERIMENT, "grad_norm", LIMIT, description="||grad J(W)|| under the schedule, the "
          "exact map driven by the measured g_k (max)"),
    Bound(EXPERIMENT, "grad_weight_ratio", LIMIT, description="sqrt(E||grad J(W)||^2 / "
          "E||W||^2) over a window against theory's quasi-static value, where its target (the "
          "schedule's rates, the measured E[g^2]) moved by less than 10% over the last five "
          "time constants (max)"),
    Bound(EXPERIMENT, "grad_rise", LIMIT, description="end-of-training rise of ||grad J(W)||, "
          "measured against the driven map (max)"),
]
"""Declared before the reference run; never loosened to fit a result."""


def layer_curves(m: Measured, label: str, layer: str, mask: np.ndarray) -> Curves:
    """The layer's norms and ratios over the run (see :class:`Curves`)."""
    predicted, _ = driven_norm_sq(m, layer, mask)  # x_1 .. x_K
    v = unit_values(m, layer, mask)
    g = unit_grad_norm(v)
    lr, decay = step_decays(m, len(g))
    driven = np.vstack([v["norm_sq"][:1], predicted[:-1]])  # x_0 .. x_{K-1}, as measured
    g_sq = window_mean(g**2)  # E[g_i^2] around each step
    quasi = norm_schedules.quasi_static_norm_sq("sgd", np.broadcast_to(lr, g.shape),
                                                np.broadcast_to(decay, g.shape),
                                                scale=np.sqrt(g_sq))
    elapsed = norm_schedules.elapsed_time_constants("sgd", lr, decay)[:, 0]
    frame = pd.DataFrame({
        "norm_sq": v["norm_sq"].sum(axis=1), "norm_sq_driven": driven.sum(axis=1),
        "grad_norm": np.sqrt(v["grad_sq"].sum(axis=1)),
        "grad_norm_driven": np.sqrt((g**2 / driven).sum(axis=1)),
        "grad_norm_quasi_static": np.sqrt((g_sq / quasi).sum(axis=1)),
        "ratio": _ratio(window_mean(v["grad_sq"]), window_mean(v["norm_sq"])),
        "ratio_driven": _ratio(window_mean(g**2 / driven), window_mean(driven)),
        "ratio_quasi_static": _ratio(g_sq / quasi, quasi),
        "in_regime": target_drift(quasi.sum(axis=1), elapsed) < SLOW})
    frame["ratio_per_step"] = frame["grad_norm"] / np.sqrt(frame["norm_sq"])
    return Curves(label, m.layer(layer), m.seed, frame, lr[:, 0])


def target_drift(target: np.ndarray, elapsed: np.ndarray) -> np.ndarray:
    """The largest ``|ln target_j - ln target_k|`` over the steps ``j`` of the last
    :data:`~scalewise.validation.estimators.SETTLING_TIME_CONSTANTS` time constants before each
    step ``k`` (``elapsed``: :func:`~scalewise.sim.norm_schedules.elapsed_time_constants`); inf
    before that many have passed. The norm relaxes towards the target at one e-fold per time
    constant, so it holds the quasi-static value only where the target has been still that
    long: a slow schedule, and ``g`` no longer falling with the loss."""
    log_target = np.log(target)
    first = np.searchsorted(elapsed, elapsed - SETTLING_TIME_CONSTANTS)
    drift = np.array([np.abs(log_target[j:k + 1] - log_target[k]).max()
                      for k, j in enumerate(first)])
    return np.where(elapsed >= SETTLING_TIME_CONSTANTS, drift, np.inf)


def window_mean(values: np.ndarray) -> np.ndarray:
    """The centred moving mean of ``values`` over :data:`WINDOW` of the run, along the steps
    (axis 0): the expectation at each step, a minibatch's noise averaged out."""
    return (pd.DataFrame(values).rolling(_window(len(values)), center=True, min_periods=1)
            .mean().to_numpy())


def _window(steps: int) -> int:
    """The steps in :data:`WINDOW` of a run of ``steps`` (at least one)."""
    return max(int(WINDOW * steps), 1)


def _ratio(grad_sq: np.ndarray, norm_sq: np.ndarray) -> np.ndarray:
    """``sqrt(sum_i E||grad J(w_i)||^2 / sum_i E||w_i||^2)`` per step, from per-unit
    expectations ``(steps, units)``: the layer's gradient-to-weight ratio as a ratio of sums."""
    return np.sqrt(grad_sq.sum(axis=1) / norm_sq.sum(axis=1))


def rise(values: pd.Series, lr: np.ndarray) -> float:
    """``values`` at the end of the run over their value where the learning rate has fallen to
    half its peak, each the mean over :data:`WINDOW` of the run."""
    width = _window(len(values))
    half = int(np.argmax(lr <= lr.max() / 2))
    return float(values.iloc[-width:].mean() / values.iloc[half:half + width].mean())


def _records(c: Curves) -> list[Record]:
    frame, steps = c.frame, spread_steps(0, len(c.frame) - 1, RECORD_POINTS)
    records = [record(EXPERIMENT, c.label, c.layer, f"{q}@{k}", predicted=frame.loc[k, f"{q}_driven"],
                      measured=frame.loc[k, q])
               for q in ("norm_sq", "grad_norm") for k in steps]
    records += [record(EXPERIMENT, c.label, c.layer,
                       f"grad_weight_ratio{'' if frame.loc[k, 'in_regime'] else '_outside'}@{k}",
                       predicted=frame.loc[k, "ratio_quasi_static"], measured=frame.loc[k, "ratio"])
                for k in steps]
    records += [record(EXPERIMENT, c.label, c.layer, f"grad_weight_ratio_per_step@{k}",
                       predicted=frame.loc[k, "ratio_quasi_static"],
                       measured=frame.loc[k, "ratio_per_step"])
                for k in steps if frame.loc[k, "in_regime"]]
    records += [record(EXPERIMENT, c.label, c.layer, "grad_rise",
                       predicted=rise(frame["grad_norm_driven"], c.lr),
                       measured=rise(frame["grad_norm"], c.lr)),
                record(EXPERIMENT, c.label, c.layer, "grad_rise_quasi_static",
                       predicted=rise(frame["grad_norm_quasi_static"], c.lr),
                       measured=rise(frame["grad_norm"], c.lr))]
    return records


def _curve_frame(c: Curves) -> pd.DataFrame:
    steps = c.frame.index.to_numpy()
    parts = [curve_frame(EXPERIMENT, c.label, c.layer, "grad_weight_ratio", source, steps,
                         c.frame[column])
             for source, column in (("measured", "ratio"), ("driven", "ratio_driven"),
                                    ("quasi-static", "ratio_quasi_static"),
                                    ("measured, per step", "ratio_per_step"))]
    return pd.concat(parts, ignore_index=True)


def _text(records: list[Record], curves: list[Curves], excluded: list[str], runs: int) -> str:
    frame = pd.DataFrame([r.__dict__ for r in records])
    frame["kind"] = frame["quantity"].str.split("@").str[0]
    errors = frame.pivot_table(index="optimizer", columns="kind", values="rel_error",
                               aggfunc="max")
    rises = frame[frame["kind"] == "grad_rise"].groupby("optimizer")["measured"].mean()
    share = np.mean([c.frame["in_regime"].mean() for c in curves]) if curves else float("nan")
    lines = [
        f"SGD with weight decay, {runs} runs: a cosine schedule to zero and warmup-stable-decay "
        "(the last 30% decaying linearly), each with the decay as configured and with the "
        "corrected decay ($\\lambda_k = \\lambda\\eta_k/\\eta_{\\max}$, a per-step shrink "
        "$\\lambda\\eta_k^2/\\eta_{\\max}$). The driven prediction runs each scale-invariant "
        "unit's exact map (001 Eq. 23) under the run's $\\eta_k$ and $\\lambda_k$ from its "
        "measured $g_k$; $\\|\\nabla J(W)\\| = \\sqrt{\\sum_i g_i^2/\\|w_i\\|^2}$ (001 Eq. 18). "
        "Theory's quasi-static ratio puts every unit at the equilibrium of the current rates and "
        "its $\\sqrt{\\mathbb{E}[g^2]}$, $\\|\\nabla J\\|/\\|w\\| \\approx \\sqrt{2\\lambda_k/\\eta_k}$; "
        "measured as the expectation the balance is about, the ratio of sums "
        "$\\sqrt{\\mathbb{E}\\|\\nabla J(W)\\|^2/\\mathbb{E}\\|W\\|^2}$ over a centred window of "
        f"{WINDOW:.0%} of the run (the per-step ratio, one minibatch's gradient, is recorded "
        "for contrast as `grad_weight_ratio_per_step`). It is compared in its regime, "
        f"where that equilibrium (at the schedule's rates and the measured "
        "$\\mathbb{E}[g^2]$, which falls with the loss) moved by less than "
        f"{SLOW:.0%} over the last {SETTLING_TIME_CONSTANTS:g} time constants ({share:.0%} of the "
        "steps), and shown elsewhere (`grad_weight_ratio_outside`). Largest relative error "
        "per schedule:",
        "", markdown_table(errors.rename_axis("schedule")),
        "", "End-of-training rise of $\\|\\nabla J(W)\\|$ (its mean over the last "
        f"{WINDOW:.0%} of the run over its mean where $\\eta_k$ has fallen to half its "
        "peak), measured, mean over layers and seeds: "
        + ", ".join(f"{name} {cell(value)}" for name, value in rises.items()) + ".",
        "", _rise_sentence(rises),
    ]
    if excluded:
        lines += ["", f"Left out of the comparison ({len(excluded)}):", "",
                  *(f"- {line}" for line in excluded)]
    return "\n".join(lines)


def _rise_sentence(rises: pd.Series) -> str:
    """How much the corrected decay changes the rise, computed per schedule."""
    parts = []
    for name in SCHEDULES:
        plain, corrected = rises.get(name), rises.get(f"{name}+corrected")
        if plain is None or corrected is None:
            continue
        side = "smaller" if corrected < plain else "larger"
        parts.append(f"under {name} the corrected decay makes the rise {side} "
                     f"({cell(corrected)} against {cell(plain)})")
    return ("Measured: " + "; ".join(parts) + ".") if parts else ""


def _figure(curves: list[Curves], seed: int) -> Figure:
    shown = [c for c in curves if c.seed == seed]
    labels = list(dict.fromkeys(c.label for c in shown))
    layers = list(dict.fromkeys(c.layer for c in shown))
    fig, axes = grid(layers, labels)
    for c in shown:
        ax = axes[layers.index(c.layer), labels.index(c.label)]
        frame = c.frame
        ax.plot(frame.index, frame["ratio_per_step"], "-", color="C0", lw=0.5, alpha=0.3,
                label="measured, per step")
        ax.plot(frame.index, frame["ratio"], "-", color="C0", lw=1.2, label="measured")
        ax.plot(frame.index, frame["ratio_driven"], "--", color="C1", lw=1.0, label="driven")
        ax.plot(frame.index, frame["ratio_quasi_static"], ":", color="C2", lw=1.4,
                label="quasi-static")
        outside = ~frame["in_regime"].to_numpy()
        if outside.any():
            ax.fill_between(frame.index, 0, 1, where=outside, color="0.85", zorder=0,
                            transform=ax.get_xaxis_transform())
        ax.set(title=f"{c.label} {c.layer}", xlabel="step", ylabel="||grad J|| / ||W||",
               yscale="log")
        legend(ax)
    return fig
