"""Gauss-Newton norm against Jacobian norm (004 Sec. 4.2, Lemma 1-2, Theorem 1; 000 slides,
Mechanism 2): for a bias-free deep linear network of ``L + 1`` weight matrices with whitened
inputs, ``theta^T G theta = (L+1)^2 ||J||_F^2`` (:data:`theory.kfac.GN_NORM`) and
``theta^T G_hat theta = (L+1) ||J||_F^2`` under K-FAC (:data:`theory.kfac.KFAC_GN_NORM`).

:func:`network_family_norms` measures the three norms with :mod:`models.probes` on a small family
of linear and ReLU networks; :func:`stored_norms` reads them from a run's costly probes.
For ReLU networks the gradient-structure lemma ``J_theta theta = (L+1) f(x)`` still holds, so
``gn_norm = (L+1)^2 E||f||^2``, but ``E||f||^2`` is no longer ``||J||_F^2``: the ratios then
show how far the linear theory carries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import sympy as sp
import torch
from torch import nn

from scalewise import checks
from scalewise.models import probes
from scalewise.models.data import whitened_inputs
from scalewise.theory import kfac

NORMS = ("jacobian_sq_norm", "gn_norm", "kfac_gn_norm")
ACTIVATIONS = {"linear": nn.Identity, "relu": nn.ReLU}

_GN_RATIO = sp.lambdify(kfac.depth, kfac.GN_NORM / kfac.jacobian_sq)
_KFAC_RATIO = sp.lambdify(kfac.depth, kfac.KFAC_GN_NORM / kfac.jacobian_sq)


def deep_network(depth: int, width: int, activation: str,
                 generator: torch.Generator) -> nn.Sequential:
    """Bias-free ``nn.Sequential`` of ``depth + 1`` Linear layers ``width x width`` (float64),
    ``activation`` (``linear`` or ``relu``) between them, Gaussian weights of variance 1/width."""
    checks.one_of("activation", activation, ACTIVATIONS)
    checks.integer("depth", depth, 0)
    checks.integer("width", width, 1)
    layers: list[nn.Module] = []
    for i in range(depth + 1):
        linear = nn.Linear(width, width, bias=False, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(width, width, generator=generator,
                                            dtype=torch.float64) / width**0.5)
        layers += [linear] if i == depth else [linear, ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


def network_family_norms(depths: Sequence[int], activations: Sequence[str] = ("linear", "relu"),
                         *, width: int = 4, samples: int = 64, seed: int = 0) -> pd.DataFrame:
    """Per activation and depth ``L``: the measured ``jacobian_sq_norm``, ``gn_norm`` and
    ``kfac_gn_norm`` on whitened inputs, their ratios, and theory's ratios ``(L+1)^2`` and
    ``L+1`` (exact for ``linear``). A ratio is NaN where the Jacobian vanishes (a narrow ReLU
    network whose units are all dead on these inputs computes a constant)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = whitened_inputs(samples, width, generator)  # (samples, width), X^T X / samples = I
    rows = []
    for activation in activations:
        for depth in depths:
            model = deep_network(depth, width, activation, generator)
            measured = {"jacobian_sq_norm": probes.jacobian_sq_norm(model, inputs),
                        "gn_norm": probes.gn_norm(model, inputs),
                        "kfac_gn_norm": probes.kfac_gn_norm(model, inputs)}
            values = {name: float(value) for name, value in measured.items()}
            rows.append({
                "activation": activation, "L": depth, **values,
                "gn_ratio": _ratio(values["gn_norm"], values["jacobian_sq_norm"]),
                "kfac_ratio": _ratio(values["kfac_gn_norm"], values["jacobian_sq_norm"]),
                "theory_gn_ratio": float(_GN_RATIO(depth)),
                "theory_kfac_ratio": float(_KFAC_RATIO(depth)),
            })
    return pd.DataFrame(rows)


def _ratio(norm: float, jacobian_sq_norm: float) -> float:
    return norm / jacobian_sq_norm if jacobian_sq_norm > 0 else math.nan


def stored_norms(metrics: pd.DataFrame) -> pd.DataFrame:
    """The network-level norms a run's costly probes stored, one row per probed step (columns
    ``step`` and those of :data:`NORMS` that were measured); empty if none were."""
    rows = metrics[(metrics["layer"] == "") & metrics["name"].isin(NORMS)]
    if rows.empty:
        return pd.DataFrame(columns=["step"])
    return rows.pivot_table(index="step", columns="name", values="value").reset_index()
