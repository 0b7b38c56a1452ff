"""004 Eq. 14: one K-FAC step of a batch-normalized layer is ``||w||`` times theory's
normalized step with effective damping ``eta ||w||^2``, checked on one real step in float64.

Config: a batch-normalized MLP in float64 (:func:`~.runs.float64_setup`), one batch. Runs ->
per hidden layer the step taken and theory's step from the held factors and from factors
measured anew at ``w / ||w||`` -> records of norms and cosines -> bounds at rounding (held) and
at batch norm's epsilon (measured anew) -> text and figure.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from scalewise import models
from scalewise.models.kfac import KFAC
from scalewise.models.networks import scale_invariant_params
from scalewise.theory import kfac as kfac_theory
from scalewise.validation.kfac.runs import DAMPING, KFAC_LABELS, KFAC_LR, float64_setup
from scalewise.validation.report import Bound, Record, Report, record
from scalewise.validation.suite import Settings

EXPERIMENT = "normalized_update"
RESCALED_FACTORS_LIMIT = 1e-3  # K-FAC step from factors re-measured at w/||w|| (BN epsilon)
Checks = dict[str, dict[str, Any]]  # "<layer>/<held|rescaled>" -> the step check


def normalized_update(report: Report, settings: Settings) -> None:
    """004 Eq. 14: the K-FAC step of a batch-normalized layer is ``||w||`` times theory's
    normalized step with effective damping ``eta ||w||^2``."""
    results = {o: kfac_step_check(settings, o) for o in KFAC_LABELS}
    report.add(*(r for optimizer, checks in results.items() for r in records(optimizer, checks)))
    report.bounds += bounds()
    section = report.section("Mechanism III: the normalized K-FAC update", text(results))
    check = results["kfac-g"]["hidden1/held"]
    section.figure("normalized_update", figure(check["predicted"], check["measured"]),
                   "Entries of one K-FAC step of the first hidden layer (K-FAC-G): theory's "
                   "||w|| x normalized step against the step the optimizer took.")


def kfac_step_check(settings: Settings, optimizer: str, *, width: int = 16,
                    batch: int = 128) -> dict[str, dict[str, Any]]:
    """One K-FAC step (the lr of :data:`~.runs.OPTIMIZERS`, damping :data:`~.runs.DAMPING`,
    fresh factors) on a float64
    batch-normalized MLP against :func:`theory.kfac.normalized_kfac_step`, per hidden layer.

    With ``gamma = ||W||_F`` the predicted parameter step is
    ``-alpha gamma (G(w_hat) + eta gamma^2 I)^{-1} grad J(w_hat)`` (004 Eq. 14). ``held``
    takes ``G(w_hat) = gamma^2 (S (x) A)`` and ``grad J(w_hat) = gamma grad J(w)`` from the
    factors the optimizer holds; ``rescaled`` measures both on a copy of the network whose
    layer weights are divided by ``gamma`` (same batch, same sampled ``Dz``), so it also tests
    ``G(gamma w) = G(w) / gamma^2`` on the real network, up to the batch norm's epsilon.
    Returns, per ``"<layer>/<held|rescaled>"``, the predicted and measured steps (flattened
    row-major), their norms, cosine and relative ``mismatch`` ``||predicted - measured|| /
    ||measured||``."""
    config, model, inputs, targets = float64_setup(
        settings, optimizer, width=width, damping=DAMPING,
        changes={"optimizer.kfac.factor_decay": 0.0, "optimizer.kfac.inverse_interval": 1})
    x, y = inputs[:batch], targets[:batch]
    pristine = copy.deepcopy(model)  # before the optimizer hooks into the model
    kfac_opt = models.build_optimizer(model, config.optimizer)
    layers = {w.name: w.param for w in scale_invariant_params(model)}
    before = {name: w.detach().clone() for name, w in layers.items()}
    models.train_step(model, kfac_opt, x, y,
                      generator=torch.Generator().manual_seed(config.seed))
    lr, damping = config.optimizer.lr, config.optimizer.kfac.damping
    out = {}
    for name, weight in layers.items():
        gamma = float(before[name].norm())
        state = kfac_opt.state[weight]
        held_curvature = gamma**2 * torch.kron(state["S"], state["A"])
        held_grad = gamma * weight.grad.flatten()
        hat_curvature, hat_grad = _rescaled_curvature(pristine, config, name, gamma, x, y)
        measured = (weight.detach() - before[name]).flatten().numpy()
        for source, (curvature, grad) in (("held", (held_curvature, held_grad)),
                                          ("rescaled", (hat_curvature, hat_grad))):
            predicted = -lr * gamma * kfac_theory.normalized_kfac_step(
                curvature.numpy(), grad.numpy(), damping=damping, norm_sq=gamma**2)
            out[f"{name}/{source}"] = {
                "predicted_norm": float(np.linalg.norm(predicted)),
                "measured_norm": float(np.linalg.norm(measured)),
                "cosine": float(predicted @ measured
                                / (np.linalg.norm(predicted) * np.linalg.norm(measured))),
                "mismatch": float(np.linalg.norm(predicted - measured)
                                  / np.linalg.norm(measured)),
                "predicted": predicted, "measured": measured}
    return out


def _network_at(pristine: torch.nn.Module, name: str, scale: float) -> torch.nn.Module:
    """A copy of ``pristine`` (a network without optimizer hooks) with layer ``name``'s weights
    multiplied by ``scale``."""
    clone = copy.deepcopy(pristine)
    with torch.no_grad():
        next(w.param for w in scale_invariant_params(clone) if w.name == name).mul_(scale)
    return clone


def _rescaled_curvature(pristine: torch.nn.Module, config: models.TrainConfig, name: str,
                        gamma: float, x: torch.Tensor,
                        y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S (x) A, grad J)`` of layer ``name`` measured at ``w_hat = w / gamma``: same batch,
    same ``Dz`` (the generator seeded as for the step)."""
    clone = _network_at(pristine, name, 1 / gamma)
    probe = KFAC(clone, lr=config.optimizer.lr, damping=config.optimizer.kfac.damping,
                 curvature=config.optimizer.kfac.curvature, factor_decay=0.0)
    outputs = clone(x)
    probe.update_curvature(outputs, torch.Generator().manual_seed(config.seed))
    loss = torch.nn.functional.cross_entropy(outputs, y)
    param = next(w.param for w in scale_invariant_params(clone) if w.name == name)
    grad = torch.autograd.grad(loss, param)[0].flatten()
    state = probe.state[param]
    return torch.kron(state["S"], state["A"]), grad


