"""SGD's weight norm from its gradients alone, per unit (001 Eq. 23): for a scale-invariant unit
``||w_{k+1}||^2 = (1 - alpha lam)^2 ||w_k||^2 + alpha^2 g_k^2 / ||w_k||^2`` with
``g_k = ||grad J(w_hat_k)||``, whatever the gradients' directions.

Config: the SGD runs of the equilibrium experiment (with decay) and the same without decay
(one seed), on every network of the size and on the batch-norm networks' controls with ``eps``
1e-9 (:func:`~.runs.eps_controls`), which tell what torch's ``eps`` of 1e-5 costs the
recurrence. Runs -> per scale-invariant
unit (median ``|cos(w, grad J)|`` below :data:`~.runs.INVARIANCE_TOLERANCE`), the exact map
fed the unit's measured ``g_k`` from its measured ``||w_0||^2`` against the measured
``||w_{k+1}||^2`` over the whole run -> one record per unit at its worst step -> bounds on the
median and the largest unit error -> a table, the units left out, and a figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise.sim import norm_schedules
from scalewise.theory.radial_update import balanced_norm_sq
from scalewise.validation.effective_lr.equilibrium import (
    SCALES,
    SETTINGS,
    equilibrium_runs,
    scaled,
)
from scalewise.validation.effective_lr.plots import grid
from scalewise.validation.effective_lr.runs import (
    CONTROL_SUFFIX,
    EPS_CONTROL,
    Measured,
    config,
    eps_controls,
    measure,
    step_decays,
    unit_grad_norm,
    unit_values,
)
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings

EXPERIMENT = "driven_sgd"
MEDIAN_LIMIT = 1e-4  # median over a layer's units of each unit's largest error over the run
MAX_LIMIT = 1e-3  # the largest unit error


def driven_sgd(report: Report, settings: Settings) -> None:
    """The per-unit driven recurrence against every SGD run's measured norms."""
    controls = eps_controls(settings.scale(SCALES).networks)
    measured = [*equilibrium_runs(settings, optimizers=("sgd",)),
                *equilibrium_runs(settings, optimizers=("sgd",), networks=controls),
                *no_decay_runs(settings, controls)]
    records, worst, budgets, steps = [], {}, {}, {}
    for m in measured:
        for layer, mask in m.compared(margin=0.0).items():
            errors, unit_records = unit_errors(m, layer, mask)
            records += unit_records
            worst[(m.setting.label, m.layer(layer), m.seed)] = errors
            budgets[(m.setting.label, m.layer(layer), m.seed)] = radial_budget(m, layer, mask)
            steps[(m.setting.label, m.layer(layer), m.seed)] = one_step_errors(m, layer, mask)
    report.add(*records)
    report.add_runs(m.run for m in measured)
    report.bounds += BOUNDS
    excluded = [line for m in measured for line in m.excluded(margin=0.0)]
    section = report.section("SGD's norm from its gradients, per unit",
                             _text(records, excluded, len(measured), worst, budgets, steps))
    section.figure("driven-sgd", _figure(worst),
                   "Each unit's largest relative error of the driven recurrence over its run, "
                   "per network and layer; the dashed lines are the declared bounds.")


def no_decay_runs(settings: Settings, controls: tuple[str, ...]) -> list[Measured]:
    """SGD without weight decay at the equilibrium setting's learning rate, every network of
    the size and ``controls``, one seed, from the default initial norm (a small one, as the
    growth experiment starts from, brings normalization's ``eps`` closer)."""
    scale = settings.scale(SCALES)
    sgd = scaled(next(s for s in SETTINGS if s.optimizer == "sgd"), settings).scaled(
        weight_decay=0.0)
    jobs = [(net, sgd, settings.seed,
             config(net, sgd, seed=settings.seed, steps=sgd.steps(scale.min_steps)))
            for net in (*scale.networks, *controls)]
    return measure(jobs, settings, desc="effective-lr runs without decay")


BOUNDS = [
    *(Bound(EXPERIMENT, "norm_sq", MEDIAN_LIMIT, optimizer=o, statistic="median", per_layer=True,
            description="median over a layer's units of each unit's largest error over the run")
      for o in ("sgd", "sgd-nowd")),
    *(Bound(EXPERIMENT, "norm_sq", MAX_LIMIT, optimizer=o,
            description="largest error of any unit at any step")
      for o in ("sgd", "sgd-nowd")),
]
"""Declared before the reference run; never loosened to fit a result."""


