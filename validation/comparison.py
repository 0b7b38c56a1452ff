"""A stored run beside theory: measured per-layer ``||w||^2``, effective learning rate and angular
update against the recurrence driven by the run's own measured gradient norms (:func:`sim.drive`,
001 Eq. 23) and against the weight-decay equilibrium (:func:`sim.equilibrium`, 001 Eq. 24-25).

Momentum and Nesterov SGD, Adam (L2), AdamW, RMSprop, Lion and Muon runs (:data:`COMPARED`) are
compared on request (``mean_field=True``): their norms do not follow from gradient norms alone, so the prediction is
the sphere engine's mean-field model (random tangent gradient directions, independent across
steps, of the measured norms; one sphere of the dimension of a unit's weight row per layer) and
theory's mean-field equilibria (:mod:`theory.optimizers`). Only the SGD prediction is exact.

001 Eq. (23) holds step by step for a scale-invariant weight under SGD, whatever the gradient
direction, so the driven prediction of a normalized layer should follow its measurement up to the
averaging over units (the probes store the layer *mean* of per-unit values; the recurrence is
driven by the mean per-unit gradient norm). A layer whose loss is not scale invariant breaks the
premise ``w . grad = 0`` (001 Eq. 18); it is flagged by its measured ``cos_w_grad``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from scalewise import sim
from scalewise.figures.comparison import Comparison
from scalewise.models.config import (
    OptimizerConfig,
    Schedule,
    TrainConfig,
    WeightDecayMode,
    WeightDecayPlacement,
)
from scalewise.models.data import load_dataset
from scalewise.models.networks import build_model, layer_weights
from scalewise.models.probes import unit_rows
from scalewise.models.store import Run, UnitStats
from scalewise.models.training import schedule
from scalewise.sim.schedules import lr_factors
from scalewise.validation.estimators import Interval, interval
from scalewise.vocabulary import Decay, Equilibrium, Optimizer

QUANTITIES = ("norm_sq", "effective_lr", "angular_update")
LONG_COLUMNS = ("step", "layer", "quantity", "source", "value")  # of compare_run's table
INVARIANCE_TOLERANCE = 1e-4  # |mean cos(w, grad)| of a normalized layer in float32 is ~1e-7
TAIL_FRACTION = 0.25  # the equilibrium is compared on the last quarter of the run
OUTPUT = "output"  # the output layer's name in models.networks' networks
MEAN_FIELD_RUNS = 8  # sphere-engine vectors per layer whose mean is the mean-field prediction
COMPARED = tuple(o for o in Optimizer
                 if o.properties.simulated and o.properties.equilibrium is not Equilibrium.NONE)
"""The optimizers a run of which is compared: those the simulators run and theory has an
equilibrium for (SGD exactly; the others on request, ``mean_field=True``)."""


def _decay_mode(name: Optimizer) -> WeightDecayMode:
    """The run's decay mode that applies the decay ``name``'s simulator applies: L2 for a
    coupled decay, the shrink for a decoupled one (AdamW)."""
    return (WeightDecayMode.L2 if name.properties.decay is Decay.COUPLED
            else WeightDecayMode.DECOUPLED)


def wide(metrics: pd.DataFrame, name: str) -> pd.DataFrame:
    """Metric ``name`` as a (steps, layers) table indexed by step."""
    rows = metrics[metrics["name"] == name].drop_duplicates(["step", "layer"], keep="last")
    return rows.pivot(index="step", columns="layer", values="value")


def normalized_layers(metrics: pd.DataFrame) -> list[str]:
    """The layers of a run's ``norm_sq`` probes but its output layer (which no normalization
    follows, :func:`models.networks.output_layer`)."""
    return [layer for layer in wide(metrics, "norm_sq").columns if layer != OUTPUT]


def invariant_layers(metrics: pd.DataFrame) -> dict[str, bool]:
    """Per probed layer: is its loss scale invariant, i.e. is ``w`` orthogonal to its gradient
    (001 Eq. 18), ``|mean cos(w, grad)| < INVARIANCE_TOLERANCE`` at the median measured step.
    The median, not the maximum: a step at which a unit's gradient nearly vanishes has an
    ill-conditioned cosine. A normalized layer fails the test where the normalization's ``eps``
    is no longer small against the variance of its pre-activations (tiny weight norms): the loss
    then depends on ``||w||``."""
    cos = wide(metrics, "cos_w_grad")
    return {layer: bool(np.nanmedian(np.abs(cos[layer].to_numpy())) < INVARIANCE_TOLERANCE)
            for layer in cos.columns}


def _check_comparable(run: Run, mean_field: bool) -> None:
    opt = run.config.optimizer
    if opt.name is not Optimizer.SGD and not (mean_field and opt.name in COMPARED):
        allowed = ", ".join(name.value for name in COMPARED)
        raise ValueError(f"run {run.id}: optimizer {opt.name.value!r} is not compared; the driven "
                         "recurrence (001 Eq. 23) is exact for plain SGD only (mean_field=True "
                         f"compares {allowed} with the sphere engine's mean-field model)")
    if opt.wd_mode not in (WeightDecayMode.NONE, _decay_mode(opt.name)):
        raise ValueError(f"run {run.id}: wd_mode {opt.wd_mode.value!r} is not compared; allowed: "
                         f"'none' or {_decay_mode(opt.name).value!r} (the decay the simulator's "
                         f"{opt.name.value!r} applies, 001 Eq. 23)")
    if opt.renormalize or opt.graft_norms_from is not None or opt.graft_direction is not None:
        raise ValueError(f"run {run.id}: its norms are set by renormalization or grafting, not "
                         "by 001 Eq. (23)")
    if run.metrics.empty or not (run.metrics["name"] == "grad_norm_unit").any():
        raise ValueError(f"run {run.id} has no per-step probes (probe_every = 0 or no steps)")


def _weight_decay(run: Run, layer: str, invariant: Callable[[str], bool]) -> float:
    """The weight decay that the run applies to ``layer``; ``invariant(layer)`` (is its loss
    scale invariant) is asked only where the decay's placement depends on it."""
    opt = run.config.optimizer
    if opt.wd_mode is WeightDecayMode.NONE:
        return 0.0
    decayed = (opt.wd_placement is WeightDecayPlacement.ALL
               or invariant(layer) == (opt.wd_placement is WeightDecayPlacement.NORMALIZED))
    return opt.weight_decay if decayed else 0.0


