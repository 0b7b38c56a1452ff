"""Invariances of normalization layers (001 Sec. 4.2, the next-layer invariance and the outlier
directions; Sec. 4.3, invariance to rescaling a unit's incoming weights; Sec. 4.4, weight norm,
Eq. 20, and layer norm, Eq. 21; the 'A Wrinkle' and 'Implicit Learning Rate Decay' slides of 000
and 002), checked on generic symbolic batches with the layers of :mod:`theory.normalization`.

The nonlinearity of ``f(A, W) = phi(BN(A W^T))`` is elementwise, so every invariance of
``BN(A W^T)`` is one of ``f``; the identities check the normalized pre-activations.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise.theory.homogeneity import reduce_radicals
from scalewise.theory.identity import identity, slip
from scalewise.theory.normalization import (
    D_IN,
    D_OUT,
    batch_center,
    batch_norm,
    generic_layer,
    layer_norm,
    ones,
    positive_diagonal,
    weight_norm,
)
from scalewise.theory.symbolic import gradient, matrix, norm, unvec, vector

s, gamma, wn_gain = sp.symbols("s gamma g", positive=True)


@cache
def _bn_preactivations(batch: int) -> sp.Matrix:
    A, W = generic_layer(batch)
    return batch_norm(A * W.T)


@cache
def _incoming_weights_scaled(batch: int) -> sp.Matrix:
    """``BN(A (Gamma W)^T)``: each unit's incoming weights rescaled by its own ``gamma_j > 0``."""
    A, W = generic_layer(batch)
    return batch_norm(A * (positive_diagonal("gamma", D_OUT) * W).T)


identity(
    name="bn_invariant_to_incoming_weight_scale",
    topic="normalization",
    source="001 Sec. 4.3 (before Eq. 18)",
    statement=r"\mathrm{BN}(\mathbf{A}(\mathbf{\Gamma}\mathbf{W})^\top)"
    r" = \mathrm{BN}(\mathbf{A}\mathbf{W}^\top)"
    r"\ \text{for diagonal}\ \mathbf{\Gamma}\succ\mathbf{0}",
    claim=_incoming_weights_scaled,
    expected=_bn_preactivations,
    control=lambda n: _bn_preactivations(n) * positive_diagonal("gamma", D_OUT),
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="Batch sizes 2 and 3, D_in = D_out = 2. Each unit's incoming weights w_j may be rescaled "
    "separately, so the cost is scale invariant in every w_j (001 Eq. 18). The control claims "
    "equivariance instead of invariance.",
)


@cache
def _next_layer(batch: int, activations: str, weights: str = "none") -> sp.Matrix:
    """``BN((A S + 1 m^T) (T W)^T)`` with a generic shift ``m``: ``S = s I`` (``activations='s'``),
    ``-s I`` (``'-s'``) or a positive diagonal (``'unit'``, each input unit its own scale), and
    ``T = I`` (``weights='none'``) or a positive diagonal (``'unit'``)."""
    A, W = generic_layer(batch)
    activation_scales = {"s": s * sp.eye(D_IN), "-s": -s * sp.eye(D_IN),
                         "unit": positive_diagonal("gamma", D_IN)}
    weight_scales = {"none": sp.eye(D_OUT), "unit": positive_diagonal("gamma", D_OUT)}
    shifted = A * activation_scales[activations] + ones(batch) * vector("m", D_IN).T
    return batch_norm(shifted * (weight_scales[weights] * W).T)


identity(
    name="next_layer_bn_shift_scale_invariance",
    topic="normalization",
    source="001 Sec. 4.2 (the function f of the next layer)",
    statement=r"\mathrm{BN}((s\mathbf{A} + \mathbf{1}\mathbf{m}^\top)\mathbf{W}^\top)"
    r" = \mathrm{BN}(\mathbf{A}\mathbf{W}^\top)\ \text{for scalar}\ s>0,\ \text{any}\ \mathbf{m};"
    r"\ \text{not for unitwise}\ \mathbf{A}\mathbf{\Gamma}",
    claim=lambda n: _next_layer(n, "s"),
    expected=_bn_preactivations,
    control=lambda n: _next_layer(n, "unit"),
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="Batch sizes 2 and 3, D_in = D_out = 2. So f(A, W) = phi(BN(A W^T)) ignores the mean "
    "and the overall scale of the previous layer's activations. The control is the unitwise rescaling A Gamma, which is not an "
    "invariance (the notes' footnote): its rejection shows BN(A Gamma W^T) != BN(A W^T).",
)

