"""sim.equilibrium (theory's closed forms) against the sphere engine's long-run averages.

Each case starts every run at theory's equilibrium norm and lets it evolve for ``burn_in`` steps,
several relaxation times (``1 / (4 lr wd)`` steps for SGD, ``(1 - momentum) / (4 lr wd)`` with
momentum, ``1 / (2 lr wd)`` for AdamW), before averaging; a wrong closed form would have drifted
to the true value by then. Each run's time average is one independent sample; the bound is five
standard errors of their mean over ``runs`` runs (plus 1e-9 relative for rounding, which is all
that is left for SGD, whose norm is deterministic).

The adaptive forms are limits (``beta2 -> 1`` with ``1 / (1 - beta2) << 1 / (lr wd)``, ``eps ->
0``; Adam with L2 and RMSprop also leading order in ``(lr^2 dim wd / (4 g))^(2/3)``). The cases
pick ``lr * wd <= 5e-4`` and that small parameter ``<= 4e-4``, so the next-order terms theory
states are ``<= 2e-4`` relative, below the bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from scalewise import sim
from scalewise.sim.equilibria import equilibrium, long_run_averages
from scalewise.theory.equilibria import EQUILIBRIA

QUANTITIES = ("norm_sq", "effective_lr", "angular_update")


@dataclass(frozen=True)
class Case:
    optimizer: str
    lr: float
    weight_decay: float
    steps: int
    burn_in: int
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    rmsprop_alpha: float = 0.99
    dim: int = 32
    runs: int = 64
    seed: int = 0


CASES = {
    "sgd": Case("sgd", lr=0.1, weight_decay=0.01, steps=3000, burn_in=1000, runs=16),
    "sgdm": Case("sgdm", lr=0.01, weight_decay=0.01, momentum=0.9, steps=6000, burn_in=2000),
    "adamw": Case("adamw", lr=1e-3, weight_decay=0.25, steps=12000, burn_in=4000),
    "adam": Case("adam", lr=1e-3, weight_decay=0.5, steps=10000, burn_in=4000),
    # RMSprop has no bias correction: its zero initial v makes the first steps large, and the
    # norm needs ~6000 steps to come back (rmsprop_alpha = 0.999 keeps 1 / (1 - beta2) large)
    "rmsprop": Case("rmsprop", lr=1e-3, weight_decay=0.5, rmsprop_alpha=0.999, steps=16000,
                    burn_in=8000),
    "nesterov": Case("nesterov", lr=0.01, weight_decay=0.01, momentum=0.9, steps=6000,
                     burn_in=2000),
    "muon": Case("muon", lr=0.01, weight_decay=0.1, momentum=0.9, steps=6000, burn_in=2000),
    "lion": Case("lion", lr=1e-3, weight_decay=1.0, betas=(0.9, 0.99), steps=6000,
                 burn_in=2000),
}


def test_every_closed_form_has_a_case() -> None:
    assert set(EQUILIBRIA) <= set(CASES)


@pytest.fixture(scope="module")
def measured() -> dict[str, tuple[dict, dict]]:
    """Theory's prediction and the per-run long-run averages, per optimizer (simulated once)."""
    out = {}
    for name, case in CASES.items():
        predicted = equilibrium(name, lr=case.lr, weight_decay=case.weight_decay,
                                momentum=case.momentum, betas=case.betas, dim=case.dim)
        t = sim.simulate(name, lr=case.lr, weight_decay=case.weight_decay,
                         momentum=case.momentum, betas=case.betas,
                         rmsprop_alpha=case.rmsprop_alpha, steps=case.steps, engine="sphere",
                         dim=case.dim, runs=case.runs, seed=case.seed,
                         init_norm=np.sqrt(predicted["norm_sq"]))
        out[name] = predicted, long_run_averages(t, case.burn_in)
    return out