def unit_dims(config: TrainConfig) -> dict[str, int]:
    """Per layer of the network ``config`` builds, the dimension of one scale-invariant unit
    (the length of a weight row, :func:`models.probes.unit_rows`): the sphere the mean-field
    model of an adaptive optimizer lives on (``dim`` of :func:`sim.drive`)."""
    data = load_dataset(config.data, seed=config.seed)
    model = build_model(config.model, data.in_shape, data.num_classes, seed=config.seed)
    return {w.name: int(unit_rows(w.param, w.granularity).shape[1]) for w in layer_weights(model)}


def simulator_options(config: OptimizerConfig) -> dict[str, object]:
    """The optimizer-specific arguments of :func:`sim.drive`, :func:`sim.simulate` and
    :func:`sim.equilibrium` that theory's forms depend on, for a run's optimizer: those of
    ``momentum`` and ``betas`` that it reads (:data:`scalewise.vocabulary.PROPERTIES`)."""
    used = config.name.properties.hyperparameters & {"momentum", "betas"}
    return {name: getattr(config, name) for name in sorted(used)}


def _driven(run: Run, grads: pd.DataFrame, init_norm_sq: np.ndarray, decay: np.ndarray,
            dims: dict[str, int] | None, seed: int) -> dict[str, np.ndarray]:
    """The driven prediction per quantity, (steps, layers): SGD's exact recurrence (001 Eq. 23)
    on every layer at once, or one mean-field sphere per layer (the run mean of
    ``MEAN_FIELD_RUNS`` vectors of the layer's unit dimension)."""
    opt = run.config.optimizer
    common = {"lr": opt.lr, "schedule": schedule(opt), "optimizer": opt.name.value}
    if opt.name is Optimizer.SGD:
        t = sim.drive(grads.to_numpy(), weight_decay=decay, init_norm=np.sqrt(init_norm_sq),
                      **common)
        return {q: getattr(t, q) for q in QUANTITIES}
    missing = sorted(set(grads.columns) - set(dims or {}))
    if missing:
        raise ValueError(f"dims lacks the layers {missing}: the mean-field model of "
                         f"{opt.name.value!r} needs each layer's unit dimension (unit_dims)")
    columns = [sim.drive(grads[layer].to_numpy(), weight_decay=wd, init_norm=np.sqrt(x0),
                         dim=dims[layer], runs=MEAN_FIELD_RUNS, seed=seed, eps=opt.eps,
                         **common, **simulator_options(opt))
               for layer, wd, x0 in zip(grads.columns, decay, init_norm_sq)]
    return {q: np.stack([t.run_mean(q) for t in columns], axis=1) for q in QUANTITIES}


