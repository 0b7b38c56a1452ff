"""The runs of the effective-LR suite and what every experiment reads from them.

A :class:`Setting` is an optimizer with its hyperparameters; its run length follows theory's
time constant (:meth:`Setting.time_constant`), so every run can settle. The networks are the
digits MLP with batch, layer or weight norm and the small batch-norm CNN; runs record the layer
sums of the step statistics every step and per-unit records every ``unit_every`` steps
(:data:`scalewise.models.probes.UNIT_STATISTICS`). :class:`Measured` holds a trained run with
its per-unit records and the units that are scale invariant (``|cos(w, grad J)|`` below
:data:`INVARIANCE_TOLERANCE`) in a layer whose normalization keeps a margin of at least
:data:`MARGIN` over its ``eps``; the others are listed, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalewise import models, sim
from scalewise.models.store import Run, RunStatus, RunStore, UnitStats
from scalewise.models.training import schedule
from scalewise.sim import norm_schedules
from scalewise.theory import equilibrium as eq
from scalewise.validation.comparison import normalized_layers, unit_dims, wide
from scalewise.validation.suite import Settings, open_store, train_runs
from scalewise.vocabulary import Decay, Optimizer

INVARIANCE_TOLERANCE = 1e-3
"""A unit is compared with the theory of scale-invariant weights when the median over its
records of ``|cos(w, grad J(w))|`` is below this (0 exactly under scale invariance, 001 Eq. 16;
batch norm's ``eps`` makes it about ``eps / var``)."""
MARGIN = 100.0
"""A layer is compared when its normalization's smallest variance stays at least this many
times its ``eps`` (:func:`scalewise.models.probes.normalization_margins`)."""
SETTLE_LENGTH = 12.0
"""Runs last this many of theory's time constants (at least :data:`MIN_STEPS`): settling needs
five (:data:`scalewise.validation.estimators.SETTLING_TIME_CONSTANTS`), the first ones spent
leaving the initial norm, the last two measured."""
MIN_STEPS = 600
"""The shortest run of the reference size (smoke runs set their own)."""
NETWORKS = {
    "mlp-bn": {"model.arch": "mlp", "model.norm": "batch"},
    "mlp-ln": {"model.arch": "mlp", "model.norm": "layer"},
    "mlp-wn": {"model.arch": "mlp", "model.norm": "weight"},
    "cnn-bn": {"model.arch": "vgg", "model.width": 32, "model.norm": "batch"},
    "resnet-bn": {"data.name": "cifar10", "model.arch": "resnet", "model.width": 16,
                  "model.norm": "batch"},
}
"""The networks, named by architecture and normalization as the records' layers are."""
EPS_CONTROL = 1e-9
"""Batch norm's ``eps`` in the control networks (torch's default is 1e-5): a layer whose
variance stays well above 1e-5 is scale invariant with it to float32 rounding, so a control tells
what the default ``eps`` costs the theory of scale-invariant weights; a layer that shrinks far
below 1e-5 can meet this ``eps`` too (the margin and ``|cos(w, grad J)|`` are judged against
each network's own ``eps``)."""
CONTROL_SUFFIX = "-eps1e-9"
NETWORKS.update({f"{net}{CONTROL_SUFFIX}": {**NETWORKS[net], "model.norm_eps": EPS_CONTROL}
                 for net in ("mlp-bn", "cnn-bn")})
DIGITS = ("mlp-bn", "mlp-ln", "mlp-wn", "cnn-bn")
"""The networks trained on the digits, which ship with scikit-learn: every size trains them;
the CIFAR-10 ResNet (meant for a GPU) joins where ``Settings.data_root`` holds the data."""
BASE = {"data.name": "digits", "probe_every": 1, "costly_probe_every": 0, "unit_sample": None}


def eps_controls(networks: Iterable[str]) -> tuple[str, ...]:
    """The control (batch norm's ``eps`` at :data:`EPS_CONTROL`) of each of ``networks`` that
    has one."""
    return tuple(f"{net}{CONTROL_SUFFIX}" for net in networks
                 if f"{net}{CONTROL_SUFFIX}" in NETWORKS)


@dataclass(frozen=True)
class FixedRuns:
    """The size of an experiment whose runs have a fixed length: its ``networks`` (keys of
    :data:`NETWORKS`), ``seeds`` per network and setting, and ``steps`` per run."""

    networks: tuple[str, ...]
    seeds: int
    steps: int


@dataclass(frozen=True)
class Setting:
    """An optimizer (a :class:`scalewise.vocabulary.Optimizer` value) with its learning rate,
    weight decay (applied in the optimizer's own form: L2 where coupled, the shrink where
    decoupled) and, where it has them, momentum and betas (``beta2 = 0.99`` keeps Adam's
    second-moment memory below ``1 / (lr wd)``, as theory's adaptive forms assume)."""

    optimizer: str
    lr: float
    weight_decay: float
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.99)

    @property
    def name(self) -> Optimizer:
        return Optimizer.parse(self.optimizer)

    @property
    def label(self) -> str:
        return self.optimizer if self.weight_decay else f"{self.optimizer}-nowd"

    def changes(self) -> dict[str, object]:
        properties = self.name.properties
        mode = "decoupled" if properties.decay is Decay.DECOUPLED else "l2"
        changes: dict[str, object] = {
            "optimizer.name": self.optimizer, "optimizer.lr": self.lr,
            "optimizer.weight_decay": self.weight_decay,
            "optimizer.wd_mode": mode if self.weight_decay else "none"}
        if properties.uses_momentum:
            changes["optimizer.momentum"] = self.momentum
        if "betas" in properties.hyperparameters:
            changes["optimizer.betas"] = self.betas
        if "rmsprop_alpha" in properties.hyperparameters:
            changes["optimizer.rmsprop_alpha"] = self.betas[1]
        return changes

    def _momentum(self) -> dict[str, float]:
        return {"momentum": self.momentum} if self.name.properties.uses_momentum else {}

    def equilibrium(self, grad_norm: object = 1.0, dim: object = 64) -> dict[str, np.ndarray]:
        """Theory's equilibrium (:func:`scalewise.sim.equilibrium`) at ``grad_norm``."""
        return sim.equilibrium(self.optimizer, lr=self.lr, weight_decay=self.weight_decay,
                               grad_norm=grad_norm, betas=self.betas, dim=dim,
                               **self._momentum())

    def sphere(self, *, grad_norm: float, dim: int, steps: int, runs: int, seed: int,
               init_norm: float = 1.0, correlation: float = 0.0) -> sim.Trajectory:
        """The optimizer itself with these hyperparameters on ``runs`` vectors of dimension
        ``dim`` and norm ``init_norm``, driven by gradients of norm ``grad_norm`` at unit weight
        norm in directions isotropic in the tangent space (the sphere engine), independent
        across steps or, with a ``correlation``, with that lag-1 correlation
        (:class:`scalewise.sim.CorrelatedNoise`), every step recorded."""
        noise = sim.CorrelatedNoise(correlation, seed) if correlation else None
        return sim.simulate(self.optimizer, lr=self.lr, weight_decay=self.weight_decay,
                            steps=steps, grad_norm=grad_norm, init_norm=init_norm,
                            betas=self.betas, rmsprop_alpha=self.betas[1], engine="sphere",
                            dim=dim, runs=runs, seed=seed, record_every=1,
                            loss_gradient=noise, **self._momentum())

    def time_constant(self, grad_norm: float = 1.0) -> float:
        """Theory's steps per e-fold of a deviation from the equilibrium (at ``grad_norm``: the
        Adam family's depends on it through the expansion parameter, and larger gradients
        settle slower there)."""
        return float(eq.time_constant(self.equilibrium(grad_norm)["approach_rate"]))

    def steps(self, minimum: int = MIN_STEPS) -> int:
        """:data:`SETTLE_LENGTH` time constants, at least ``minimum`` (those alone without
        weight decay, where no equilibrium is approached)."""
        if not self.weight_decay:
            return minimum
        return max(minimum, int(math.ceil(SETTLE_LENGTH * self.time_constant())))

    def scaled(self, lr: float = 1.0, weight_decay: float = 1.0) -> Setting:
        """This setting with its learning rate and weight decay multiplied by these factors
        (rounded to 12 significant digits, so that ``0.1 * 0.1`` names the run ``0.01``)."""
        return dataclasses.replace(self, lr=_round(self.lr * lr),
                                   weight_decay=_round(self.weight_decay * weight_decay))


