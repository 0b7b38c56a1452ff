"""Suite ``effective-lr``: where the weight norm of normalized networks comes from, and the
effective learning rate it sets, measured the way theory states it.

Step by step: the norm balance of every optimizer (:mod:`.norm_balance`), SGD's norm from its
gradients alone (:mod:`.driven_sgd`), momentum's and the Adam family's from their updates'
tangential energy and the mean field's parts (:mod:`.update_parts`). At equilibrium, on settled
runs with seeds and intervals: the equilibria (:mod:`.equilibrium`) and their misses split
between the dimension and the gradients (:mod:`.iid_sphere`), that only the product of
learning rate and weight decay matters (:mod:`.product_only`), the scaling law
(:mod:`.scaling`), the approach rate (:mod:`.approach`). Without weight decay, the growth law
(:mod:`.norm_growth`); through step decays (:mod:`.step_decay`) and decaying schedules with and
without the corrected decay (:mod:`.schedules`); then the paper's first
mechanism (:mod:`.mechanism_one`), weight decay as an exponential learning-rate schedule
(:mod:`.exponential_lr`), and Adam's steps across batch sizes (:mod:`.adam_batch_size`). One module per experiment; :mod:`.runs` holds what they share and
:mod:`.settled` the estimators over a settled window.
"""

from __future__ import annotations

from scalewise.validation.effective_lr import (
    adam_batch_size,
    approach,
    driven_sgd,
    equilibrium,
    exponential_lr,
    iid_sphere,
    mechanism_one,
    norm_balance,
    norm_growth,
    product_only,
    scaling,
    schedules,
    step_decay,
    update_parts,
)
from scalewise.validation.report import Report
from scalewise.validation.suite import Settings

EXPERIMENTS = (norm_balance.norm_balance, driven_sgd.driven_sgd, update_parts.update_parts,
               equilibrium.equilibrium, iid_sphere.iid_sphere, product_only.product_only,
               scaling.scaling, approach.approach, norm_growth.norm_growth,
               step_decay.step_decay, schedules.schedules,
               mechanism_one.weight_decay_placement, mechanism_one.norm_grafting,
               mechanism_one.renormalization, exponential_lr.equivalence,
               adam_batch_size.adam_batch_size)
"""The experiments of the report, in its order."""


def build(settings: Settings) -> Report:
    """The effective-LR suite: every experiment of :data:`EXPERIMENTS` into one report."""
    report = Report(
        suite="effective-lr",
        title="The effective learning rate of normalized networks: theory vs measurement",
        intro=(
            "Normalized networks (the digits MLP with batch, layer and weight norm and a "
            "batch-norm CNN) trained with SGD, momentum SGD, Adam with L2, AdamW, RMSprop, "
            "Adagrad and K-FAC, with per-unit sufficient statistics of every step. First where "
            "the weight norm comes from: the exact norm balance of every optimizer, SGD's norm "
            "from its gradient norms alone (001 Eq. 23), and the mean-field models' parts for "
            "momentum and the Adam family. Then, on runs that settled, with seeds and 95% "
            "intervals: theory's equilibria with the estimators they are about (ratios of "
            "sums, 001 Eq. 24-25), the product rule, the scaling law and the approach rate; "
            "the growth without weight decay (001 Sec. 4.3) and the response to step decays "
            "(004 Fig. 3), norms under cosine and warmup-stable-decay schedules with and without the "
            "corrected decay; then weight decay's placement, norm grafting and renormalization "
            "(004 Sec. 4.1), weight decay as an exponential learning-rate schedule, and Adam's "
            "steps across batch sizes (001 Eq. 4)."),
    )
    for experiment in EXPERIMENTS:
        experiment(report, settings)
    report.settings = settings.describe()
    return report