def _equilibrium(run: Run, weight_decay: float, grad_norm: float,
                 dim: int | None) -> dict[str, np.ndarray]:
    """Theory's equilibrium of the run's optimizer (001 Eq. 24-25; :mod:`theory.optimizers`)."""
    opt = run.config.optimizer
    adaptive = opt.name.properties.adaptive
    return sim.equilibrium(opt.name.value, lr=opt.lr, weight_decay=weight_decay,
                           grad_norm=grad_norm, dim=dim if adaptive else None,
                           **simulator_options(opt))


def compare_run(run: Run, *, mean_field: bool = False, dims: dict[str, int] | None = None,
                seed: int = 0) -> pd.DataFrame:
    """Long-form table ``(step, layer, quantity, source, value)``: for every probed layer the
    measured ``norm_sq``, ``effective_lr`` and ``angular_update``; the same from
    :func:`sim.drive` fed the layer's measured ``grad_norm_unit`` from its measured initial norm
    (001 Eq. 23); and, where the layer is decayed at a constant learning rate, the equilibrium of
    :func:`sim.equilibrium` at the mean gradient norm of the last quarter of the run (001 Eq.
    24-25), as a constant.

    With ``mean_field``, the runs of the other optimizers of :data:`COMPARED` are compared too, by
    the sphere engine seeded with ``seed`` on spheres of the dimensions ``dims`` (layer -> unit dimension,
    :func:`unit_dims`) and by theory's mean-field equilibria. ValueError for runs the model
    does not describe (other optimizers, a decay mode the simulator does not apply, grafting,
    renormalization, probes not at every step)."""
    _check_comparable(run, mean_field)
    metrics = run.metrics
    grads = wide(metrics, "grad_norm_unit")  # (steps, layers)
    norms = wide(metrics, "norm_sq")
    layers = list(grads.columns)
    invariant = invariant_layers(metrics)
    wd = {layer: _weight_decay(run, layer, invariant.__getitem__) for layer in invariant}
    steps = grads.index.to_numpy()
    if not np.array_equal(steps, np.arange(len(steps))):
        raise ValueError(f"run {run.id} was not probed at every step; the driven recurrence "
                         "needs probe_every = 1")
    decay = np.array([wd[name] for name in layers])  # (layers,)
    driven = _driven(run, grads, norms.loc[steps[0], layers].to_numpy(), decay, dims, seed)
    tail = grads.iloc[int(len(grads) * (1 - TAIL_FRACTION)):].mean()
    blocks = []
    for quantity in QUANTITIES:
        measured = (norms if quantity == "norm_sq" else wide(metrics, quantity)).loc[steps, layers]
        blocks += [(quantity, "measured", layers, measured.to_numpy()),
                   (quantity, "driven", layers, driven[quantity])]
    for layer in layers:
        if wd[layer] > 0 and run.config.optimizer.schedule is Schedule.CONSTANT:
            target = _equilibrium(run, wd[layer], tail[layer], (dims or {}).get(layer))
            blocks += [(q, "equilibrium", [layer], np.full((len(steps), 1), float(target[q])))
                       for q in QUANTITIES]
    return _long(steps, blocks)