identity(
    name="bn_negative_scale_flips_sign",
    topic="normalization",
    source="001 Sec. 4.2 (the function f of the next layer)",
    statement=r"\mathrm{BN}((-s\mathbf{A} + \mathbf{1}\mathbf{m}^\top)\mathbf{W}^\top)"
    r" = -\mathrm{BN}(\mathbf{A}\mathbf{W}^\top)\quad (s > 0)",
    claim=lambda n: _next_layer(n, "-s"),
    expected=lambda n: -_bn_preactivations(n),
    control=_bn_preactivations,
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="Batch sizes 2 and 3, D_in = D_out = 2. The standard deviation ignores the sign of s, "
    "the centered values do not: the invariance needs s > 0. The control is the invariance the notes state 'for any s'.",
)

slip(
    seed="001",
    place="Sec. 4.2, invariance of f after 'shifting and rescaling of the activations'",
    says=r"$f_\ell(\mathbf{A}_{\ell-1}, \mathbf{W}_\ell) = f_\ell(s\mathbf{A}_{\ell-1} + \mathbf{1}\mathbf{m}^\top, \mathbf{W}_\ell)$ for any $s, \mathbf{m}$",
    truth=r"only for $s > 0$: for $s < 0$, $\mathrm{BN}$ changes sign, so $f(s\mathbf{A} + \mathbf{1}\mathbf{m}^\top, \mathbf{W}) = \phi(-\mathrm{BN}(\mathbf{A}\mathbf{W}^\top))$, and $s = 0$ leaves nothing to normalize",
    identity="bn_negative_scale_flips_sign",
)


def _with_affine(normalized: sp.Matrix) -> sp.Matrix:
    """``BN(.) ⊙ 1 beta^T + 1 b^T``: the learnable gain and bias per unit that the notes set
    aside (001 Sec. 4, after Eq. 12)."""
    gains, biases = vector("beta", normalized.cols), vector("b", normalized.cols)
    return normalized * sp.diag(*gains) + ones(normalized.rows) * biases.T


identity(
    name="bn_affine_keeps_invariances",
    topic="normalization",
    source="001 Sec. 4 (after Eq. 12: gain and bias set aside), Sec. 4.2 and 4.3",
    statement=r"\mathrm{BN}_{\boldsymbol\beta,\mathbf{b}}((s\mathbf{A} + \mathbf{1}\mathbf{m}^\top)"
    r"(\mathbf{\Gamma}\mathbf{W})^\top)"
    r" = \mathrm{BN}_{\boldsymbol\beta,\mathbf{b}}(\mathbf{A}\mathbf{W}^\top),"
    r"\quad \mathrm{BN}_{\boldsymbol\beta,\mathbf{b}}(\mathbf{X}) = \mathrm{BN}(\mathbf{X})"
    r"\,\mathrm{diag}(\boldsymbol\beta) + \mathbf{1}\mathbf{b}^\top",
    claim=lambda n: _with_affine(_next_layer(n, "s", "unit")),
    expected=lambda n: _with_affine(_bn_preactivations(n)),
    control=lambda n: _with_affine(_next_layer(n, "unit")),
    sizes=(3,),
    simplifier=reduce_radicals,
    note="All invariances of Sec. 4.2-4.3 at once (scalar scale and shift of the activations, "
    "unitwise scale of the incoming weights), with the learnable gain and bias: they act after "
    "the normalization, so setting them aside loses nothing for these sections. Batch 3, "
    "D_in = D_out = 2; the control is the unitwise rescaling of the activations.",
)


@cache
def _weight_norm_case(n: int) -> tuple[sp.Matrix, sp.Matrix]:
    v = vector("v", n)
    return v, weight_norm(v, wn_gain)


