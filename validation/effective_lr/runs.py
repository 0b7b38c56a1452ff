"""The runs that the driven, equilibrium, norm-growth and step-decay experiments measure: every
network x optimizer setting, with and without weight decay, probed at every step, each beside
its comparison table (:func:`validation.comparison.compare_run`).

Networks: the digits MLP and small CNN with batch norm (CPU, minutes), and a CIFAR-10 ResNet
when ``settings.data_root`` holds the data. Only scale-invariant layers
(:func:`validation.comparison.invariant_layers`) are predicted; the output layer is reported apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from scalewise import models
from scalewise.models.store import Run, RunStatus
from scalewise.validation import comparison
from scalewise.validation.report import Record, curve_frame, record
from scalewise.validation.suite import Settings, Size, train_runs

RECORD_POINTS = 12  # steps per curve at which a comparison is recorded
NO_DECAY = "-nowd"  # suffix of the label of a run without weight decay
DECAYED_DRIVEN_LIMIT = 0.15  # SGD with decay: what driving by layer means allows (see driven)


@dataclass(frozen=True)
class Setting:
    """One optimizer setting of the suite: torch optimizer ``name``, ``lr``, weight decay and its
    mode; ``label`` is the report's optimizer label."""

    label: str
    name: str
    lr: float
    weight_decay: float
    wd_mode: str

    def changes(self, decayed: bool) -> dict[str, object]:
        return {"optimizer.name": self.name, "optimizer.lr": self.lr,
                "optimizer.weight_decay": self.weight_decay if decayed else 0.0,
                "optimizer.wd_mode": self.wd_mode if decayed else "none"}


# lr * wd = 5e-3 (momentum SGD: the same per effective step, lr / (1 - mu) = 0.1): theory's
# approach rate gives SGD a time constant of about 1/(4 lr wd) = 50 steps, so after the initial
# shrink the last quarter of a 1200-step run is settled. beta2 = 0.99 keeps Adam's second-moment
# memory, 1/(1 - beta2) = 100 steps, below 1/(lr wd), as theory's adaptive forms assume.
SETTINGS = (
    Setting("sgd", "sgd", 0.1, 0.05, "l2"),
    Setting("sgdm", "sgdm", 0.01, 0.05, "l2"),
    Setting("adam", "adam", 0.01, 0.1, "l2"),
    Setting("adamw", "adamw", 0.003, 1.67, "decoupled"),
)
NETWORKS = {"mlp": {"model.arch": "mlp"}, "cnn": {"model.arch": "vgg", "model.width": 32}}
BASE = {"data.name": "digits", "model.norm": "batch", "probe_every": 1, "costly_probe_every": 0,
        "optimizer.betas": (0.9, 0.99)}  # momentum SGD's momentum: its default, 0.9


@dataclass(frozen=True)
class Scale:
    """What the runs train at one size: ``steps``, the digits ``networks``, the factor on every
    setting's weight decay (stronger in a short run, so that it settles) and the changes of
    the CIFAR-10 ResNet run."""

    steps: int
    networks: tuple[str, ...]
    decay_factor: float
    resnet: dict[str, object]


SCALES = {
    # a smoke run only checks that the ResNet path runs (a few steps of a thin ResNet)
    Size.SMOKE: Scale(steps=160, networks=("mlp",), decay_factor=4.0,
                      resnet={"model.width": 4, "steps": 30, "data.batch_size": 32}),
    Size.REFERENCE: Scale(steps=1200, networks=("mlp", "cnn"), decay_factor=1.0, resnet={}),
}


def networks(settings: Settings) -> dict[str, dict[str, object]]:
    """The digits networks of the size, plus the CIFAR-10 ResNet when ``settings.data_root``
    is given."""
    scale = settings.scale(SCALES)
    nets = {name: NETWORKS[name] for name in scale.networks}
    if settings.data_root is not None:
        nets["resnet"] = {"data.name": "cifar10", "data.root": settings.data_root,
                          "model.arch": "resnet", "model.width": 16, **scale.resnet}
    return nets