_LEADING_ORDER_MISS = (
    "theory.adam_l2.ADAM_NORM_SQ (Adam with L2, RMSprop) is {miss} relative off the "
    "sphere at dim 32 (many SE; the gap shrinks roughly as 1/dim; it matches dim -> dim - 1, "
    "i.e. the d - 1 tangent directions of the noise, to about 0.1%)"
)
KNOWN_MISSES = {
    ("adam", "norm_sq"): _LEADING_ORDER_MISS.format(miss="-1.1%"),
    ("adam", "effective_lr"): _LEADING_ORDER_MISS.format(miss="-1.1% (effective LR +0.58%)"),
    ("rmsprop", "norm_sq"): _LEADING_ORDER_MISS.format(miss="-0.99%"),
    ("rmsprop", "effective_lr"): _LEADING_ORDER_MISS.format(miss="-0.99% (effective LR +0.50%)"),
    ("rmsprop", "angular_update"): "RMSprop's angular update is +0.53% off theory's at dim 32 "
    "(51 SE), with the norm above",
    ("muon", "norm_sq"): "theory.lion_muon_nesterov takes ||s|| at its stationary value; at dim "
    "32 its fluctuations leave the sphere's norm +0.54% above (25 SE; at dim 64 the gap is "
    "below 0.5%, test_sim_beyond)",
    ("muon", "effective_lr"): "the norm's +0.54% at dim 32 (effective LR -0.27%, 25 SE)",
    ("lion", "norm_sq"): "Bussgang's gain needs Gaussian coordinates (d large): at dim 32 the "
    "sphere's norm is +1.5% above theory's (5.1 SE; the effective LR's -0.70% stays just "
    "inside 5 SE; at dim 256 within 0.4%, test_sim_beyond)",
}
"""Disagreements found by this test, kept visible: each is an expected failure that must keep
failing (strict), so a corrected closed form turns it into an error here until it is removed."""


def _cases():
    for name in CASES:
        for quantity in QUANTITIES:
            reason = KNOWN_MISSES.get((name, quantity))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(name, quantity, marks=marks, id=f"{name}-{quantity}")


@pytest.mark.parametrize("name,quantity", list(_cases()))
def test_sphere_engine_agrees_with_theory(name: str, quantity: str, measured) -> None:
    predicted, runs = measured[name]
    samples = runs[quantity]  # (runs,)
    mean = samples.mean()
    standard_error = samples.std(ddof=1) / np.sqrt(samples.size)
    expected = float(predicted[quantity])
    bound = 5 * standard_error + 1e-9 * abs(expected)
    assert abs(mean - expected) <= bound, (
        f"{name} {quantity}: sphere {mean:.6g} +- {standard_error:.2g} (SE over {samples.size} "
        f"runs), theory {expected:.6g}: off by {mean / expected - 1:+.2e} relative, "
        f"{(mean - expected) / standard_error:+.1f} SE"
    )


def test_no_equilibrium_is_an_error_with_its_reason() -> None:
    with pytest.raises(ValueError, match="adagrad"):
        sim.equilibrium("adagrad", lr=0.1, weight_decay=0.01)
    with pytest.raises(ValueError, match="optimizer = 'lamb' is invalid; allowed: one of sgd"):
        sim.equilibrium("lamb", lr=0.1, weight_decay=0.01)


def test_long_run_averages_need_every_step() -> None:
    t = sim.simulate("sgd", lr=0.1, weight_decay=0.01, steps=100, record_every=2)
    with pytest.raises(ValueError, match="record_every=1"):
        long_run_averages(t, 10)


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_adaptive_l2_miss_is_a_finite_dimension_effect(name: str) -> None:
    """The known misses above shrink at least as fast as ``1 / dim``: theory's Adam-L2 and
    RMSprop forms are the large-``dim`` limit of the sphere engine (quadrupling ``dim`` divides
    the norm gap by more than 3, and leaves it under 0.5%)."""
    case = CASES[name]

    def norm_gap(dim: int) -> float:
        predicted = equilibrium(name, lr=case.lr, weight_decay=case.weight_decay, dim=dim)
        t = sim.simulate(name, lr=case.lr, weight_decay=case.weight_decay,
                         rmsprop_alpha=case.rmsprop_alpha, steps=case.steps, engine="sphere",
                         dim=dim, runs=32, seed=case.seed,
                         init_norm=np.sqrt(predicted["norm_sq"]))
        measured = long_run_averages(t, case.burn_in)["norm_sq"].mean()
        return measured / float(predicted["norm_sq"]) - 1

    small, large = norm_gap(32), norm_gap(128)
    assert abs(large) < abs(small) / 3 and abs(large) < 5e-3, (small, large)
