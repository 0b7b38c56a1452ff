"""Predicted equilibria: a thin wrapper over theory's closed forms.

The forms are collected in :mod:`theory.equilibria` (SGD's derived in :mod:`theory.equilibrium`,
001 Eq. 23-25; the others in the noise-driven mean-field model of :mod:`theory.mean_field`, which
the sphere engine simulates); the tests compare the two. Conventions (theory's): ``norm_sq`` is
``E||w||^2``; ``effective_lr`` is ``lr / ||w||^2`` for SGD and momentum SGD, ``lr / ||w||`` for
the Adam family; ``angular_update`` is ``arccos(E<w_k, w_{k+1}> / E||w||^2)``; ``approach_rate`` is
the per-step contraction factor of a small deviation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from scalewise import checks
from scalewise.sim.effective import effective_lr
from scalewise.sim.trajectory import Trajectory
from scalewise.theory import equilibria as closed_forms
from scalewise.vocabulary import Optimizer


@cache
def _closed_form(name: str) -> Callable[..., dict[str, np.ndarray]]:
    return closed_forms.EQUILIBRIA[name].numpy()


def equilibrium(
    optimizer: str,
    *,
    lr: Any,
    weight_decay: Any,
    grad_norm: Any = 1.0,
    momentum: Any = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    dim: int | None = None,
) -> dict[str, np.ndarray]:
    """Equilibrium ``norm_sq``, ``effective_lr``, ``angular_update`` (radians per step) and
    ``approach_rate`` of ``optimizer`` with weight decay; arrays broadcast. ``dim`` is required
    by the Adam family. ValueError where theory has no equilibrium, with its reason.

    >>> round(float(equilibrium("sgd", lr=0.1, weight_decay=0.01)["effective_lr"]), 4)
    0.0447
    """
    name = Optimizer.parse(optimizer).value
    if name in closed_forms.NO_EQUILIBRIUM:
        checks.fail("optimizer", optimizer, "an optimizer with an equilibrium; "
                    f"{name!r} has none: {closed_forms.NO_EQUILIBRIUM[name]}")
    checks.one_of("optimizer", name, closed_forms.EQUILIBRIA)
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        checks.fail("betas", betas, "a pair (beta1, beta2)")
    return _closed_form(name)(lr=lr, weight_decay=weight_decay, grad_norm=grad_norm,
                              momentum=momentum, beta1=betas[0], beta2=betas[1], dim=dim)


def long_run_averages(trajectory: Trajectory, burn_in: int) -> dict[str, np.ndarray]:
    """Per-run time averages after step ``burn_in``, in theory's conventions: ``norm_sq`` the
    mean ``||w_k||^2``, ``effective_lr`` the optimizer's effective learning rate at that mean,
    ``angular_update`` ``arccos(mean <w_k, w_{k+1}> / mean ||w_k||^2)``. Shapes
    ``(*shape, runs)`` (sphere engine) or ``shape``; the trajectory must record every step with a
    constant learning rate."""
    spec = trajectory.spec
    if spec.record_every != 1 or not spec.has_static_coefficients:
        checks.fail("trajectory", trajectory, "a trajectory that records every step "
                    "(record_every=1) with a constant learning rate and gradient norm")
    steps = checks.integer("burn_in", burn_in, 0)
    if steps > spec.steps - 2:
        checks.fail("burn_in", burn_in, f"an integer <= steps - 2 = {spec.steps - 2}")
    x = np.concatenate([trajectory.norm_sq[steps:], trajectory.final_norm_sq[None]])  # (n+1, ...)
    # <w_k, w_{k+1}> = cos(theta_k) ||w_k|| ||w_{k+1}||
    dot = np.cos(trajectory.angular_update[steps:]) * np.sqrt(x[:-1] * x[1:])
    mean_x = x[:-1].mean(axis=0)
    lr = spec.lr_at(0)[..., None] if trajectory.has_runs_axis else spec.lr_at(0)
    return {
        "norm_sq": mean_x,
        "effective_lr": effective_lr(spec.optimizer, mean_x, lr),
        "angular_update": np.arccos(np.clip(dot.mean(axis=0) / mean_x, -1.0, 1.0)),
    }
