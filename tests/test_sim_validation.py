"""Bad input to the simulators raises ValueError naming the parameter and the allowed range."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from scalewise import sim


@dataclass(frozen=True)
class Bad:
    name: str
    kwargs: dict
    match: str
    optimizer: str = "sgd"
    base: dict = field(default_factory=lambda: dict(lr=0.1, steps=10))


CASES = [
    Bad("lr-zero", dict(lr=0.0), "lr = .* allowed: a finite number > 0"),
    Bad("lr-negative-in-grid", dict(lr=np.array([0.1, -1.0])), "lr = .* allowed: a finite number > 0"),
    Bad("lr-nan", dict(lr=np.nan), "lr = nan is invalid; allowed: finite numbers"),
    Bad("lr-string", dict(lr="fast"), "lr = 'fast' is invalid; allowed: a finite real number"),
    Bad("wd-negative", dict(weight_decay=-1e-4), "weight_decay = -0.0001 is invalid; allowed: a finite number >= 0"),
    Bad("wd-inf", dict(weight_decay=np.inf), "weight_decay = inf is invalid; allowed: finite numbers"),
    Bad("lr-times-wd-sgd", dict(lr=2.0, weight_decay=0.5), "weight_decay = .* allowed: lr \\* weight_decay < 1"),
    Bad("lr-times-wd-adamw", dict(lr=2.0, weight_decay=0.5, engine="sphere", dim=4),
        "weight_decay = .* allowed: lr \\* weight_decay < 1", optimizer="adamw"),
    Bad("lr-times-wd-scheduled", dict(lr=0.5, weight_decay=1.0, schedule=sim.Exponential(2.0)),
        "weight_decay = .* allowed: lr \\* weight_decay < 1"),
    Bad("steps-zero", dict(steps=0), "steps = .* allowed: an integer >= 1"),
    Bad("steps-float", dict(steps=10.0), "steps = .* allowed: an integer >= 1"),
    Bad("dim-one", dict(engine="sphere", dim=1), "dim = 1 is invalid; allowed: an integer >= 2"),
    Bad("dim-missing", dict(engine="sphere"), "dim = None is invalid; allowed: an integer >= 2: the sphere engine"),
    Bad("runs-zero", dict(engine="sphere", dim=3, runs=0), "runs = 0 is invalid; allowed: an integer >= 1"),
    Bad("unknown-optimizer", dict(), "optimizer = 'lbfgs' is invalid; allowed: one of sgd, sgdm", optimizer="lbfgs"),
    Bad("unknown-engine", dict(engine="gpu"), "engine = 'gpu' is invalid; allowed: one of auto, recurrence, sphere"),
    Bad("recurrence-for-adam", dict(engine="recurrence"), "the recurrence is exact for optimizer 'sgd' only",
        optimizer="adam"),
    Bad("momentum-for-sgd", dict(momentum=0.9), "momentum = 0.9 is invalid; allowed: 0 for 'sgd' \\(momentum is used by 'sgdm', 'nesterov', 'muon' only\\)"),
    Bad("momentum-one", dict(momentum=1.0, engine="sphere", dim=3), "momentum = 1.0 is invalid; allowed: a finite number in \\[0, 1\\)",
        optimizer="sgdm"),
    Bad("beta2-one", dict(betas=(0.9, 1.0), engine="sphere", dim=3), "betas\\[1\\] = 1.0 is invalid; allowed: a finite number in \\[0, 1\\)",
        optimizer="adam"),
    Bad("betas-not-a-pair", dict(betas=0.9, engine="sphere", dim=3), "betas = 0.9 is invalid; allowed: a pair \\(beta1, beta2\\)",
        optimizer="adam"),
    Bad("eps-zero", dict(eps=0.0), "eps = 0.0 is invalid; allowed: a finite number > 0"),
    Bad("grid-mismatch", dict(lr=np.ones(3), weight_decay=np.full(4, 0.01)), "allowed: arrays whose shapes broadcast together"),
    Bad("grad-norm-zero", dict(grad_norm=0.0), "grad_norm = 0.0 is invalid; allowed: a finite number > 0"),
    Bad("init-norm-negative", dict(init_norm=-1.0), "init_norm = -1.0 is invalid; allowed: a finite number > 0"),
    Bad("record-every-zero", dict(record_every=0), "record_every = 0 is invalid; allowed: an integer >= 1"),
    Bad("schedule-wrong-length", dict(schedule=np.ones(5)), "schedule = .* allowed: an array of shape \\(steps,\\)"),
    Bad("schedule-nonpositive", dict(schedule=np.zeros(10)), "schedule = .* allowed: a finite number > 0"),
    Bad("schedule-object", dict(schedule="cosine"), "schedule = 'cosine' is invalid; allowed: None, an array"),
    Bad("warmup-too-long", dict(schedule=sim.WarmupCosine(10)), "warmup_steps = 10 is invalid; allowed: an integer < steps"),
    Bad("loss-not-callable", dict(engine="sphere", dim=3, loss_gradient=3),
        "loss_gradient = 3 is invalid; allowed: a callable"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_simulate_rejects(case: Bad) -> None:
    with pytest.raises(ValueError, match=case.match):
        sim.simulate(case.optimizer, **{**case.base, **case.kwargs})


SCHEDULE_CASES = [
    ("milestones-unsorted", lambda: sim.StepDecay((5, 3)), "strictly increasing"),
    ("milestones-zero", lambda: sim.StepDecay((0, 3)), "milestones = 0 is invalid; allowed: an integer >= 1"),
    ("gamma-negative", lambda: sim.Exponential(-0.5), "gamma = -0.5 is invalid; allowed: a finite number > 0"),
    ("min-factor-one", lambda: sim.WarmupCosine(5, min_factor=1.0), "min_factor = 1.0 is invalid; allowed: a finite number in \\[0, 1\\)"),
]


@pytest.mark.parametrize("build,match", [c[1:] for c in SCHEDULE_CASES],
                         ids=[c[0] for c in SCHEDULE_CASES])
def test_schedules_reject(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


DRIVE_CASES = [
    ("norms-scalar", dict(grad_norms=1.0), "grad_norms = 1.0 is invalid; allowed: an array of shape \\(steps, \\*shape\\)"),
    ("norms-negative", dict(grad_norms=np.array([1.0, -1.0])),
     "grad_norms = .* allowed: a finite number >= 0"),
    ("layers-mismatch", dict(grad_norms=np.ones((4, 3)), lr=np.ones(2)), "allowed: arrays whose shapes broadcast together"),
    ("adam-without-dim", dict(grad_norms=np.ones(4), optimizer="adam"), "dim"),
]


@pytest.mark.parametrize("kwargs,match", [c[1:] for c in DRIVE_CASES],
                         ids=[c[0] for c in DRIVE_CASES])
def test_drive_rejects(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sim.drive(**{"lr": 0.1, **kwargs})
