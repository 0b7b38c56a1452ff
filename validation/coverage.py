"""What the project covers of the seeds: ``docs/coverage.md``, one row per place of a seed.

The rows (:data:`ITEMS`) are every numbered equation and every figure of the notes (001), every
figure, table, lemma and theorem of the paper (004), and the claims of the slides (000, 002, 003),
each under its slide title as the slide spells it. Each row has four columns:

- **identities**: parsed from every identity's ``source`` (:func:`cited_places`), never listed
  here, so an identity citing "001 Eq. (1)" lands in that row by itself; a row may add identities
  that prove it without citing it in that form (``proved_by``);
- **simulation**: the functions of ``sim/`` (or ``figures/``, which draws the notes' figures from
  ``sim/``) that compute it, curated here (``simulated``);
- **measurement**: selections of the records of the committed reference reports
  (``validation/reference/<suite>/report.json``), curated here (``measured``); the agreement shown
  is read from those files, with the bounds the suite declared (``index.json``);
- **status**: what the three columns say (proved, simulated, measured), or "not covered".

This module is the one place the curated mappings live, and it renders the page
(:func:`coverage_markdown`, written by ``scalewise docs``). The seeds are not part of the
repository, so the page is rendered from the rows alone; the tests parse the seeds
(:func:`seed_places`, :func:`slide_title_found`) and fail when a place has no row or a row names
a place, identity, function or record that does not exist (:func:`mapping_errors`).

Longer than most modules because :data:`ITEMS` is a table of some eighty rows of data.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalewise.theory.catalogue import SEEDS
from scalewise.theory.identity import IDENTITIES
from scalewise.validation import SUITES
from scalewise.validation.markdown import counted

KINDS = ("Eq.", "Fig.", "Table", "Lemma", "Theorem", "slide")
"""The kinds of place a row stands for; a slide is named by its title."""


@dataclass(frozen=True)
class Measured:
    """The records of suite ``suite``'s reference report with this ``experiment``, this
    ``quantity`` (with or without its ``@step``) and, unless None, this ``optimizer`` label."""

    suite: str
    experiment: str
    quantity: str
    optimizer: str | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        return (record["experiment"] == self.experiment
                and record["quantity"].split("@", 1)[0] == self.quantity
                and self.optimizer in (None, record["optimizer"]))

    def covers_bound(self, bound: dict[str, Any]) -> bool:
        """Whether a bound the suite declared (an ``index.json`` agreement entry) is about
        these records."""
        same = bound["experiment"] == self.experiment and bound["quantity"] == self.quantity
        return same and (self.optimizer is None or bound["optimizer"] in (None, self.optimizer))


@dataclass(frozen=True)
class Item:
    """One place of a seed: ``seed`` (file prefix), ``kind`` (:data:`KINDS`), ``label`` (its
    number, or a slide's title verbatim), what it ``states``, and the curated columns: the
    ``simulated`` functions (dotted paths under ``scalewise``), the ``measured`` records,
    identities that prove it without citing it by this place (``proved_by``), and a ``note``."""

    seed: str
    kind: str
    label: str
    states: str
    simulated: tuple[str, ...] = ()
    measured: tuple[Measured, ...] = ()
    proved_by: tuple[str, ...] = ()
    note: str = ""

    @property
    def place(self) -> str:
        """``001 Eq. (23)``, ``004 Fig. 5``, ``003 'Preconditioning'``."""
        label = {"Eq.": f"({self.label})", "slide": f"'{self.label}'"}.get(self.kind, self.label)
        prefix = "" if self.kind == "slide" else f"{self.kind} "
        return f"{self.seed} {prefix}{label}"


def _eq(number: int, states: str, **columns: Any) -> Item:
    return Item("001", "Eq.", str(number), states, **columns)


def _fig(seed: str, number: int, states: str, **columns: Any) -> Item:
    return Item(seed, "Fig.", str(number), states, **columns)


def _paper(kind: str, number: int, states: str, **columns: Any) -> Item:
    return Item("004", kind, str(number), states, **columns)


def _slide(seed: str, title: str, states: str, **columns: Any) -> Item:
    return Item(seed, "slide", title, states, **columns)


EFFECTIVE_LR, KFAC, ICS = "effective-lr", "kfac", "ics"

ITEMS: tuple[Item, ...] = (
    _eq(1, r"the true Fisher $F = E[\mathcal{D}w\,\mathcal{D}w^\top]$, targets sampled from "
        "the model"),
    _eq(2, r"the empirical Fisher is the gradients' covariance plus $\nabla J\nabla J^\top$"),
    _eq(3, "the update preconditioned by $F_{emp}^{-1}$",
        simulated=("sim.preconditioned_paths.preconditioned_paths",)),
    _eq(4, r"the batch empirical Fisher is $\mathrm{Cov}/\vert B\vert + \nabla J\nabla "
        r"J^\top$",
        measured=(Measured(EFFECTIVE_LR, "adam_batch_size", "second_moment"),
                  Measured(EFFECTIVE_LR, "adam_batch_size", "step_norm"))),
    _eq(5, r"the K-FAC block $\hat G_{\ell\ell} = A_{\ell-1}\otimes S_\ell$"),
    _eq(6, "a layer of an MLP (a definition)",
        proved_by=("gradient_structure_relu", "kfac_block_exact_linear"),
        note="A definition: the identities listed are stated for it and hold exactly."),
    _eq(7, r"activations standardized by $\Sigma^{-1/2}(a - m)$"),
    _eq(8, "the reparameterized layer computes the same preactivations",
        measured=(Measured(ICS, "quasi-diagonal", "loss", "quasi-diagonal"),)),
    _eq(9, r"$\tilde W = W\Sigma^{1/2}$, $\tilde b = b + Wm$",
        measured=(Measured(ICS, "quasi-diagonal", "loss", "quasi-diagonal"),)),
    _eq(10, r"$R^{-1}$ and the quasi-diagonal $[RR^\top]^{-1}$",
        measured=(Measured(ICS, "outlier", "gn_top_eigenvalue", "quasi-diagonal"),)),
    _eq(11, r"batch normalization $(X - 1\mu^\top)\oslash 1\sigma^\top$"),
    _eq(12, r"backprop along BN's direct path divides by $\sigma$"),
    _eq(13, r"batch centering $R - 1\mu(R)^\top$ (a definition)",
        proved_by=("bc_backprop_direct_minus_statistics_path", "bc_backprop_centers_gradients"),
        note="A definition: the identities listed are stated for it and hold exactly."),
    _eq(14, "backprop through batch centering: direct path minus statistics path"),
    _eq(15, "homogeneity of degree $k$ (a definition)",
        proved_by=("euler_homogeneous_function", "gradient_homogeneous_degree_k_minus_1"),
        note="A definition: the identities listed are stated for it and hold exactly."),
    _eq(16, r"Euler's theorem $x^\top\nabla g = k g$"),
    _eq(17, "the gradient is homogeneous of degree $k-1$"),
    _eq(18, r"$\nabla J(\gamma w) = \nabla J(w)/\gamma$ for a scale-invariant cost",
        simulated=("sim.losses.RayleighQuotient",)),
    _eq(19, "without weight decay the squared norm grows by the squared step (Pythagoras)",
        simulated=("sim.dynamics.simulate", "sim.dynamics.drive"),
        measured=(Measured(EFFECTIVE_LR, "driven_sgd", "norm_sq", "sgd-nowd"),)),
    _eq(20, r"weight normalization $w = g\,v/\Vert v\Vert$"),
    _eq(21, "layer normalization"),
    _eq(22, r"the weight decay step $w \leftarrow (1-\alpha\lambda)w$",
        measured=(Measured(EFFECTIVE_LR, "norm_balance", "norm_sq"),)),
    _eq(23, "the squared norm under SGD with weight decay",
        simulated=("sim.dynamics.simulate", "sim.dynamics.drive",
                   "sim.norm_schedules.norm_recurrence"),
        measured=(Measured(EFFECTIVE_LR, "driven_sgd", "norm_sq", "sgd"),
                  Measured(EFFECTIVE_LR, "step_decay", "effective_lr", "sgd"))),
    _eq(24, r"the equilibrium norm $\Vert w_\infty\Vert^2 \approx \sqrt{\alpha/2\lambda}$",
        simulated=("sim.equilibria.equilibrium", "sim.dynamics.simulate"),
        measured=(Measured(EFFECTIVE_LR, "equilibrium", "norm_sq", "sgd"),)),
    _eq(25, r"the equilibrium effective LR $\hat\alpha_\infty \approx "
        r"\sqrt{2\alpha\lambda}$",
        simulated=("sim.equilibria.equilibrium", "sim.dynamics.simulate"),
        measured=(Measured(EFFECTIVE_LR, "equilibrium", "effective_lr", "sgd"),
                  Measured(EFFECTIVE_LR, "equilibrium", "angular_update", "sgd"))),
    _eq(26, r"the damped K-FAC step $(\hat G + \eta I)^{-1}\nabla J$",
        simulated=("sim.recurrence.effective_damping",),
        measured=(Measured(KFAC, "effective_damping", "effective_damping"),)),
    _eq(27, r"weight decay with a preconditioner $C$ is a $\Vert w\Vert_C^2$ penalty"),
    _fig("001", 1, "the matrices of the course and how they relate (a diagram)",
         proved_by=("softmax_fisher_is_gauss_newton", "empirical_fisher_decomposition",
                    "kfac_block_kronecker_order"),
         note="The relations the notes' text states between the matrices the diagram "
              "draws: the Fisher is the Gauss-Newton matrix (Eq. 1), the empirical Fisher "
              "is the gradients' covariance plus the mean's outer product (Eq. 2), K-FAC's "
              "block is a Kronecker product (Eq. 5)."),
    _fig("001", 2, "optimization paths of GD, natural GD and $F_{emp}$-preconditioned GD on "
         "least squares (Kunstner et al. 2019)",
         simulated=("sim.preconditioned_paths.preconditioned_paths",
                    "figures.notes.empirical_fisher_paths")),
    _fig("001", 3, "undamped K-FAC is invariant to affine reparameterizations of the "
         "activations; SGD is not",
         proved_by=("kfac_statistics_affine_reparameterization",
                    "kfac_undamped_affine_invariant"),
         measured=(Measured(KFAC, "affine_invariance", "loss"),)),
    _fig("001", 4, "BN's computation graph: a direct path and a statistics path"),
    _fig("001", 5, "the gradient of a scale-invariant cost is tangent to the sphere and scales "
         r"as $1/\Vert w\Vert$, so the norm grows",
         proved_by=("scale_invariant_gradient_orthogonal", "norm_growth_pythagoras")),
    _fig("001", 6, "without weight decay the norm grows and the effective LRs of all "
         r"$\alpha$ approach one trend",
         simulated=("figures.notes.norm_growth", "sim.dynamics.simulate"),
         measured=(Measured(EFFECTIVE_LR, "norm_growth", "growth"),
                   Measured(EFFECTIVE_LR, "norm_growth", "late_effective_lr_spread"))),
    _fig("001", 7, r"with weight decay the effective LR converges to $\hat\alpha_\infty$ "
         r"(Eq. 25) whatever $\alpha$",
         proved_by=("wd_effective_lr",),
         simulated=("figures.notes.wd_equilibrium", "sim.dynamics.simulate"),
         measured=(Measured(EFFECTIVE_LR, "equilibrium", "effective_lr", "sgd"),)),
    _fig("004", 1, "test accuracy of SGD, Adam, K-FAC-F and K-FAC-G with weight decay, L2 or "
         "neither (CIFAR)",
         measured=(Measured(KFAC, "classification", "wd_gain"),
                   Measured(KFAC, "classification", "wd_over_l2")),
         note="On the digits CNN (not CIFAR), 5 seeds; the claims as one-sided bounds on paired "
              "differences of test accuracy."),
    _fig("004", 2, "weight decay on the normalized (conv) layers gives the gain; on the top "
         "layer it does not matter (SGD, Adam)",
         measured=(Measured(EFFECTIVE_LR, "wd_placement", "effective_lr", "sgd:wd-output"),
                   Measured(EFFECTIVE_LR, "wd_placement", "test_accuracy"))),
    _fig("004", 3, "the effective LR of the first layer through step decays, with and "
         "without weight decay",
         simulated=("figures.notes.step_decay_response",),
         measured=(Measured(EFFECTIVE_LR, "step_decay", "effective_lr"),)),
    _fig("004", 4, "norm grafting (rescaling to the weight-decay run's norms) closes most of "
         "the gap",
         measured=(Measured(EFFECTIVE_LR, "norm_grafting", "effective_lr"),
                   Measured(EFFECTIVE_LR, "norm_grafting", "test_accuracy"))),
    _fig("004", 5, "the K-FAC Gauss-Newton norm tracks the Jacobian norm of trained networks",
         measured=(Measured(KFAC, "gauss_newton_norm", "log_correlation"),)),
    _fig("004", 6, "weight decay schemes under K-FAC: the non-BN layers matter most (CIFAR)"),
    _fig("004", 7, "the trace norms of the Fisher and the Gauss-Newton matrix of a normalized "
         "layer over training (K-FAC-F)",
         measured=(Measured(KFAC, "curvature_traces", "gn_growth_restored"),),
         note="The kfac report draws the traces (section 'Mechanism III: Fisher against "
              "Gauss-Newton trace (Fig. 7)') with no bound, and tests the stated cause of the "
              "Gauss-Newton trace's growth (the downstream scales) with records."),
    _fig("004", 8, "test accuracy of baseline, L2 and weight decay over training (CIFAR)",
         measured=(Measured(KFAC, "classification", "accuracy"),),
         note="On the digits CNN: the report's curves hold test accuracy over training per "
              "optimizer and decay; the records compare each decay's final accuracy with the "
              "baseline's."),
    _fig("004", 9, "CIFAR-10 image classification (appendix)"),
    _paper("Table", 1, "classification results with and without BN, augmentation and weight "
           "decay (CIFAR)",
           measured=(Measured(KFAC, "classification", "wd_gain"),
                     Measured(KFAC, "classification", "kfac_bn_boost")),
           note="On the digits CNN with and without batch norm (no augmentation), 5 seeds: "
                "weight decay's gain per optimizer, and K-FAC's larger gain without batch norm "
                "(observation 4)."),
    _paper("Table", 2, "K-FAC-G with weight decay reduces the squared Frobenius norm of the "
           "input-output Jacobian",
           measured=(Measured(KFAC, "tuned_decay", "log_ratio_gap"),),
           note="The kfac report tabulates it at one shared lambda (section 'Mechanism II: "
                "Jacobian norm at the end of training (Table 2)', no record) and measures it at "
                "lambda tuned per optimizer on held-out loss, 5 seeds, with a one-sided bound "
                "(section 'Mechanism II: the Jacobian norm at tuned decay (Table 2)')."),
    _paper("Table", 3, "classification results for several batch sizes"),
    _paper("Lemma", 1, r"gradient structure: $J_\theta\theta = (L+1) f(x)$ for linear and "
           "ReLU networks"),
    _paper("Lemma", 2, "the K-FAC and the exact Gauss-Newton norms of a bias-free linear "
           "network",
           measured=(Measured(KFAC, "gauss_newton_norm", "gn_norm", "init-linear"),)),
    _paper("Theorem", 1, r"approximate Jacobian norm: K-FAC GN norm $= (L+1)\Vert J\Vert_F^2$ "
           "(bias-free linear network, whitened inputs)",
           measured=(Measured(KFAC, "gauss_newton_norm", "kfac_gn_norm", "init-linear"),
                     Measured(KFAC, "gauss_newton_norm", "log_correlation"))),
    _slide("000", "Algorithm 2 AdaGraft meta-optimizer",
           "the grafted step takes its norm from one optimizer and its direction from another",
           measured=(Measured(ICS, "grafting", "step_norm"),
                     Measured(ICS, "grafting", "step_cosine"),
                     Measured(ICS, "grafting", "steps_ratio", "graft:adam>sgd"))),
    _slide("000", "Batch Norm",
           "batch norm prevents dead units: each pre-activation is 0 in expectation, so it is "
           "positive on some examples",
           measured=(Measured(ICS, "dead_units", "dead_fraction", "sgd+bn"),),
           note="Measured with SGD over learning rates from 0.03 to 3 against the same MLP "
                "without normalization (001 Sec. 4.1 states the argument)."),
    _slide("000", "Batch Norm",
           "stochastic regularization by the noisy estimates of the batch statistics",
           measured=(Measured(ICS, "stochastic_regularization", "gap_difference", "sgd+bn"),),
           note="Measured as batch norm's generalization gap against layer norm's at a small "
                "and a large batch (001 Sec. 4.4 and 6 state the claim)."),
    _slide("000", "Internal Covariate Shift",
           "uncentered activations cause an outlier eigenvalue in the K-FAC factor $A$",
           proved_by=("ics_second_moment_spectrum", "ics_outlier_eigenvector",
                      "ics_kfac_outlier_eigenpairs"),
           measured=(Measured(ICS, "outlier", "a_top_eigenvalue", "input"),
                     Measured(ICS, "outlier", "kfac_a_top_eigenvalue"))),
    _slide("000", "ICS and Invariance",
           "the standardizing reparameterization computes the same function; its updates are "
           "immune to ICS",
           proved_by=("quasi_diagonal_reparameterization",),
           measured=(Measured(ICS, "quasi-diagonal", "loss", "quasi-diagonal"),
                     Measured(ICS, "outlier", "gn_condition", "quasi-diagonal"))),
    _slide("000", "Two pieces of evidence against the ICS Removal Hypothesis:",
           "the knock-out experiment: with ICS added back after BN the network trains as fast",
           measured=(Measured(ICS, "knock-out", "steps_to_threshold", "sgd+knockout"),
                     Measured(ICS, "knock-out", "steps_ratio", "sgd+knockout"))),
    _slide("000", "A Wrinkle",
           "with BN in the next layer, shifting and rescaling the activations changes nothing, "
           "so their outlier eigenvalues have no effect",
           proved_by=("next_layer_bn_shift_scale_invariance",),
           measured=(Measured(ICS, "outlier", "gn_top_eigenvalue", "center"),
                     Measured(ICS, "outlier", "gn_top_eigenvalue", "bn"))),
    _slide("000", "A Wrinkle",
           "through batch centering the weight gradient uses the centered activations: the "
           "statistics path does it",
           proved_by=("bc_weight_gradient_uses_centered_activations",
                      "bc_backprop_centers_gradients")),
    _slide("000", "Counteracting the implicit LR effect:",
           "an exponentially increasing LR schedule, weight decay, or explicit normalization "
           r"(effective LR $= \alpha$)",
           simulated=("sim.equivalence.exponential_lr_pair",),
           measured=(Measured(EFFECTIVE_LR, "exponential_lr", "direction_agreement", "sgd"),
                     Measured(EFFECTIVE_LR, "exponential_lr", "direction_agreement", "sgdm"),
                     Measured(EFFECTIVE_LR, "renormalization", "effective_lr"))),
    _slide("000", "Weight Decay as L^2 Regularization",
           "weight decay is $L^2$ regularization for gradient descent, not for a "
           "preconditioned update"),
    _slide("000", "KFAC with Weight Decay",
           "literal weight decay works much better than $L^2$ with K-FAC (Zhang et al. 2019)",
           measured=(Measured(KFAC, "classification", "wd_over_l2", "kfac-g"),
                     Measured(KFAC, "classification", "wd_over_l2", "kfac-f")),
           note="On the digits CNN with batch norm, 5 seeds: decoupled decay against L2 as a "
                "one-sided bound on the paired difference of test accuracy."),
    _slide("000", "Batch Norm and Weight Decay",
           "rescaling the weights of a layer feeding BN gives an equivalent network",
           proved_by=("bn_invariant_to_incoming_weight_scale",)),
    _slide("000", "Mechanism 1: Implicit learning rates.",
           r"weight decay keeps the effective LR from decaying; it asymptotes to $\alpha\lambda$ "
           r"(a slip: $\sqrt{2\alpha\lambda}$)",
           proved_by=("wd_effective_lr",),
           simulated=("sim.equilibria.equilibrium",),
           measured=(Measured(EFFECTIVE_LR, "equilibrium", "effective_lr", "sgd"),)),
    _slide("000", "Three Mechanisms",
           "norm grafting affects only the implicit LR and nearly closes the gap; K-FAC is "
           "immune to the rescaling but for its damping",
           proved_by=("kfac_undamped_rescaling_invariant",),
           measured=(Measured(EFFECTIVE_LR, "norm_grafting", "effective_lr"),
                     Measured(KFAC, "rescaling_immunity", "loss", "kfac-g(eta=1e-10)"))),
    _slide("000", "Mechanism 2: Jacobian regularization.",
           r"weight decay with the K-FAC preconditioner penalizes $(L+1)\Vert J\Vert_F^2$ "
           "(linear networks, whitened inputs)",
           proved_by=("wd_as_c_norm_penalty", "kfac_gauss_newton_norm"),
           measured=(Measured(KFAC, "gauss_newton_norm", "kfac_gn_norm", "init-linear"),
                     Measured(KFAC, "gauss_newton_norm", "log_correlation"))),
    _slide("000", "Mechanism 3: Damping strength.",
           r"the smaller $\hat G$, the stronger the damping; weight decay keeps K-FAC second "
           "order",
           proved_by=("kfac_effective_damping",),
           simulated=("sim.recurrence.effective_damping",),
           measured=(Measured(KFAC, "effective_damping", "effective_damping"),
                     Measured(KFAC, "normalized_update", "step_norm"))),
    _slide("002", "Batch Normalization",
           "the computation graph has a direct path and a statistics path",
           proved_by=("bn_backprop_direct_and_statistics_paths",)),
    _slide("002", "Batch Normalization",
           "batch norm prevents dead units (a motivation of the original paper)",
           measured=(Measured(ICS, "dead_units", "dead_fraction", "sgd+bn"),),
           note="Measured with SGD over learning rates from 0.03 to 3 against the same MLP "
                "without normalization (001 Sec. 4.1 states the argument)."),
    _slide("002", "Implicit Learning Rate Decay",
           "the BN cost is scale invariant, so its gradient is homogeneous of degree $-1$ "
           "(Euler)",
           proved_by=("scale_invariant_gradient_degree_minus_1", "euler_homogeneous_function")),
    _slide("002", "Implicit Learning Rate Decay",
           "the effective LR and gradient are homogeneous of degree $-2$",
           proved_by=("effective_lr_and_gradient_degree_minus_2",)),
    _slide("002", "Implicit Learning Rate Decay",
           r"$\Vert w_k\Vert^2 \propto \sqrt{1 + k/k_0}$: an $O(1/\sqrt{k})$ effective LR "
           "schedule",
           proved_by=("norm_growth_sqrt_law", "effective_lr_decay_law"),
           simulated=("sim.dynamics.simulate",),
           measured=(Measured(EFFECTIVE_LR, "norm_growth", "growth"),)),
    _slide("003", "Minimizing Quadratic Approximations: Damping",
           r"the damped Newton step has eigenvalues $1/(\nu_j + \eta)$"),
    _slide("003", "Preconditioning",
           r"preconditioning by $RR^\top$ is GD in a reparameterized space with Hessian "
           r"$R^\top HR$"),
    _slide("003", "Invariance",
           "Newton, Gauss-Newton and natural gradient are invariant to affine "
           "reparameterization; damping is not",
           note="Proved for undamped K-FAC under an affine map of a layer's activations and "
                "of its pre-activations; Newton's and the natural gradient's invariance, and "
                "damping breaking it, are not checked."),
    _slide("003", "Proximal Optimization",
           "an update trades off the batch loss, a function-space and a weight-space distance"),
    _slide("003", "Computation: Hessian-Free Optimization",
           "conjugate gradient on the quadratic model with exact curvature-vector products"),
    _slide("003", "Pullback Sampling Trick",
           "pseudo-gradients pulled back by backprop (a VJP; the slide says JVP) have "
           "covariance $G$"),
    _slide("003", "K-FAC: Kronecker Product",
           r"vec of a product, mixed product, transpose, inverse, eigenpairs of $A\otimes B$"),
    _slide("003", "K-FAC: Modeling the Pseudo-Gradients",
           r"independent layers and $\bar a \perp \mathcal{D}s$ give $\hat G_{\ell\ell} = "
           r"A\otimes S$"),
    _slide("003", "K-FAC: Compact Representation",
           "the Kronecker factors are the size of the weights"),
    _slide("003", "K-FAC: Efficient Computation",
           r"$(A\otimes S)^{-1}\mathrm{vec}(V) = \mathrm{vec}(S^{-1}VA^{-1})$"),
    _slide("003", "K-FAC: Estimating the Covariance Matrices",
           "the factors are estimated by exponential moving averages",
           note="`models.kfac` implements it; `tests/test_theory_second_order.py` checks its "
                "factors against the identity's weights."),
)
"""Every row of ``docs/coverage.md``, in page order."""

# -- the identity column, parsed from the identities' sources ---------------------------------

_SEED = re.compile(r"(?<![\d.])(\d{3})(?![\d.])")
_WORDS = {"Eq.": r"Eq(?:n|s)?\.?", "Fig.": r"Fig(?:ure|s)?\.?", "Table": r"Tables?",
          "Lemma": r"Lemmas?", "Theorem": r"Theorems?"}
_NUMBERS = r"\(?(\d+)\)?(?:\s*[-–]\s*\(?(\d+)\)?)?"
# "after Eq. 19" and "before Eq. 18" cite the text around an equation, not the equation
_CITED = {kind: re.compile(rf"(?<!after )(?<!before )\b{word}\s*{_NUMBERS}")
          for kind, word in _WORDS.items()}


def _segments(source: str) -> dict[str, str]:
    """The text of ``source`` that follows each seed prefix, up to the next one.

    >>> _segments("004 Eq. (14) (Appendix D); 001 Eq. (26)")
    {'004': ' Eq. (14) (Appendix D); ', '001': ' Eq. (26)'}
    """
    marks = [(m.start(), m.group(1)) for m in _SEED.finditer(source) if m.group(1) in SEEDS]
    found: dict[str, str] = {}
    for i, (start, seed) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(source)
        found[seed] = found.get(seed, "") + source[start + 3:end]
    return found


def cited_places(source: str) -> set[tuple[str, str, str]]:
    """``(seed, kind, label)`` of every place a source cites: numbered places (ranges
    expanded) and quoted slide titles.

    >>> sorted(cited_places("001 Eqs. (23)-(25), Sec. 5.1 (after Eq. 19); 004 Lemma 2"))
    [('001', 'Eq.', '23'), ('001', 'Eq.', '24'), ('001', 'Eq.', '25'), ('004', 'Lemma', '2')]
    >>> sorted(cited_places("003 slides, 'Preconditioning' (Newton)"))
    [('003', 'slide', 'Preconditioning')]
    """
    found = set()
    for seed, text in _segments(source).items():
        for kind, pattern in _CITED.items():
            for match in pattern.finditer(text):
                first = int(match.group(1))
                last = int(match.group(2) or first)
                found |= {(seed, kind, str(n)) for n in range(first, last + 1)}
        found |= {(seed, "slide", title) for title in re.findall(r"'([^']+)'", text)}
    return found


def _cites(place: tuple[str, str, str], item: Item) -> bool:
    seed, kind, label = place
    if (seed, kind) != (item.seed, item.kind):
        return False
    if kind != "slide":
        return label == item.label
    title = item.label.rstrip(":.")  # a source quotes the title without its punctuation
    return label == title or title.endswith(f": {label}")


@functools.cache
def _citations() -> tuple[tuple[str, frozenset[tuple[str, str, str]]], ...]:
    return tuple((name, frozenset(cited_places(identity.source)))
                 for name, identity in IDENTITIES.items())


def identities_of(item: Item) -> list[str]:
    """The identities covering ``item``: those whose source cites it, then its ``proved_by``."""
    cited = [name for name, places in _citations()
             if any(_cites(place, item) for place in places)]
    return cited + [name for name in item.proved_by if name not in cited]


# -- the measurement column, read from the committed reference reports -----------------------


@functools.cache
def _reference(suite: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records (``report.json``) and the declared bounds' results (``index.json``
    ``agreement``) of suite ``suite``'s committed reference report (the JSON alone: the
    curves that :func:`validation.reference` loads too are not needed here)."""
    from scalewise.validation.suite import REFERENCE_DIR

    folder = REFERENCE_DIR / suite
    records = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    return records, index.get("agreement", [])


@dataclass(frozen=True)
class Agreement:
    """What the committed report says of a :class:`Measured` selection: how many records,
    their largest relative error, and the declared bounds about them that hold."""

    measured: Measured
    records: int
    largest_error: float
    bounds: int
    bounds_held: int


def agreement(measured: Measured) -> Agreement:
    """The :class:`Agreement` of ``measured``, read from its suite's committed report."""
    records, bounds = _reference(measured.suite)
    errors = [float(r["rel_error"]) for r in records if measured.matches(r)]
    finite = [e for e in errors if not math.isnan(e)]
    about = [b for b in bounds if measured.covers_bound(b)]
    return Agreement(measured, len(errors), max(finite, default=math.nan), len(about),
                     sum(bool(b["holds"]) for b in about))


def _agreement_text(found: Agreement) -> str:
    m = found.measured
    who = f" ({m.optimizer})" if m.optimizer else ""
    text = (f"{m.suite}: {m.experiment} / {m.quantity}{who}: {counted(found.records, 'record')}, "
            f"largest rel. error {found.largest_error:.2g}")
    if found.bounds:
        text += f"; bounds held {found.bounds_held} of {found.bounds}"
    return text


# -- status and page --------------------------------------------------------------------------


def status(item: Item) -> str:
    """``proved``, ``simulated``, ``measured`` (those that apply, in that order; ``measured``
    says when a declared bound about it is missed), or ``not covered``."""
    found = [agreement(m) for m in item.measured]
    parts = ["proved"] if identities_of(item) else []
    parts += ["simulated"] if item.simulated else []
    if any(a.records for a in found):
        missed = any(a.bounds_held < a.bounds for a in found)
        parts.append("measured (a bound missed)" if missed else "measured")
    return ", ".join(parts) or "not covered"


def _cell(texts: Iterable[str]) -> str:
    return "<br>".join(texts) or "—"


def _row(item: Item) -> str:
    states = item.states + (f"<br>*{item.note}*" if item.note else "")
    cells = [item.place.replace("|", "/"), states,
             _cell(f"`{name}`" for name in identities_of(item)),
             _cell(f"`{name}`" for name in item.simulated),
             _cell(_agreement_text(agreement(m)) for m in item.measured),
             status(item)]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


STATUSES = ("proved", "simulated", "measured", "not covered")


def _summary(items: Sequence[Item]) -> list[str]:
    lines = ["| seed | rows | " + " | ".join(STATUSES) + " |", "|---|---|---|---|---|---|"]
    for seed, title in SEEDS.items():
        rows = [status(item) for item in items if item.seed == seed]
        counts = [sum(s.startswith(word) or f", {word}" in s for s in rows) for word in STATUSES]
        lines.append(f"| {seed}: {title} | {len(rows)} | " + " | ".join(map(str, counts)) + " |")
    return lines


def coverage_markdown(items: Sequence[Item] = ITEMS) -> str:
    """The page ``docs/coverage.md``: a summary per seed, then one table per seed."""
    lines = [
        "# What scalewise covers of the seeds",
        "",
        "Generated from `validation.coverage` by `scalewise docs`; do not edit by hand.",
        "One row per numbered equation and figure of the notes (001), per figure, table, lemma",
        "and theorem of the paper (004), and per claim of the slides (000, 002, 003) under its",
        "slide title. *Identities* are those whose source cites the place, then any the row",
        "names as proving it without such a citation (see [identities.md](identities.md));",
        "*simulation* names the functions of `sim/` (or",
        "`figures/`) that compute it; *measurement* reads the committed reference reports",
        "(`validation/reference/<suite>/report.json`): the records selected, their largest",
        "relative error, and how many of the bounds the suite declared about them hold.",
        "The summary counts a row under every status that applies to it.",
        "",
        *_summary(items),
        "",
    ]
    for seed, title in SEEDS.items():
        lines += [f"## {seed}: {title}", "",
                  "| place | states | identities | simulation | measurement | status |",
                  "|---|---|---|---|---|---|"]
        lines += [_row(item) for item in items if item.seed == seed]
        lines.append("")
    return "\n".join(lines)


# -- checks against the seeds and the code ----------------------------------------------------

_EQUATION_NUMBER = re.compile(r"(?:\\quad \((\d+)\)|\\tag\{(\d+)\})\s*\$\$")
_CAPTION = re.compile(r"^Figure (\d+):", re.M)
_PAPER_PLACE = re.compile(r"\b(Figure|Table|Lemma|Theorem) (\d+)\b")


def numbered_equations(text: str) -> list[int]:
    r"""The numbers of the displayed equations of ``text``, in order: ``\quad (N)$$`` and
    ``\tag{N}$$`` end a numbered display.

    >>> numbered_equations("$$a = b \\quad (1)$$ ... $$c \\tag{2}$$")
    [1, 2]
    """
    return [int(a or b) for a, b in _EQUATION_NUMBER.findall(text)]


def seed_places(folder: str | os.PathLike[str]) -> set[tuple[str, str, str]]:
    """``(seed, kind, label)`` of the places that must have a row: the numbered equations and
    the figure captions of 001, every figure, table, lemma and theorem named in 004."""
    notes, paper = (_seed_text(folder, seed) for seed in ("001", "004"))
    found = {("001", "Eq.", str(n)) for n in numbered_equations(notes)}
    found |= {("001", "Fig.", n) for n in _CAPTION.findall(notes)}
    kinds = {"Figure": "Fig."}
    found |= {("004", kinds.get(kind, kind), n) for kind, n in _PAPER_PLACE.findall(paper)}
    return found


def _seed_text(folder: str | os.PathLike[str], seed: str) -> str:
    (path,) = Path(folder).glob(f"{seed}_*.txt")
    return path.read_text(encoding="utf-8")


def slide_title_found(text: str, title: str) -> bool:
    """Whether ``title`` is a line of the slides ``text``, once a heading's ``#`` or a bullet
    is taken off.

    >>> slide_title_found("# K-FAC: Kronecker Product\\n- vec", "K-FAC: Kronecker Product")
    True
    """
    return any(line.strip().lstrip("#-•* ").strip() == title for line in text.splitlines())


def seed_errors(folder: str | os.PathLike[str], items: Sequence[Item] = ITEMS) -> list[str]:
    """Places of the seeds in ``folder`` without a row, rows naming a place the seeds do not
    have, and slide rows whose title is not a line of their slides."""
    rows = {(i.seed, i.kind, i.label) for i in items if i.kind != "slide"}
    places = seed_places(folder)
    errors = [f"{seed} {kind} {label} has no row" for seed, kind, label in sorted(places - rows)]
    errors += [f"{seed} {kind} {label} is not in the seed"
               for seed, kind, label in sorted(rows - places)]
    errors += [f"{item.place}: no such slide title"
               for item in items if item.kind == "slide"
               and not slide_title_found(_seed_text(folder, item.seed), item.label)]
    return errors


def _resolves(dotted: str) -> bool:
    module, _, name = dotted.rpartition(".")
    try:
        return hasattr(importlib.import_module(f"scalewise.{module}"), name)
    except ImportError:
        return False


def mapping_errors(items: Sequence[Item] = ITEMS) -> list[str]:
    """Curated entries naming what does not exist: an unknown seed or kind, an identity not in
    :data:`theory.IDENTITIES`, a function of ``sim/`` or ``figures/`` that does not import, a
    suite without a reference report or a selection matching no record of it."""
    errors = []
    for item in items:
        where = item.place
        if item.seed not in SEEDS or item.kind not in KINDS:
            errors.append(f"{where}: unknown seed or kind")
        errors += [f"{where}: no identity {name!r}" for name in item.proved_by
                   if name not in IDENTITIES]
        errors += [f"{where}: {path} is not a function of sim/ or figures/"
                   for path in item.simulated
                   if not path.startswith(("sim.", "figures.")) or not _resolves(path)]
        for m in item.measured:
            if m.suite not in SUITES:
                errors.append(f"{where}: no suite {m.suite!r}")
            elif not agreement(m).records:
                errors.append(f"{where}: no record of {m}")
    return errors