identity(
    name="weight_norm_scale_invariance",
    topic="normalization",
    source="001 Eq. (20)",
    statement=r"\mathrm{WN}(\gamma\mathbf{v}; g) = \mathrm{WN}(\mathbf{v}; g)\quad(\gamma > 0)",
    claim=lambda n: weight_norm(gamma * _weight_norm_case(n)[0], wn_gain),
    expected=lambda n: _weight_norm_case(n)[1],
    control=lambda n: gamma * _weight_norm_case(n)[1],
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="So a cost of v through WN is scale invariant in v, and Sec. 4.3 applies unchanged.",
)

identity(
    name="weight_norm_norm_is_gain",
    topic="normalization",
    source="001 Eq. (20)",
    statement=r"\|\mathrm{WN}(\mathbf{v}; g)\| = g",
    claim=lambda n: norm(_weight_norm_case(n)[1]),
    expected=lambda n: wn_gain,
    control=lambda n: wn_gain * norm(_weight_norm_case(n)[0]),
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="WN decouples the norm (g) from the direction (v / ||v||).",
)


@cache
def _layer_norm_case(units: int, scale: str) -> sp.Matrix:
    """``LN(S W x; b, g)`` for a generic input ``x`` (length ``D_IN``), ``units`` outputs, and
    ``S = 1`` (``scale='none'``), ``gamma I`` (``'layer'``) or ``Gamma`` (``'unit'``)."""
    x, biases, gains = vector("x", D_IN), vector("b", units), vector("g", units)
    scales = {"none": sp.eye(units), "layer": gamma * sp.eye(units),
              "unit": positive_diagonal("gamma", units)}
    return layer_norm(scales[scale] * matrix("w", units, D_IN) * x, gains, biases)


identity(
    name="layer_norm_whole_layer_scale_invariance",
    topic="normalization",
    source="001 Eq. (21) and Sec. 4.4 ('Implicit learning rate decay')",
    statement=r"\mathrm{LN}(\gamma\mathbf{W}\mathbf{x}) = \mathrm{LN}(\mathbf{W}\mathbf{x})"
    r"\ (\gamma > 0);\ \mathrm{LN}(\mathbf{\Gamma}\mathbf{W}\mathbf{x})"
    r" \ne \mathrm{LN}(\mathbf{W}\mathbf{x})\ \text{in general}",
    claim=lambda n: _layer_norm_case(n, "layer"),
    expected=lambda n: _layer_norm_case(n, "none"),
    control=lambda n: _layer_norm_case(n, "unit"),
    sizes=(2, 3),
    simplifier=reduce_radicals,
    note="Layer widths D = 2 and 3, D_in = 2, with gain and bias. The control rescales each unit's "
    "incoming weights separately, which LN does not undo: scale invariance holds for the whole "
    "weight matrix only.",
)


def bn_cost_inputs(batch: int) -> sp.Matrix:
    """Fixed integer inputs (``batch x D_IN``, rows ``(i, i^2 - 3)``) for the concrete BN cost:
    exact data keep its symbolic gradient small."""
    return sp.Matrix(batch, D_IN, lambda i, j: i if j == 0 else i**2 - 3)


@cache
def _bn_cost_case(batch: int) -> tuple[sp.Matrix, sp.Expr]:
    """``J(w) = 1/2 ||BN(X w) - y||^2``: one BN unit fitted to symbolic targets ``y``, a genuine
    scale-invariant cost of its incoming weights ``w`` (001 Sec. 4.3)."""
    X, y, w = bn_cost_inputs(batch), vector("y", batch), vector("w", D_IN)
    residual = batch_norm(X * w) - y
    return w, residual.dot(residual) / 2


def _bn_cost_facts(batch: int, grad_degree: int) -> tuple[sp.Expr, sp.Expr, sp.Matrix]:
    """``(J(w), 0, gamma^grad_degree grad J(w))``."""
    w, cost = _bn_cost_case(batch)
    return cost, sp.Integer(0), gamma**grad_degree * gradient(cost, w)