def driven_norm_sq(m: Measured, layer: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted, measured)`` ``||w_{k+1}||^2`` for every record and unit of ``mask``: the
    exact per-step map (001 Eq. 23) under the run's learning rate and decay of each step (the
    corrected decay where the run has it), run from the measured ``||w_0||^2`` on the measured
    ``g_k`` of every step (:func:`scalewise.sim.norm_schedules.norm_recurrence`; the run's
    records must be every step from 0)."""
    v = unit_values(m, layer, mask)
    steps = m.units.layers[layer].steps
    if not np.array_equal(steps, np.arange(len(steps))):
        raise ValueError(f"run {m.run.id}: the driven recurrence needs per-unit records at every "
                         "step from 0 (unit_probe_every = 1)")
    g = unit_grad_norm(v)
    lr, decay = step_decays(m, len(g))
    predicted = norm_schedules.norm_recurrence(
        "sgd", np.broadcast_to(lr, g.shape), np.broadcast_to(decay, g.shape), scale=g,
        init_norm_sq=v["norm_sq"][0])
    return predicted[1:], v["next_norm_sq"]


def unit_errors(m: Measured, layer: str, mask: np.ndarray) -> tuple[np.ndarray, list[Record]]:
    """Each unit's largest relative error over the run, and one record per unit at that step."""
    predicted, measured = driven_norm_sq(m, layer, mask)
    error = np.abs(predicted - measured) / measured
    worst = np.argmax(error, axis=0)
    units = np.arange(error.shape[1])
    records = [record(EXPERIMENT, m.setting.label, m.layer(layer), "norm_sq",
                      predicted=p, measured=x)
               for p, x in zip(predicted[worst, units], measured[worst, units])]
    return error[worst, units], records