def config(network: dict[str, object], setting: Setting, decayed: bool, steps: int,
           seed: int, extra: dict[str, object] | None = None) -> models.TrainConfig:
    """The run of ``setting`` on ``network`` (with or without its weight decay) for ``steps``
    steps; ``network``'s changes, then ``extra``, override the shared ones."""
    changes = {**BASE, **setting.changes(decayed), "steps": steps, "seed": seed,
               "eval_every": max(steps // 4, 1), "checkpoint_every": 0, **network,
               **(extra or {})}
    return models.override(models.TrainConfig(), changes)


def scaled(setting: Setting, settings: Settings) -> Setting:
    """``setting`` with its weight decay multiplied by the size's ``decay_factor``."""
    factor = settings.scale(SCALES).decay_factor
    return Setting(setting.label, setting.name, setting.lr, setting.weight_decay * factor,
                   setting.wd_mode)


@dataclass(frozen=True)
class Measured:
    """A trained run with its label, network and comparison table
    (:func:`validation.comparison.compare_run`)."""

    network: str
    label: str
    run: Run
    table: pd.DataFrame
    invariant: dict[str, bool]
    dims: dict[str, int]  # layer -> dimension of one unit's weight row


def equilibrium_runs(settings: Settings) -> list[Measured]:
    """Every network x optimizer, with and without weight decay (the driven, equilibrium and
    norm-growth experiments share them; the store returns finished runs, so later calls train
    nothing). ResNet runs: SGD and momentum SGD with decay only."""
    jobs = []
    for net, network in networks(settings).items():
        for base in SETTINGS:
            setting = scaled(base, settings)
            for decayed in (True, False):
                if net == "resnet" and (setting.name not in ("sgd", "sgdm") or not decayed):
                    continue
                label = setting.label + ("" if decayed else NO_DECAY)
                jobs.append((net, label, config(network, setting, decayed,
                                                settings.scale(SCALES).steps, settings.seed)))
    runs = train_runs([c for *_, c in jobs], settings, desc="effective-lr runs")
    return [measure(net, label, run, settings.seed) for (net, label, _), run in zip(jobs, runs)]


def measure(network: str, label: str, run: Run, seed: int) -> Measured:
    """``run`` beside theory; ValueError naming the run if it diverged."""
    if run.status is RunStatus.FAILED:
        raise ValueError(f"run {run.id} ({network}, {label}) diverged: {run.log[-300:]}")
    dims = comparison.unit_dims(run.config)
    table = comparison.compare_run(run, mean_field=True, dims=dims, seed=seed)
    return Measured(network, label, run, table, comparison.invariant_layers(run.metrics), dims)


def series(table: pd.DataFrame, layer: str, quantity: str, source: str) -> pd.Series:
    """One curve of a comparison table, indexed by step."""
    rows = table[(table["layer"] == layer) & (table["quantity"] == quantity)
                 & (table["source"] == source)]
    return rows.set_index("step")["value"].sort_index()


def invariant(m: Measured) -> list[str]:
    """The scale-invariant layers of ``m`` (the ones predicted)."""
    return [layer for layer, ok in m.invariant.items() if ok]


def grad_norms(m: Measured) -> pd.DataFrame:
    """Measured gradient norm at unit weight norm, (steps, layers)."""
    return comparison.wide(m.run.metrics, "grad_norm_unit")


def tail_mean(values: pd.Series, fraction: float = comparison.TAIL_FRACTION) -> float:
    """Mean over the last ``fraction`` of the steps."""
    return float(values.iloc[int(len(values) * (1 - fraction)):].mean())


def curve_records(experiment: str, optimizer: str, layer: str, quantity: str,
                  predicted: pd.Series, measured: pd.Series,
                  steps: Iterable[int]) -> list[Record]:
    """``"<quantity>@<k>"`` records at ``steps``."""
    return [record(experiment, optimizer, layer, f"{quantity}@{k}", predicted=predicted.loc[k],
                   measured=measured.loc[k]) for k in steps]


def table_curves(experiment: str, m: Measured, layers: list[str], quantities: tuple[str, ...],
                 sources: tuple[str, ...]) -> pd.DataFrame:
    """The curves of ``m``'s comparison table, layers named ``<network>/<layer>`` and the
    driven prediction as source ``predicted``."""
    rows = m.table[m.table["layer"].isin(layers) & m.table["quantity"].isin(quantities)
                   & m.table["source"].isin(sources)]
    return curve_frame(experiment, m.label, m.network + "/" + rows["layer"], rows["quantity"],
                       rows["source"].replace({"driven": "predicted"}), rows["step"],
                       rows["value"])


def source_curves(experiment: str, optimizer: str, layer: str, quantity: str,
                  by_source: dict[str, pd.Series]) -> pd.DataFrame:
    """Curves indexed by step, one per source, in the report's long form."""
    return pd.concat([curve_frame(experiment, optimizer, layer, quantity, source,
                                  values.index.to_numpy(), values.to_numpy())
                      for source, values in by_source.items()], ignore_index=True)


def base_quantities(records: list[Record]) -> pd.DataFrame:
    """``records`` as a frame with the column ``base``: the quantity without its ``@k``."""
    frame = pd.DataFrame([r.__dict__ for r in records])
    return frame.assign(base=frame["quantity"].str.split("@").str[0])