@cache
def _bn_cost_derived(batch: int) -> tuple[sp.Expr, sp.Expr, sp.Matrix]:
    """``(J(gamma w), w . grad J(w), grad J(gamma w))``."""
    w, cost = _bn_cost_case(batch)
    grad = gradient(cost, w)
    scaled = dict(zip(w, gamma * w))
    return cost.xreplace(scaled), w.dot(grad), grad.xreplace(scaled)


identity(
    name="bn_cost_scale_invariance",
    topic="normalization",
    source="001 Sec. 4.3 (Eq. 16 with k = 0 and Eq. 18)",
    statement=r"\mathcal{J}(\mathbf{w}) = \tfrac12\|\mathrm{BN}(\mathbf{X}\mathbf{w})"
    r" - \mathbf{y}\|^2:\quad \mathcal{J}(\gamma\mathbf{w}) = \mathcal{J}(\mathbf{w}),"
    r"\ \mathbf{w}^\top\nabla\mathcal{J}(\mathbf{w}) = 0,"
    r"\ \nabla\mathcal{J}(\gamma\mathbf{w}) = \gamma^{-1}\nabla\mathcal{J}(\mathbf{w})",
    claim=_bn_cost_derived,
    expected=lambda n: _bn_cost_facts(n, -1),
    control=lambda n: _bn_cost_facts(n, 0),
    sizes=(3,),
    simplifier=reduce_radicals,
    note="A concrete BN network cost (batch 3, 2 inputs, fixed integer inputs, symbolic "
    "targets and weights) obeys the scale-invariance facts proved for generic costs in "
    "theory.homogeneity.",
)


# ---------------------------------------------------------------- the outlier directions

OUTLIER_BATCH = 3
"""Batch size of the outlier-direction check; the widths ``D_in = D_out`` are its size ``n``."""


@cache
def _outlier_change(width: int, first: str) -> tuple[sp.Matrix, sp.Matrix]:
    """``(A dW^T, BC(A dW^T))`` for the weight change ``dW = unvec(m ⊗ v)`` (``first='m'``) or
    ``unvec(v ⊗ m)``, with activations ``A = A_tilde + 1 m^T`` of mean ``m``."""
    m, v = vector("m", width), vector("v", width)
    direction = sp.kronecker_product(m, v) if first == "m" else sp.kronecker_product(v, m)
    A = batch_center(matrix("z", OUTLIER_BATCH, width)) + ones(OUTLIER_BATCH) * m.T
    change = A * unvec(direction, width).T  # (B, D_out)
    return change, batch_center(change)


def _outlier_expected(width: int) -> tuple[sp.Matrix, sp.Matrix]:
    m, v = vector("m", width), vector("v", width)
    kept = batch_center(matrix("z", OUTLIER_BATCH, width)) * m * v.T  # A_tilde m v^T
    return kept + m.dot(m) * ones(OUTLIER_BATCH) * v.T, kept


identity(
    name="outlier_direction_shifts_preactivations",
    topic="normalization",
    source="001 Sec. 4.2 (last paragraph)",
    statement=r"\Delta\mathbf{W} = \mathrm{vec}^{-1}(\mathbf{m}\otimes\mathbf{v})"
    r" = \mathbf{v}\mathbf{m}^\top:\ "
    r"\mathbf{A}\Delta\mathbf{W}^\top = \|\mathbf{m}\|^2\mathbf{1}\mathbf{v}^\top"
    r" + \tilde{\mathbf{A}}\mathbf{m}\mathbf{v}^\top,\ "
    r"\mathrm{BC}(\mathbf{A}\Delta\mathbf{W}^\top) = \tilde{\mathbf{A}}\mathbf{m}\mathbf{v}^\top",
    claim=lambda n: _outlier_change(n, "m"),
    expected=_outlier_expected,
    control=lambda n: _outlier_change(n, "v"),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Moving the weights along an outlier eigenvector m ⊗ v of the K-FAC block (theory."
    "kronecker, column-stacking vec) shifts every example's pre-activations by the same "
    "||m||^2 v, up to the part A_tilde m v^T that the centered activations see; batch centering "
    "removes exactly the shift, so the next layer's BN filters this direction out. Batch 3, "
    "D_in = D_out = 2 and 3. The control is the transposed direction v ⊗ m.",
)
