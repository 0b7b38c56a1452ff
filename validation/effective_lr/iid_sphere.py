"""The equilibrium misses split by their cause: theory's closed forms assume gradients
independent across steps and isotropic, and (Lion, Muon and the Adam family) a large
dimension; the optimizer itself on a sphere of each layer's own unit dimension, driven by such
gradients (:meth:`~.runs.Setting.sphere`), keeps the first assumption and drops the second. So
the sphere's angular update against theory's is the finite dimension's part of a miss, and the
measured one against the sphere's is the real gradients' part, with their measured lag-1
correlation as the evidence; the same sphere driven by gradients of that lag-1 correlation
(:class:`scalewise.sim.CorrelatedNoise`) tells how much of the gradients' part the correlation
across steps carries.

Config: every run of the equilibrium experiment. Runs -> per settled compared layer and seed:
the measured angular update (ratio of sums over the settled window, :mod:`.settled`),
theory's, and the sphere's (:data:`VECTORS` vectors of the layer's unit dimension at the
layer's mean unit ``g``, as many steps as the run, the same estimator over the same window),
the lag-1 gradient correlation, and the sphere again driven by gradients of that correlation
-> three records per layer: measured against the sphere (``iid_sphere``, ``angular_update``),
the sphere against theory (``angular_update_theory``), measured against the correlated sphere
(``angular_update_correlated``) -> a table of medians per optimizer and sentences computed
from it: measured / theory = (sphere / theory) x (measured / sphere), which factor is larger,
and the share of the second that the correlated sphere reproduces.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalewise.validation.effective_lr.equilibrium import equilibrium_runs, settled_estimates
from scalewise.validation.effective_lr.runs import Measured, grad_correlation
from scalewise.validation.effective_lr.settled import Estimate, window, window_values
from scalewise.validation.estimators import angular_update
from scalewise.validation.markdown import markdown_table
from scalewise.validation.report import Record, Report, record
from scalewise.validation.suite import Settings

EXPERIMENT = "iid_sphere"
VECTORS = 64  # sphere vectors per layer and seed
EXPLAINED = 0.01  # a miss below 1% of theory's angular update is not split


def iid_sphere(report: Report, settings: Settings) -> None:
    """Measured, sphere and theory angular updates of every settled layer."""
    measured = equilibrium_runs(settings)
    estimates, _ = settled_estimates(measured)
    rows = [layer_row(m, layer, e) for m, layer, e in estimates]
    report.add(*(r for row in rows for r in row_records(row)))
    report.add_runs(m.run for m in measured)
    report.section("Why the equilibria miss: the dimension or the gradients",
                   _text(pd.DataFrame(rows)))


def sphere_angular_update(m: Measured, layer: str, grad_norm: float,
                          correlation: float = 0.0) -> float:
    """The angular update of ``m``'s optimizer on the sphere of ``layer``'s unit dimension
    (gradients independent across steps, or of lag-1 ``correlation``), started at theory's
    equilibrium norm (so that it settles within the run's steps whatever ``grad_norm``), over
    the run's last :func:`~.settled.window` steps, as a ratio of sums over steps and vectors
    (:func:`scalewise.validation.estimators.angular_update`)."""
    steps, dim = m.run.config.steps, m.dims[layer]
    start = float(m.setting.equilibrium(grad_norm=grad_norm, dim=dim)["norm_sq"])
    t = m.setting.sphere(grad_norm=grad_norm, dim=dim, steps=steps, runs=VECTORS, seed=m.seed,
                         init_norm=start**0.5, correlation=correlation)
    x = np.concatenate([t.norm_sq, t.final_norm_sq[None]])  # ||w_k||^2, k = 0..steps
    first = steps - window(m)
    w_dot_next = np.sqrt(x[first:-1] * x[first + 1:]) * np.cos(t.angular_update[first:])
    return angular_update(w_dot_next, x[first:-1], x[first + 1:])


def layer_row(m: Measured, layer: str, e: Estimate) -> dict[str, object]:
    """Measured, theory's and the sphere's angular update of one settled layer of ``m``, the
    gradients' lag-1 correlation, and the sphere driven by gradients of that correlation."""
    correlation = grad_correlation(window_values(m, layer, m.compared()[layer]))
    return {"optimizer": m.setting.label, "layer": m.layer(layer), "seed": m.seed,
            "dim": m.dims[layer], "measured": e.measured["angular_update"],
            "theory": e.predicted["angular_update"],
            "sphere": sphere_angular_update(m, layer, e.grad_norm),
            "grad_correlation": correlation,
            "correlated": sphere_angular_update(m, layer, e.grad_norm, correlation)}


def row_records(row: dict[str, object]) -> list[Record]:
    name, layer = row["optimizer"], row["layer"]
    return [record(EXPERIMENT, name, layer, "angular_update", predicted=row["sphere"],
                   measured=row["measured"]),
            record(EXPERIMENT, name, layer, "angular_update_theory", predicted=row["theory"],
                   measured=row["sphere"]),
            record(EXPERIMENT, name, layer, "angular_update_correlated",
                   predicted=row["correlated"], measured=row["measured"])]


def _text(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "No layer settled, so no miss is split."
    frame = rows.assign(measured_over_theory=rows["measured"] / rows["theory"],
                        sphere_over_theory=rows["sphere"] / rows["theory"],
                        measured_over_sphere=rows["measured"] / rows["sphere"],
                        correlated_over_sphere=rows["correlated"] / rows["sphere"])
    table = frame.groupby("optimizer", sort=False).agg(
        layers=("layer", "size"), dims=("dim", lambda d: ", ".join(map(str, sorted(set(d))))),
        measured_over_theory=("measured_over_theory", "median"),
        sphere_over_theory=("sphere_over_theory", "median"),
        measured_over_sphere=("measured_over_sphere", "median"),
        grad_correlation=("grad_correlation", "median"),
        correlated_over_sphere=("correlated_over_sphere", "median"))
    return "\n".join([
        "Theory's equilibrium angular updates assume gradients independent across steps and "
        "isotropic in the tangent space, and for Lion, Muon and the Adam family a large "
        "dimension. The optimizer itself on spheres of each layer's own unit dimension, driven "
        f"by such gradients at the layer's mean unit $g$ ({VECTORS} vectors, as many steps as "
        "the run, the same ratio-of-sums estimator over the same settled window), keeps the "
        "first assumption and drops the second: sphere / theory is the finite dimension's "
        "part of a miss, measured / sphere the real gradients' part, beside their measured "
        "lag-1 correlation (0 for independent gradients). The same sphere driven by isotropic "
        "gradients of that lag-1 correlation (an AR(1) process, `sim.CorrelatedNoise`) tells "
        "how much of the gradients' part the correlation across steps carries: correlated / "
        "sphere against measured / sphere. Medians over settled layers and seeds:", "",
        markdown_table(table), "",
        *(_verdict(name, row) for name, row in table.iterrows())])


def _verdict(name: str, row: pd.Series) -> str:
    """One optimizer's miss as the product of its two parts, which is larger, and how much of
    the gradients' part their correlation across steps carries, from the numbers."""
    miss = row["measured_over_theory"]
    if abs(miss - 1) < EXPLAINED:
        return f"- {name}: measured / theory {miss:.3f}, a miss under {EXPLAINED:.0%}."
    dimension, gradients = row["sphere_over_theory"], row["measured_over_sphere"]
    larger = ("the real gradients" if abs(np.log(gradients)) > abs(np.log(dimension))
              else "the finite dimension")
    split = (f"- {name}: measured / theory {miss:.3f} = {dimension:.3f} from the finite "
             f"dimension (sphere / theory) x {gradients:.3f} from the real gradients (measured "
             f"/ sphere), so {larger} carry the larger part; with their lag-1 correlation "
             f"{row['grad_correlation']:.3g} the sphere moves by "
             f"{row['correlated_over_sphere']:.3f}")
    if abs(gradients - 1) < EXPLAINED:
        return split + f", beside a gradients' part under {EXPLAINED:.0%}."
    carried = np.log(row["correlated_over_sphere"]) / np.log(gradients) + 0.0  # no "-0%"
    if carried < 0:
        return split + (f", the opposite way to the gradients' part ({-carried:.0%} of its size "
                        "on a log scale).")
    return split + f": {carried:.0%} of the gradients' part on a log scale."
