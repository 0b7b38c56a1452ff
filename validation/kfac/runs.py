"""What the K-FAC experiments share: the optimizers and their settings, the family of MLPs
without normalization (mechanism II) and the batch-normalized K-FAC runs (mechanism III), all
on scikit-learn's digits.

No momentum anywhere: K-FAC's normalized step and the norm recurrence are statements about one
plain step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from scalewise import checks, models
from scalewise.models.store import Run, RunStatus
from scalewise.theory import kfac as kfac_theory
from scalewise.validation.report import curve_frame
from scalewise.validation.suite import Settings, Size, train_runs

WD_MODES = ("none", "decoupled", "l2")
WEIGHT_DECAY = 2e-2
DAMPING = 3e-2  # the practical damping of every K-FAC run (001 Eq. 26)
SGD_LR = 0.05
KFAC_LR = 0.02
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer.name": "sgd", "optimizer.lr": SGD_LR},
    "kfac-g": {"optimizer.name": "kfac", "optimizer.lr": KFAC_LR,
               "optimizer.kfac.curvature": "gauss-newton"},
    "kfac-f": {"optimizer.name": "kfac", "optimizer.lr": KFAC_LR,
               "optimizer.kfac.curvature": "fisher"},
}
"""Optimizer label -> config changes."""
KFAC_LABELS = ("kfac-g", "kfac-f")
CHECKPOINTS = 15  # steps per curve at which a comparison is recorded


@dataclass(frozen=True)
class Scale:
    """What the shared runs train at one size."""

    depths: tuple[int, ...]  # hidden layers of the family (theory's L: depth + 1 matrices)
    widths: tuple[int, ...]
    family_steps: int
    bn_steps: int  # batch-normalized K-FAC runs (effective damping, traces)
    bn_width: int
    costly_every: int  # costly probes (traces) of the BN runs


SCALES = {
    Size.SMOKE: Scale(depths=(1, 2), widths=(16,), family_steps=60, bn_steps=60, bn_width=16,
                      costly_every=20),
    Size.REFERENCE: Scale(depths=(1, 2, 3), widths=(16, 64), family_steps=500, bn_steps=1000,
                          bn_width=32, costly_every=50),
}


def label(optimizer: str, wd_mode: str) -> str:
    """Record label of an optimizer with a weight decay mode: ``kfac-g``, ``kfac-g+decoupled``,
    ``kfac-g+l2``."""
    return optimizer if wd_mode == "none" else f"{optimizer}+{wd_mode}"


def optimizer_changes(optimizer: str, wd_mode: str, damping: float = DAMPING) -> dict[str, Any]:
    """Config changes of ``optimizer`` (a key of :data:`OPTIMIZERS`) with ``wd_mode``."""
    checks.one_of("optimizer", optimizer, OPTIMIZERS)
    checks.one_of("wd_mode", wd_mode, WD_MODES)
    return {**OPTIMIZERS[optimizer], "optimizer.momentum": 0.0,
            "optimizer.kfac.damping": damping, "optimizer.wd_mode": wd_mode,
            "optimizer.weight_decay": 0.0 if wd_mode == "none" else WEIGHT_DECAY}


def base_config(settings: Settings, **changes: Any) -> models.TrainConfig:
    """The default run config with the seed of ``settings``, checkpointed at its end only, and
    ``changes``."""
    return models.override(models.TrainConfig(seed=settings.seed, checkpoint_every=0), changes)


# ----------------------------------------------------------------------- the family (mechanism II)


def family_configs(settings: Settings) -> list[tuple[str, models.TrainConfig]]:
    """(label, config) of every network of the family: MLPs without normalization on digits,
    each depth x width x optimizer x weight decay mode, probed only at the end."""
    scale = settings.scale(SCALES)
    out = []
    for depth in scale.depths:
        for width in scale.widths:
            for optimizer in OPTIMIZERS:
                for mode in WD_MODES:
                    config = base_config(settings, **{
                        "model.norm": "none", "model.depth": depth, "model.width": width,
                        "steps": scale.family_steps, "probe_every": 0, "costly_probe_every": 0,
                        "eval_every": 0, **optimizer_changes(optimizer, mode)})
                    out.append((label(optimizer, mode), config))
    return out


def final_norms(run: Run) -> dict[str, float]:
    """The network-level costly probes and losses of ``run`` at its last step."""
    metrics = run.metrics
    last = metrics[(metrics["step"] == run.config.steps) & (metrics["layer"] == "")]
    return dict(zip(last["name"], last["value"].astype(float)))


def family_table(settings: Settings) -> pd.DataFrame:
    """One row per trained network of the family: label, depth, width, wd mode, final
    ``jacobian_sq_norm``, ``gn_norm``, ``kfac_gn_norm``, train/test loss, and theory's
    ``(L+1) ||J||_F^2`` (:data:`theory.kfac.KFAC_GN_NORM`, ``L`` = hidden layers); the column
    ``skipped`` counts the diverged runs left out."""
    labelled = family_configs(settings)
    runs = train_runs([c for _, c in labelled], settings, desc="kfac: network family")
    rows = []
    for (name, config), run in zip(labelled, runs):
        if run.status is not RunStatus.COMPLETED:
            continue
        norms = final_norms(run)
        rows.append({
            "label": name, "optimizer": name.split("+")[0],
            "wd_mode": config.optimizer.wd_mode.value, "depth": config.model.depth,
            "width": config.model.width, "steps": config.steps, **{k: norms[k] for k in (
                "jacobian_sq_norm", "gn_norm", "kfac_gn_norm", "train_loss", "test_loss")},
            "theory_kfac_gn_norm": float(kfac_theory.kfac_gn_norm(config.model.depth,
                                                                  norms["jacobian_sq_norm"])),
            "run": run.id})
    return pd.DataFrame(rows).assign(skipped=len(runs) - len(rows))


def final_curves(experiment: str, table: pd.DataFrame,
                 columns: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """The family's end-of-training values as curve points at the last step, one curve per
    network (``layer`` = ``d<depth>-w<width>``): ``columns`` maps a table column to its
    (quantity, source)."""
    network = "d" + table["depth"].astype(str) + "-w" + table["width"].astype(str)
    return pd.concat([curve_frame(experiment, table["label"], network, quantity, source,
                                  table["steps"], table[column])
                      for column, (quantity, source) in columns.items()], ignore_index=True)


# ----------------------------------------------------------------------- BN runs (mechanism III)


def bn_configs(settings: Settings) -> list[tuple[str, models.TrainConfig]]:
    """(label, config) of the batch-normalized K-FAC runs: an MLP (2 hidden layers) on digits
    with K-FAC-G and K-FAC-F, each without decay, with decoupled decay and with L2, probed
    every step (norms, angular updates) and every ``costly_every`` steps (traces)."""
    scale = settings.scale(SCALES)
    return [(label(o, mode), base_config(settings, **{
        "model.norm": "batch", "model.depth": 2, "model.width": scale.bn_width,
        "steps": scale.bn_steps, "probe_every": 1, "costly_probe_every": scale.costly_every,
        "eval_every": scale.costly_every, **optimizer_changes(o, mode)}))
        for o in KFAC_LABELS for mode in WD_MODES]


def bn_runs(settings: Settings) -> list[tuple[str, Run]]:
    """(label, run) of the completed runs of :func:`bn_configs`."""
    labelled = bn_configs(settings)
    runs = train_runs([c for _, c in labelled], settings, desc="kfac: BN networks")
    return [(name, run) for (name, _), run in zip(labelled, runs)
            if run.status is RunStatus.COMPLETED]


def float64_setup(
    settings: Settings, optimizer: str, *, width: int, damping: float,
    changes: dict[str, Any] | None = None,
) -> tuple[models.TrainConfig, torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The config of a batch-normalized MLP on digits with ``optimizer`` (no decay), its
    network in float64 (initialized from ``settings.seed``) and the training inputs (float64)
    and targets."""
    config = base_config(settings, **{
        "model.norm": "batch", "model.depth": 2, "model.width": width,
        **optimizer_changes(optimizer, "none", damping), **(changes or {})})
    data = models.load_dataset(config.data, seed=config.seed)
    model = models.build_model(config.model, data.in_shape, data.num_classes,
                               seed=config.seed).double()
    return config, model, data.train.inputs.double(), data.train.targets
