"""Suite ``kfac``: weight decay's mechanisms II and III (004 Sec. 4.2-4.3; 001 Sec. 5.2-5.3)
measured on small networks trained on scikit-learn's digits, one module per experiment, in the
order of :data:`EXPERIMENTS`:

- :mod:`.gauss_newton_norm` (004 Lemma 2, Theorem 1, Fig. 5): a family of MLPs without
  normalization (depths x widths) trained with SGD, K-FAC-G and K-FAC-F, each with decoupled
  weight decay, L2 and neither; the K-FAC Gauss-Newton norm against theory's
  ``(L+1) ||J||_F^2`` (exact for bias-free linear networks with whitened inputs, checked at
  initialization as the control, :mod:`.gauss_newton`).
- :mod:`.jacobian_norm_table` (004 Table 2): the final ``||J||_F^2`` of the same runs.
- :mod:`.tuned_decay` (004 Table 2): the same at lambda tuned per optimizer on held-out loss,
  SGD against K-FAC-G, several seeds; the paper's order as a one-sided bound.
- :mod:`.classification` (004 Fig. 1, Table 1, Fig. 8; 000 slides 'KFAC with Weight Decay'):
  the digits CNN's test accuracy with SGD, Adam, K-FAC-G and K-FAC-F, each with decoupled decay,
  L2 and neither, with batch norm and (K-FAC) without; the paper's claims as one-sided bounds on
  paired differences over seeds.
- :mod:`.effective_damping` (004 Eq. 13-14; 001 Sec. 5.2): batch-normalized MLPs with K-FAC;
  ``eta ||w||^2`` measured against the norms predicted by sim's recurrence driven by the
  measured K-FAC steps.
- :mod:`.normalized_update` (004 Eq. 14): one real K-FAC step on a batch-normalized layer
  against theory's :func:`theory.kfac.normalized_kfac_step`, float64.
- :mod:`.curvature_traces` (004 Fig. 7): Fisher and Gauss-Newton traces of the normalized
  layers over training.
- :mod:`.rescaling_immunity` (001 Sec. 5.2; 003 slides, invariance): one BN layer rescaled by
  ``c``; undamped K-FAC follows the same trajectory, damped K-FAC and SGD do not.
- :mod:`.affine_invariance` (001 Sec. 3.2, Fig. 3; 003 slides, invariance): the input of a
  hidden layer of the batch-normalized MLP mapped by a generic linear ``T a``; likewise.

:mod:`.runs` holds what they share: the optimizers, the family and the BN runs.
"""

from __future__ import annotations

import json

from scalewise import models
from scalewise.validation.kfac import (
    affine_invariance,
    classification,
    curvature_traces,
    effective_damping,
    gauss_newton_norm,
    jacobian_norm_table,
    normalized_update,
    rescaling_immunity,
    runs,
    tuned_decay,
)
from scalewise.validation.report import Report
from scalewise.validation.suite import Settings

SUITE = "kfac"
EXPERIMENTS = (gauss_newton_norm.gauss_newton_norm, jacobian_norm_table.jacobian_norm_table,
               tuned_decay.tuned_decay, classification.classification,
               effective_damping.effective_damping, normalized_update.normalized_update,
               curvature_traces.curvature_traces, rescaling_immunity.rescaling_immunity,
               affine_invariance.affine_invariance)
"""The experiments of the report, in its order."""


def build(settings: Settings) -> Report:
    """The K-FAC suite: weight decay's mechanisms II and III (004 Sec. 4.2-4.3)."""
    report = Report(SUITE, "K-FAC and weight decay: Jacobian regularization and effective "
                    "damping", intro=(
        "Weight decay's second and third mechanisms (004 Sec. 4.2-4.3; 001 Sec. 5.2-5.3) "
        "measured on small networks trained on scikit-learn's digits: without normalization, "
        "weight decay under K-FAC penalizes the K-FAC Gauss-Newton norm, which theory ties to "
        "the Jacobian norm (004 Lemma 2, Theorem 1); with batch normalization K-FAC is immune "
        "to the rescaling of the weights except through its damping, whose effective value "
        "eta ||w||^2 weight decay keeps small (004 Eq. 13-14). Predictions come from "
        "`theory.kfac` and `sim`; each section says what is predicted from what and by how "
        "much it misses."))
    for experiment in EXPERIMENTS:
        experiment(report, settings)
    report.settings = settings.describe()
    report.runs = run_configs(settings)
    return report


def run_configs(settings: Settings) -> dict[str, object]:
    """Run id -> config of every run the suite trains (the diverged ones included), as
    :func:`validation.suite.train_runs` stores them."""
    configs = [models.override(c, {"device": settings.device})
               for _, c in runs.family_configs(settings) + runs.bn_configs(settings)]
    return {c.run_id(): json.loads(c.to_json()) for c in configs}
