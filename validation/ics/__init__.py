"""Suite ``ics``: internal covariate shift, the outlier eigenvalue, the knock-out experiment,
quasi-diagonal preconditioning and AdaGraft (001 Sec. 3-4; 000 slides 'Normalization',
'AdaGraft'), one module per experiment, in the order of :data:`EXPERIMENTS`:

- :mod:`.outlier_eigenvalues`: the outlier of K-FAC's factor ``A`` and of the exact
  Gauss-Newton block of a tiny network against :mod:`theory.kronecker`, and its disappearance
  with batch centering, BN in the next layer and the quasi-diagonal reparameterization (001
  Sec. 3, 3.1, 4.2); the factor ``A`` of a real layer;
- :mod:`.dead_units`: dead ReLU units after training with batch norm and without, over
  learning rates (001 Sec. 4.1);
- :mod:`.stochastic_regularization`: batch norm's and layer norm's generalization gaps at a
  small and a large batch (001 Sec. 4.4, 6);
- :mod:`.knock_out`: a random per-batch affine transform after BN vs plain BN vs none, and BN
  before vs after the ReLU (001 Sec. 4.2);
- :mod:`.quasi_diagonal`: :class:`models.quasi_diagonal.QuasiDiagonal` vs SGD vs a diagonal
  preconditioner on shifted inputs (001 Eqs. 9-10);
- :mod:`.grafting`: AdaGraft (000 Algorithm 2) both ways vs SGD and Adam.

Every trained network is a run of :func:`models.train` (:mod:`.runs`); the measurements of
curvature are in :mod:`.curvature` and :mod:`.covariate_shift`.
"""

from __future__ import annotations

from scalewise.validation.ics import (
    dead_units,
    grafting,
    knock_out,
    outlier_eigenvalues,
    quasi_diagonal,
    stochastic_regularization,
)
from scalewise.validation.report import Report
from scalewise.validation.suite import Settings

EXPERIMENTS = (outlier_eigenvalues.outlier_eigenvalues, dead_units.dead_units,
               stochastic_regularization.stochastic_regularization, knock_out.knock_out,
               quasi_diagonal.quasi_diagonal, grafting.grafting)
"""The experiments of the report, in its order."""


def build(settings: Settings) -> Report:
    """The ``ics`` suite: every experiment of :data:`EXPERIMENTS` into one report."""
    report = Report(
        suite="ics",
        title="Internal covariate shift, preconditioning and grafting",
        intro="Predictions of 001 Sec. 3-4 and the 000 slides (the ICS outlier eigenvalue, its "
        "removal by centering in the next layer and by the quasi-diagonal reparameterization, "
        "the knock-out experiment, AdaGraft) set beside measurements on small float64 networks. "
        "Exact predictions (invariances, step norms) carry bounds at rounding level; "
        "approximate ones (K-FAC's outlier, the training-speed claims) are recorded with the "
        "size of their miss and bounded only where they hold. Every network is trained by "
        "`models.train` into the run store, on the settings' device: finished runs are reused "
        "and interrupted ones resumed.")
    for experiment in EXPERIMENTS:
        experiment(report, settings)
    report.settings = settings.describe()
    return report