def _sgd_steps(m: Measured, layer: str,
               mask: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The unit records of ``layer`` (every step from 0), each step's learning rate and SGD's
    decay factor ``1 - alpha_k lam``, both ``(steps, 1)``."""
    v = unit_values(m, layer, mask)
    lr, decay = step_decays(m, len(v["norm_sq"]))
    return v, lr, 1 - lr * decay


def one_step_errors(m: Measured, layer: str, mask: np.ndarray) -> tuple[float, float]:
    """The largest relative error over every unit and step of one step of the balance
    ``rho^2 x - 2 rho <w, u> + ||u||^2`` with SGD's update ``u = alpha grad J(w)``, from the
    measured ``x``, ``<w, grad J>`` and ``||grad J||^2``: without the radial part (001 Eq. 23)
    and with it (exact, identity norm_balance)."""
    v, lr, rho = _sgd_steps(m, layer, mask)
    errors = [np.max(np.abs(balanced_norm_sq(rho, v["norm_sq"], radial, lr**2 * v["grad_sq"])
                            / v["next_norm_sq"] - 1))
              for radial in (0.0, lr * v["w_dot_grad"])]
    return float(errors[0]), float(errors[1])


def radial_budget(m: Measured, layer: str, mask: np.ndarray) -> np.ndarray:
    """Per unit, the sum over the run of ``|2 alpha_k rho_k <w_k, grad J(w_k)>| /
    ||w_{k+1}||^2``: the relative change of the norm that the radial part of the gradient,
    which 001 Eq. 23 sets to 0 (batch and layer norm's ``eps`` make it about ``eps / var``),
    contributes. The recurrence contracts errors, so the driven error stays below it."""
    v, lr, rho = _sgd_steps(m, layer, mask)
    return np.sum(np.abs(2 * lr * rho * v["w_dot_grad"]) / v["next_norm_sq"], axis=0)


def _text(records: list[Record], excluded: list[str], runs: int,
          worst: dict[tuple[str, str, int], np.ndarray],
          budgets: dict[tuple[str, str, int], np.ndarray],
          steps: dict[tuple[str, str, int], tuple[float, float]]) -> str:
    frame = pd.DataFrame([r.__dict__ for r in records])
    table = frame.groupby(["optimizer", "layer"], sort=False)["rel_error"].agg(
        units="size", median="median", max="max")
    by_layer = {}
    for (label, layer, _), budget in budgets.items():
        by_layer.setdefault((label, layer), []).append(budget)
    table["radial budget (median unit)"] = [float(np.median(np.concatenate(by_layer[key])))
                                            for key in table.index]
    one_step = pd.DataFrame(steps.values(), index=pd.MultiIndex.from_tuples(
        [key[:2] for key in steps]), columns=["without", "with"]).groupby(level=[0, 1]).max()
    table["one step without / with the radial part"] = [
        f"{one_step.loc[key, 'without']:.2g} / {one_step.loc[key, 'with']:.2g}"
        for key in table.index]
    explained = np.mean(np.concatenate([worst[key] <= 1.05 * budgets[key] + 1e-5
                                        for key in worst]))
    lines = [
        "For a scale-invariant unit SGD's step is tangent to $w$ (001 Eq. 16), so "
        "$\\|w_{k+1}\\|^2 = (1-\\alpha\\lambda)^2\\|w_k\\|^2 + \\alpha^2 g_k^2/\\|w_k\\|^2$ "
        "(001 Eq. 23) with $g_k = \\|\\nabla J(\\hat w_k)\\|$, whatever the gradients' directions. "
        f"Over {runs} runs, every unit's recurrence is driven by its own measured $g_k$ from its "
        "measured $\\|w_0\\|^2$ and compared with its measured $\\|w_{k+1}\\|^2$ at every step; "
        "per unit, the largest relative error over the run. Per layer (seeds pooled), the "
        f"median and largest unit error (bounds {MEDIAN_LIMIT:.0e} and {MAX_LIMIT:.0e}), and the "
        "radial budget: the summed relative change of the norm from the radial part of the "
        "gradient, $2\\alpha\\rho|\\langle w, \\nabla J(w)\\rangle|/\\|w_{k+1}\\|^2$, which the "
        "recurrence sets to 0 and normalization's $\\epsilon$ makes about $\\epsilon/\\mathrm{var}$:",
        "", markdown_table(table.reset_index(), index=False), "",
        "The last column is the largest error of a single step of the balance with SGD's update "
        "$u = \\alpha\\nabla J(w)$ from the measured statistics, without the radial part (001 "
        "Eq. 23) and with it (exact). "
        f"{explained:.1%} of the units' errors lie within their radial budget (x 1.05 and 1e-5 "
        "for float32 records): "
        + ("the misses come from the radial part, that is from normalization's eps."
           if explained > 0.99 else "not every miss is the radial part's."),
        *_control_lines(table)]
    if excluded:
        lines += ["", f"Left out, not scale invariant ({len(excluded)}):", "",
                  *(f"- {line}" for line in excluded)]
    return "\n".join(lines)


def _control_lines(table: pd.DataFrame) -> list[str]:
    """Each control layer's median and largest unit error beside those of the same layer with
    torch's ``eps`` (rows of ``table``, indexed by optimizer and layer); a control layer that the
    default ``eps`` left out (not scale invariant there) with its radial budget."""
    controls = [key for key in table.index if CONTROL_SUFFIX in key[1]]
    if not controls:
        return []
    eps = np.format_float_scientific(EPS_CONTROL, trim="-", exp_digits=1)

    def errors(key: tuple[str, str]) -> str:
        return f"{table.loc[key, 'median']:.1e} / {table.loc[key, 'max']:.1e}"

    def line(control: tuple[str, str]) -> str:
        default = (control[0], control[1].replace(CONTROL_SUFFIX, "", 1))
        if default in table.index:
            return (f"- {default[0]} {default[1]}: {errors(default)} with eps 1e-5, "
                    f"{errors(control)} with eps {eps}")
        return (f"- {control[0]} {control[1]}: {errors(control)} with eps {eps}, a layer left "
                "out with eps 1e-5 (not scale invariant there); its radial budget "
                f"{table.loc[control, 'radial budget (median unit)']:.1e}")

    return ["", f"Batch norm's eps, tested: the same networks with eps {eps} instead of torch's "
                f"1e-5 (networks named with `{CONTROL_SUFFIX}`), median / largest unit error:", "",
            *(line(control) for control in controls)]


def _figure(worst: dict[tuple[str, str, int], np.ndarray]) -> Figure:
    labels = list(dict.fromkeys(label for label, *_ in worst))
    fig, axes = grid(["errors"], labels)
    for ax, label in zip(axes[0], labels):
        layers = list(dict.fromkeys(layer for lab, layer, _ in worst if lab == label))
        for i, layer in enumerate(layers):
            errors = np.concatenate([e for (lab, lay, _), e in worst.items()
                                     if lab == label and lay == layer])
            ax.plot(np.full(errors.size, i), np.maximum(errors, 1e-17), ".", ms=2, alpha=0.5)
        ax.axhline(MEDIAN_LIMIT, ls="--", color="0.5", lw=0.8)
        ax.axhline(MAX_LIMIT, ls="--", color="0.3", lw=0.8)
        ax.set_xticks(range(len(layers)), layers, rotation=60, fontsize=6)
        ax.set(title=label, yscale="log", ylabel="largest relative error per unit")
    return fig