def unit_comparison(run: Run, stats: UnitStats, layer: str) -> pd.DataFrame:
    """Per unit of ``layer`` and step, its measured ``||w_k||^2`` beside the prediction of
    :func:`sim.drive` fed that unit's own gradient norm at unit weight norm,
    ``||grad J(w_hat_k)|| = sqrt(grad_sq * norm_sq)`` (001 Eq. 18), from its measured initial
    norm: 001 Eq. (23) holds for every scale-invariant unit under SGD step by step, so the
    prediction is exact up to the layer's scale invariance. Long form ``(step, unit, measured,
    predicted)``. ValueError for a run this does not describe (not SGD, norms set by grafting or
    renormalization, per-unit records not at every step)."""
    _check_comparable(run, mean_field=False)
    if layer not in stats.layers:
        raise ValueError(f"run {run.id} has no per-unit records of layer {layer!r} (recorded: "
                         f"{', '.join(stats.layers) or 'none'}; set unit_probe_every = 1)")
    records = stats.layers[layer]
    if not np.array_equal(records.steps, np.arange(records.steps[0], records.steps[-1] + 1)):
        every = int(np.min(np.diff(records.steps))) if len(records.steps) > 1 else 0
        raise ValueError(f"run {run.id} recorded per-unit statistics every {every} steps; the "
                         "driven recurrence needs every step (unit_probe_every = 1)")
    norm_sq = records.values["norm_sq"].astype(np.float64)  # (steps, units)
    grads = np.sqrt(records.values["grad_sq"].astype(np.float64) * norm_sq)
    wd = _weight_decay(run, layer, lambda name: invariant_layers(run.metrics).get(name, False))
    opt = run.config.optimizer
    first, steps = int(records.steps[0]), len(records.steps)
    factors = lr_factors(schedule(opt), first + steps)[first:]  # the schedule from the first
    predicted = sim.drive(grads, lr=opt.lr, weight_decay=wd, init_norm=np.sqrt(norm_sq[0]),
                          schedule=factors)
    return pd.DataFrame({"step": np.repeat(records.steps, len(records.units)),
                         "unit": np.tile(records.units, len(records.steps)),
                         "measured": norm_sq.ravel(), "predicted": predicted.norm_sq.ravel()})


def layer_view(comparison: pd.DataFrame, layer: str) -> Comparison:
    """One layer of :func:`compare_run` as theory (the driven recurrence first, the
    equilibrium) beside the measurement, a panel per quantity."""
    rows = comparison[comparison["layer"] == layer]
    order = {"measured": 0, "driven": 1, "equilibrium": 2}
    rows = rows.sort_values("source", key=lambda s: s.map(order), kind="stable")
    table = pd.DataFrame({"panel": rows["quantity"], "series": rows["source"],
                          "role": np.where(rows["source"] == "measured", "data", "theory"),
                          "step": rows["step"], "value": rows["value"]})
    return Comparison(table, theory="predicted", data="measured", log_y=QUANTITIES)


UNIT_SPREAD = (0.05, 0.95)  # quantiles of the band of measured / predicted over units


def unit_view(units: pd.DataFrame, unit: int) -> Comparison:
    """:func:`unit_comparison` as two panels: unit ``unit``'s measured ``||w||^2`` beside its
    prediction, and over every unit the median of measured / predicted with its
    :data:`UNIT_SPREAD` band, beside theory's 1."""
    one = units[units["unit"] == unit]
    mine = f"‖w‖² of unit {unit}"
    ratios = (units["measured"] / units["predicted"]).groupby(units["step"])
    low, median, high = (ratios.quantile(q) for q in (UNIT_SPREAD[0], 0.5, UNIT_SPREAD[1]))
    spread = f"measured / predicted, {units['unit'].nunique()} units"
    band = f"median, {UNIT_SPREAD[0]:.0%}–{UNIT_SPREAD[1]:.0%} of units"
    steps = median.index.to_numpy()
    table = pd.concat([
        pd.DataFrame({"panel": mine, "series": f"unit {unit}", "role": "data",
                      "step": one["step"], "value": one["measured"]}),
        pd.DataFrame({"panel": mine, "series": f"unit {unit}", "role": "theory",
                      "step": one["step"], "value": one["predicted"]}),
        pd.DataFrame({"panel": spread, "series": band, "role": "data", "step": steps,
                      "value": median.to_numpy(), "low": low.to_numpy(),
                      "high": high.to_numpy()}),
        pd.DataFrame({"panel": spread, "series": band, "role": "theory",
                      "step": [steps[0], steps[-1]], "value": 1.0}),
    ], ignore_index=True)
    return Comparison(table, theory="driven recurrence", data="measured", log_y=(mine,))