def _round(value: float) -> float:
    return float(f"{value:.12g}")


def config(network: str, setting: Setting, *, seed: int, steps: int | None = None,
           unit_every: int = 1, extra: dict[str, object] | None = None) -> models.TrainConfig:
    """The run of ``setting`` on ``network`` (a key of :data:`NETWORKS`)."""
    steps = steps or setting.steps()
    changes = {**BASE, **NETWORKS[network], **setting.changes(), "steps": steps, "seed": seed,
               "unit_probe_every": unit_every, "eval_every": max(steps // 8, 1),
               "checkpoint_every": max(steps // 4, 1), **(extra or {})}
    return models.override(models.TrainConfig(), changes)


@dataclass(frozen=True)
class Measured:
    """A trained run: its ``network`` key, ``setting``, ``seed``, the stored ``run`` and its
    per-unit records ``units`` (:meth:`scalewise.models.store.RunStore.unit_stats`)."""

    network: str
    setting: Setting
    seed: int
    run: Run
    units: UnitStats
    dims: dict[str, int] = field(default_factory=dict)

    def layer(self, name: str) -> str:
        """A record's layer: the network first, ``mlp-bn/hidden1``."""
        return f"{self.network}/{name}"

    def sums(self, name: str) -> pd.DataFrame:
        """A layer-sum statistic (``sum_<name>``) or a layer metric, (steps, layers)."""
        return wide(self.run.metrics, name)

    def invariant_layers(self) -> list[str]:
        """The layers a normalization follows, in order."""
        return [layer for layer in normalized_layers(self.run.metrics)
                if layer in self.units.layers]

    def margin(self, layer: str) -> float:
        """The layer's smallest normalization margin over the run (inf for weight norm)."""
        margins = self.sums("norm_margin")
        return float(margins[layer].min()) if layer in margins else math.inf

    def invariant_units(self, layer: str) -> np.ndarray:
        """Mask over the layer's recorded units: those whose median ``|cos(w, grad J)|`` is below
        :data:`INVARIANCE_TOLERANCE`, among the units a gradient reaches (:meth:`dead_units`
        have no equilibrium to compare)."""
        v = self.units.layers[layer].values
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.abs(v["w_dot_grad"]) / np.sqrt(v["norm_sq"] * v["grad_sq"])
        invariant = np.nanmedian(np.nan_to_num(cos), axis=0) < INVARIANCE_TOLERANCE
        return invariant & ~self.dead_units(layer)

    def dead_units(self, layer: str) -> np.ndarray:
        """Mask over the layer's recorded units whose loss gradient is 0 at any record (a unit
        no example reaches, 001 Sec. 4.1)."""
        return np.any(self.units.layers[layer].values["grad_sq"] == 0, axis=0)

    @property
    def diverged(self) -> bool:
        return self.run.status is RunStatus.FAILED

    def compared(self, margin: float = MARGIN) -> dict[str, np.ndarray]:
        """The layers compared with theory and their scale-invariant units: a normalization
        margin of at least ``margin`` and at least one invariant unit (none of a run that
        diverged)."""
        out = {}
        for layer in [] if self.diverged else self.invariant_layers():
            mask = self.invariant_units(layer)
            if self.margin(layer) >= margin and mask.any():
                out[layer] = mask
        return out

    def excluded(self, margin: float = MARGIN) -> list[str]:
        """Sentences, computed from the numbers, for every layer or unit :meth:`compared`
        leaves out and why."""
        if self.diverged:
            return [f"{self.setting.label} seed {self.seed} {self.network}: the run diverged "
                    f"({self.run.log.strip().splitlines()[-1] if self.run.log.strip() else 'failed'})"]
        out = []
        for layer in self.invariant_layers():
            least, mask = self.margin(layer), self.invariant_units(layer)
            if least < margin:
                out.append(f"{self.setting.label} seed {self.seed} {self.layer(layer)}: its "
                           f"normalization's margin fell to {least:.3g} x eps (< {margin:g})")
            elif not mask.all():
                dead = int(self.dead_units(layer).sum())
                out.append(f"{self.setting.label} seed {self.seed} {self.layer(layer)}: "
                           f"{int((~mask).sum())} of {mask.size} units left out: {dead} receive "
                           f"no gradient at some step, the others are not scale invariant "
                           f"(median |cos(w, grad J)| >= {INVARIANCE_TOLERANCE:g})")
        return out


def measure(runs: Sequence[tuple[str, Setting, int, models.TrainConfig]],
            settings: Settings, desc: str) -> list[Measured]:
    """Train the ``(network, setting, seed, config)`` jobs and read them back with their
    per-unit records; a run that diverged comes back :attr:`Measured.diverged`, compared
    nowhere and listed by :meth:`Measured.excluded`."""
    trained = train_runs([c for *_, c in runs], settings, desc=desc)
    with open_store(settings) as store:
        return [_measured(store, network, setting, seed, run)
                for (network, setting, seed, _), run in zip(runs, trained)]


def _measured(store: RunStore, network: str, setting: Setting, seed: int, run: Run) -> Measured:
    return Measured(network, setting, seed, run, store.unit_stats(run.id),
                    unit_dims(run.config))


def unit_values(m: Measured, layer: str, mask: np.ndarray | None = None,
                first: int = 0) -> dict[str, np.ndarray]:
    """The per-unit records of ``layer`` from step ``first`` on, the units of ``mask`` (all
    without), each ``(records, units)`` in float64 (float32 runs store them in float32)."""
    stats = m.units.layers[layer]
    keep = stats.steps >= first
    mask = slice(None) if mask is None else mask
    return {name: values[keep][:, mask].astype(np.float64)
            for name, values in stats.values.items()}


def step_lrs(m: Measured, steps: int) -> np.ndarray:
    """The learning rate of steps ``0 .. steps - 1`` of ``m`` under its schedule."""
    opt = m.run.config.optimizer
    return opt.lr * schedule(opt).factors(steps)


def step_decays(m: Measured, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The learning rate and the weight decay of steps ``0 .. steps - 1`` of ``m``, each
    ``(steps, 1)``: the decay constant, or Defazio's ``wd lr_k / lr`` where the run has the
    corrected decay (:func:`scalewise.sim.norm_schedules.decay_schedule`)."""
    opt = m.run.config.optimizer
    lr = step_lrs(m, steps)[:, None]
    return lr, norm_schedules.decay_schedule(lr, opt.weight_decay, corrected=opt.corrected_decay)


def unit_grad_norm(values: dict[str, np.ndarray]) -> np.ndarray:
    """``||grad J(w_hat)|| = ||grad J(w)|| ||w||`` per record and unit (001 Eq. 18)."""
    return np.sqrt(values["grad_sq"] * values["norm_sq"])


def grad_correlation(values: dict[str, np.ndarray]) -> float:
    """The gradients' lag-1 correlation ``E<g_k, g_{k-1}> / sqrt(E||g_k||^2 E||g_{k-1}||^2)``
    over per-unit records (:func:`unit_values`): 0 where they are independent across steps, as
    the mean-field models assume."""
    return float(values["grad_dot_prev"].sum()
                 / np.sqrt(values["grad_sq"].sum() * values["prev_grad_sq"].sum()))


def tangent_energy(values: dict[str, np.ndarray]) -> np.ndarray:
    """``||u||^2 - <w_hat, u>^2`` per record and unit: the update's part orthogonal to ``w``."""
    return np.maximum(values["update_sq"] - values["w_dot_update"] ** 2 / values["norm_sq"], 0)


def seeds(settings: Settings, count: int) -> list[int]:
    """``count`` seeds from ``settings.seed`` on."""
    return [settings.seed + i for i in range(count)]


def labels(measured: Iterable[Measured]) -> list[str]:
    """The optimizer labels of ``measured``, each once, in order."""
    return list(dict.fromkeys(m.setting.label for m in measured))