def records(optimizer: str, checks: Checks) -> list[Record]:
    """Per layer and source: the step norm against theory's, and the cosine against 1
    (quantities with ``_rescaled_factors`` for the factors measured anew)."""
    out = []
    for key, check in checks.items():
        layer, source = key.split("/")
        suffix = "" if source == "held" else "_rescaled_factors"
        out += [record(EXPERIMENT, optimizer, layer, f"step_norm{suffix}",
                       predicted=check["predicted_norm"], measured=check["measured_norm"]),
                record(EXPERIMENT, optimizer, layer, f"step_cosine{suffix}",
                       predicted=1.0, measured=check["cosine"])]
    return out


def bounds() -> list[Bound]:
    return [
        Bound(EXPERIMENT, "step_norm", 1e-9, description="float64: K-FAC's step = ||w|| x "
              "theory's normalized step (held factors)"),
        Bound(EXPERIMENT, "step_cosine", 1e-12, description="float64: same direction"),
        Bound(EXPERIMENT, "step_norm_rescaled_factors", RESCALED_FACTORS_LIMIT,
              description="factors measured at w/||w|| (batch norm epsilon breaks the exact "
                          "rescaling)"),
    ]


def text(results: dict[str, Checks]) -> str:
    worst = {source: max(c["mismatch"] for step_checks in results.values()
                         for k, c in step_checks.items() if k.endswith(source))
             for source in ("held", "rescaled")}
    return (
        f"**Measured.** One K-FAC step (lr {KFAC_LR:g}, damping eta = "
        f"{DAMPING:g}, factors of this batch only, exact eigendecompositions) on a "
        "batch-normalized MLP in float64, for each hidden layer: the change of its weights.\n\n"
        "**Predicted.** `theory.kfac.normalized_kfac_step` (004 Eq. 14, identity "
        "`kfac_effective_damping`): the step is ``alpha ||w|| (G(w_hat) + eta ||w||^2 I)^{-1} "
        "grad J(w_hat)``, with ``||w|| = ||W||_F`` and the dense Kronecker product as "
        "``G(w_hat)``. Two sources of ``G(w_hat)`` and ``grad J(w_hat)``: the factors the "
        "optimizer holds, rescaled by the homogeneity of 001 Eq. 18 and 004 Eq. 13 "
        "(``gamma^2 S (x) A`` and ``gamma grad J(w)``; records `step_norm`, `step_cosine`), "
        "and factors and gradient measured anew on a copy of the network whose layer is "
        "divided by ``||W||_F`` (same batch, same sampled pseudo-gradients; records "
        "`*_rescaled_factors`).\n\n"
        f"**Result.** With the held factors the steps agree to {worst['held']:.1e} (relative "
        "norm of the difference, worst layer): the damped K-FAC step is exactly the "
        "normalized step with effective damping eta ||w||^2, a dense solve and an "
        "eigendecomposition agreeing to rounding. With the factors measured at "
        f"``w_hat`` the difference is {worst['rescaled']:.1e}: batch norm's epsilon "
        "(1e-5, added to the batch variance, which rescales with the weights) makes the "
        "layer only approximately scale invariant.")


def figure(predicted: np.ndarray, measured: np.ndarray) -> Figure:
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.scatter(measured, predicted, s=4)
    span = np.array([measured.min(), measured.max()])
    ax.plot(span, span, "k--", lw=1, label="equality")
    ax.set(xlabel="measured step entry", ylabel="predicted step entry (theory)",
           title="K-FAC step of a BN layer (float64)")
    ax.legend()
    return fig