def seeds_of(config: TrainConfig, configs: Mapping[str, TrainConfig]) -> list[str]:
    """The runs of ``configs`` (run id -> config) that repeat ``config`` with another seed: equal
    but for ``seed`` and ``device`` (which chose the hardware, not the model)."""
    key = dataclasses.replace(config, seed=0, device="auto")
    return [run_id for run_id, other in configs.items()
            if dataclasses.replace(other, seed=0, device="auto") == key]


def last_unit_ratio(units: pd.DataFrame) -> float:
    """The median over units of measured / predicted ``||w||^2`` at the last step of
    :func:`unit_comparison`: one number per run, 1 where 001 Eq. (23) holds."""
    last = units[units["step"] == units["step"].max()]
    return float((last["measured"] / last["predicted"]).median())


def seed_interval(units_per_seed: list[pd.DataFrame]) -> Interval:
    """:func:`last_unit_ratio` over the seeds of a configuration (one :func:`unit_comparison`
    each), as a mean with its Student-t 95% interval (:func:`estimators.interval`)."""
    return interval(np.array([last_unit_ratio(units) for units in units_per_seed]))


def _long(steps: np.ndarray,
          blocks: list[tuple[str, str, list[str], np.ndarray]]) -> pd.DataFrame:
    """The long table ``(step, layer, quantity, source, value)`` of ``blocks``, each a
    quantity, a source, its layers and their values ``(steps, layers)``, row by row in step
    order within each block (built from arrays at once: concatenating a frame per block costs
    more than the blocks)."""
    columns: dict[str, list[np.ndarray]] = {name: [] for name in LONG_COLUMNS}
    for quantity, source, layers, values in blocks:
        count = values.size
        columns["step"].append(np.repeat(steps, len(layers)))
        columns["layer"].append(np.tile(np.array(layers, dtype=object), len(steps)))
        columns["quantity"].append(np.full(count, quantity, dtype=object))
        columns["source"].append(np.full(count, source, dtype=object))
        columns["value"].append(np.asarray(values, np.float64).ravel())
    return pd.DataFrame({name: np.concatenate(parts) for name, parts in columns.items()})


def relative_errors(comparison: pd.DataFrame, invariant: dict[str, bool]) -> pd.DataFrame:
    """Per layer and quantity, ``|prediction - measured| / |measured|`` of the driven
    recurrence (median over steps, and at the last step) and of the equilibrium (against the
    measured mean of the last quarter of the run; NaN for an undecayed layer)."""
    sources = comparison.pivot(index=["layer", "quantity", "step"], columns="source",
                               values="value")
    rows = []
    for layer, quantity in comparison[["layer", "quantity"]].drop_duplicates().itertuples(
            index=False):
        group = sources.loc[(layer, quantity)]  # by step, a column per source
        measured = group["measured"]
        error = (group["driven"] - measured).abs() / measured.abs()
        tail = measured.iloc[int(len(measured) * (1 - TAIL_FRACTION)):].mean()
        equilibrium = group["equilibrium"].iloc[-1] if "equilibrium" in group else np.nan
        rows.append({
            "layer": layer, "quantity": quantity, "scale_invariant": invariant[layer],
            "driven_median": float(error.median()), "driven_last": float(error.iloc[-1]),
            "equilibrium": float(abs(equilibrium - tail) / abs(tail)),
        })
    return pd.DataFrame(rows)
