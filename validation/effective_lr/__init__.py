"""Suite ``effective-lr``: the effective learning rate of normalized networks, measured per layer,
against the norm recurrence (001 Eq. 19, 23), its equilibria (001 Eq. 24-25; theory.optimizers
for momentum SGD, Adam and AdamW), the square-root growth law without weight decay (001 Sec. 4.3)
and the response to step decays (004 Sec. 4.1, Fig. 3); then the paper's first mechanism
(:mod:`.mechanism_one`) and weight decay as an exponential learning-rate schedule
(:mod:`.exponential_lr`).

One module per experiment; :mod:`.runs` holds the runs the first four share.
"""

from __future__ import annotations

from scalewise.validation.effective_lr import (
    driven,
    equilibrium,
    exponential_lr,
    mechanism_one,
    norm_growth,
    step_decay,
)
from scalewise.validation.report import Report
from scalewise.validation.suite import Settings

EXPERIMENTS = (driven.driven, equilibrium.equilibrium, norm_growth.norm_growth,
               step_decay.step_decay, mechanism_one.weight_decay_placement,
               mechanism_one.norm_grafting, mechanism_one.renormalization,
               exponential_lr.equivalence)
"""The experiments of the report, in its order."""


def build(settings: Settings) -> Report:
    """The effective-LR suite: every experiment of :data:`EXPERIMENTS` into one report."""
    report = Report(
        suite="effective-lr",
        title="The effective learning rate of normalized networks: theory vs measurement",
        intro=(
            "Normalized networks (digits MLP and CNN with batch norm; a CIFAR-10 ResNet where "
            "the data are given) trained with SGD, momentum SGD, Adam (L2) and AdamW, with and "
            "without weight decay, probed at every step. Per scale-invariant layer the measured "
            "weight norm, effective learning rate and angular update are set beside the norm "
            "recurrence driven by the measured gradient norms (001 Eq. 23), theory's equilibria "
            "(001 Eq. 24-25, theory.optimizers), the square-root growth law (001 Sec. 4.3) and "
            "the response to step decays (004 Fig. 3); then weight decay's placement, norm "
            "grafting and renormalization (004 Sec. 4.1) and weight decay as an exponential "
            "learning-rate schedule. The SGD prediction is exact per unit (001 Eq. 23); the "
            "others are a mean-field model."),
    )
    for experiment in EXPERIMENTS:
        experiment(report, settings)
    report.settings = settings.describe()
    return report
