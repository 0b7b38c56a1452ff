"""Normalization layers: their invariances and their backprop (items 2 and 3 of the catalogue).

Sources: 001 Sec. 4 (batch norm, Eq. 11, and its direct path, Eq. 12), Sec. 4.2 (the next-layer
invariance, batch centering and its backprop, Eqs. 13-14 and the derivation after them, the
outlier directions), Sec. 4.3 (invariance to rescaling a unit's incoming weights) and Sec. 4.4
(weight norm, Eq. 20; layer norm, Eq. 21); the 'A Wrinkle' and 'Implicit Learning Rate Decay'
slides of 000 and 002.

Conventions (001 Sec. 4): a batch is a ``B x D`` matrix, one row per example; ``mu(X)`` and
``sigma(X)`` are the column means and (population) standard deviations, as columns of length
``D``; ``1`` is the all-ones column of length ``B``; a layer computes ``R = A W^T`` with ``W`` of
shape ``D_out x D_in``. Backprop is derived, never assumed: :func:`vjp` differentiates the forward
expression entrywise, and the identities compare it with the closed forms of the notes.

The nonlinearity of ``f(A, W) = phi(BN(A W^T))`` is elementwise, so every invariance of
``BN(A W^T)`` is one of ``f``; the identities check the normalized pre-activations.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from scalewise import checks
from scalewise.theory.homogeneity import reduce_radicals
from scalewise.theory.identity import identity, slip, unpack
from scalewise.theory.symbolic import gradient, matrix, norm, unvec, vector

s, gamma, wn_gain = sp.symbols("s gamma g", positive=True)


def positive_diagonal(name: str, n: int) -> sp.Matrix:
    """``diag(name_1, ..., name_n)`` with positive symbols: the ``Gamma > 0`` of 001 Sec. 4.3."""
    return sp.diag(*sp.symbols(f"{name}_1:{n + 1}", positive=True))


def _ones(rows: int) -> sp.Matrix:
    return sp.ones(rows, 1)


def _check_batch(X: sp.Matrix) -> None:
    if X.rows < 2:
        checks.fail("X", X.shape, "a matrix of at least 2 rows (examples) to normalize")


def _divide_columns(X: sp.Matrix, column_scales: sp.Matrix) -> sp.Matrix:
    """``X ⊘ 1 c^T``: column ``j`` of ``X`` divided by ``c_j``."""
    return sp.Matrix(X.rows, X.cols, lambda i, j: X[i, j] / column_scales[j])


def batch_mean(X: sp.Matrix) -> sp.Matrix:
    """``mu(X)``: the column means of the ``B x D`` batch ``X``, a column of length ``D``."""
    return X.T * _ones(X.rows) / X.rows


def batch_center(X: sp.Matrix) -> sp.Matrix:
    """Batch centering ``BC(X) = X - 1 mu(X)^T`` (001 Eq. 13)."""
    return X - _ones(X.rows) * batch_mean(X).T


def batch_std(X: sp.Matrix) -> sp.Matrix:
    """``sigma(X)``: the column standard deviations (dividing by ``B``, as BN does in training)."""
    _check_batch(X)
    centered = batch_center(X)
    variances = batch_mean(centered.multiply_elementwise(centered))  # (D, 1)
    return variances.applyfunc(sp.sqrt)


def batch_norm(X: sp.Matrix) -> sp.Matrix:
    """``BN(X) = (X - 1 mu(X)^T) ⊘ 1 sigma(X)^T`` (001 Eq. 11; gain 1 and bias 0, as the notes
    assume)."""
    return _divide_columns(batch_center(X), batch_std(X))


def weight_norm(v: sp.Matrix, g: sp.Expr) -> sp.Matrix:
    """``WN(v; g) = g v / ||v||`` (001 Eq. 20): the weights of one unit with norm ``g``."""
    return g * v / norm(v)


def layer_norm(a: sp.Matrix, gains: sp.Matrix, biases: sp.Matrix) -> sp.Matrix:
    """``LN(a; b, g) = g/sigma ⊙ (a - mu 1) + b`` over the ``D`` units of one example
    (001 Eq. 21): ``a``, ``gains`` and ``biases`` are columns of length ``D >= 2``."""
    if a.cols != 1 or a.rows < 2:
        checks.fail("a", a.shape, "a column of at least 2 units")
    if gains.shape != a.shape or biases.shape != a.shape:
        checks.fail("gains, biases", (gains.shape, biases.shape), f"the shape of a, {a.shape}")
    centered = batch_center(a)  # (D, 1): the D units play the role of the batch rows
    return centered.multiply_elementwise(gains) / batch_std(a)[0] + biases


def vjp(output: sp.Matrix, inputs: sp.Matrix, output_bar: sp.Matrix) -> sp.Matrix:
    """Backprop ``inputs_bar[i, j] = sum_{k l} output_bar[k, l] d output[k, l] / d inputs[i, j]``,
    derived by differentiating every entry (the bar notation of 001 Sec. 4)."""
    if output_bar.shape != output.shape:
        checks.fail("output_bar", output_bar.shape, f"the output's shape {output.shape}")
    return sp.Matrix(
        inputs.rows,
        inputs.cols,
        lambda i, j: sum(b * o.diff(inputs[i, j]) for b, o in zip(output_bar, output)),
    )


# ---------------------------------------------------------------- closed forms of the notes


def batch_center_vjp(S_bar: sp.Matrix) -> sp.Matrix:
    """``R_bar = S_bar - 1 mu(S_bar)^T``: direct path minus statistics path (001 Eq. 14)."""
    return batch_center(S_bar)


def batch_norm_direct_path(X: sp.Matrix, X_tilde_bar: sp.Matrix) -> sp.Matrix:
    """``X_bar = X_tilde_bar ⊘ 1 sigma(X)^T``: backprop with the statistics held fixed
    (001 Eq. 12)."""
    return _divide_columns(X_tilde_bar, batch_std(X))


def batch_norm_statistics_path(X: sp.Matrix, X_tilde_bar: sp.Matrix) -> sp.Matrix:
    """What the statistics path subtracts from the direct path of BN,
    ``[1 mu(X_tilde_bar)^T + X_tilde ⊙ 1 mu(X_tilde ⊙ X_tilde_bar)^T] ⊘ 1 sigma(X)^T``: through
    the mean (the batch-centering term of Eq. 14) and through the standard deviation."""
    X_tilde = batch_norm(X)
    through_mean = _ones(X.rows) * batch_mean(X_tilde_bar).T
    through_std = X_tilde * sp.diag(*batch_mean(X_tilde.multiply_elementwise(X_tilde_bar)))
    return _divide_columns(through_mean + through_std, batch_std(X))


def batch_norm_vjp(X: sp.Matrix, X_tilde_bar: sp.Matrix) -> sp.Matrix:
    """Full backprop through BN (001 Sec. 4, Fig. 4): direct path minus statistics path."""
    return batch_norm_direct_path(X, X_tilde_bar) - batch_norm_statistics_path(X, X_tilde_bar)


# ---------------------------------------------------------------- invariances (item 2)

D_IN = D_OUT = 2
"""Widths used by the invariance checks; the batch size is the identity's size ``n``."""


@cache
def _layer(batch: int) -> tuple[sp.Matrix, sp.Matrix]:
    """Generic activations ``A`` (``batch x D_IN``) and weights ``W`` (``D_OUT x D_IN``)."""
    return matrix("a", batch, D_IN), matrix("w", D_OUT, D_IN)


@cache
def _bn_preactivations(batch: int) -> sp.Matrix:
    A, W = _layer(batch)
    return batch_norm(A * W.T)


@cache
def _incoming_weights_scaled(batch: int) -> sp.Matrix:
    """``BN(A (Gamma W)^T)``: each unit's incoming weights rescaled by its own ``gamma_j > 0``."""
    A, W = _layer(batch)
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
    A, W = _layer(batch)
    activation_scales = {"s": s * sp.eye(D_IN), "-s": -s * sp.eye(D_IN),
                         "unit": positive_diagonal("gamma", D_IN)}
    weight_scales = {"none": sp.eye(D_OUT), "unit": positive_diagonal("gamma", D_OUT)}
    shifted = A * activation_scales[activations] + _ones(batch) * vector("m", D_IN).T
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
    return normalized * sp.diag(*gains) + _ones(normalized.rows) * biases.T


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


# ---------------------------------------------------------------- backprop (item 3)


@cache
def _batch_center_case(batch: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """Pre-activations ``R``, the output gradient ``S_bar`` and the derived ``R_bar``."""
    R, S_bar = matrix("r", batch, D_OUT), matrix("sbar", batch, D_OUT)
    return R, S_bar, vjp(batch_center(R), R, S_bar)


identity(
    name="bc_backprop_direct_minus_statistics_path",
    topic="normalization",
    source="001 Eq. (14)",
    statement=r"\mathbf{S} = \mathbf{R} - \mathbf{1}\boldsymbol{\mu}(\mathbf{R})^\top"
    r" \;\Rightarrow\;"
    r" \bar{\mathbf{R}} = \bar{\mathbf{S}} - \mathbf{1}\boldsymbol{\mu}(\bar{\mathbf{S}})^\top",
    claim=lambda n: _batch_center_case(n)[2],
    expected=lambda n: batch_center_vjp(_batch_center_case(n)[1]),
    control=lambda n: _batch_center_case(n)[1],
    sizes=(2, 3),
    simplifier=sp.expand,
    note="Batch sizes 2 and 3, D = 2. The control keeps only the direct path.",
)

identity(
    name="bc_backprop_centers_gradients",
    topic="normalization",
    source="001 Sec. 4.2 (footnote after Eq. 14)",
    statement=r"\mathbf{1}^\top\bar{\mathbf{R}} = \mathbf{0}^\top",
    claim=lambda n: _ones(n).T * _batch_center_case(n)[2],
    expected=lambda n: sp.zeros(1, D_OUT),
    control=lambda n: _ones(n).T * _batch_center_case(n)[1],
    sizes=(2, 3),
    simplifier=sp.expand,
)


@cache
def _weight_gradient_case(batch: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """Activations ``A``, output gradient ``S_bar`` and the derived ``W_bar`` of
    ``S = BC(A W^T)``."""
    A, W = _layer(batch)
    S_bar = matrix("sbar", batch, D_OUT)
    return A, S_bar, vjp(batch_center(A * W.T), W, S_bar)


identity(
    name="bc_weight_gradient_uses_centered_activations",
    topic="normalization",
    source="001 Sec. 4.2 (derivation after Eq. 14)",
    statement=r"\bar{\mathbf{W}} = \bar{\mathbf{R}}^\top\mathbf{A}"
    r" = \bar{\mathbf{S}}^\top\tilde{\mathbf{A}},"
    r"\quad \tilde{\mathbf{A}} = \mathbf{A} - \mathbf{1}\boldsymbol{\mu}(\mathbf{A})^\top",
    claim=lambda n: _weight_gradient_case(n)[2],
    expected=unpack(_weight_gradient_case, lambda A, S_bar, _: S_bar.T * batch_center(A)),
    control=unpack(_weight_gradient_case, lambda A, S_bar, _: S_bar.T * A),
    sizes=(2, 3),
    simplifier=sp.expand,
    note="W_bar is derived by differentiating BC(A W^T) in W. The control is the gradient without "
    "batch centering (S_bar^T A, the 000/002 slides' 'without BC'): the mean of the activations "
    "drops out of the gradient.",
)

slip(
    seed="001",
    place="Sec. 4.2, derivation of the batch gradient after Eq. (14), second and third lines",
    says=r"$\bar{\mathbf{W}} = (\bar{\mathbf{S}} - \mathbf{1}\boldsymbol{\mu}(\bar{\mathbf{S}})^\top)(\tilde{\mathbf{A}} + \mathbf{1}\mathbf{m}^\top) = [\bar{\mathbf{S}}^\top\tilde{\mathbf{A}} - \boldsymbol{\mu}(\bar{\mathbf{S}})^\top\tilde{\mathbf{A}} + \dots]$",
    truth=r"the first factor is transposed, $\bar{\mathbf{R}}^\top = (\bar{\mathbf{S}} - \mathbf{1}\boldsymbol{\mu}(\bar{\mathbf{S}})^\top)^\top$, and the second term is $\boldsymbol{\mu}(\bar{\mathbf{S}})\mathbf{1}^\top\tilde{\mathbf{A}}$ (zero because $\mathbf{1}^\top\tilde{\mathbf{A}} = \mathbf{0}$, as the footnote says); the result $\bar{\mathbf{S}}^\top\tilde{\mathbf{A}}$ is right",
    identity="bc_weight_gradient_uses_centered_activations",
)


def _generic_batch_norm(X: sp.Matrix, means: sp.Matrix, stds: sp.Matrix) -> sp.Matrix:
    """Eq. (11) with the statistics replaced by the given columns."""
    return _divide_columns(X - _ones(X.rows) * means.T, stds)


@cache
def _batch_norm_case(batch: int) -> tuple[sp.Matrix, sp.Matrix]:
    return matrix("x", batch, D_OUT), matrix("xtbar", batch, D_OUT)


@cache
def _direct_path_derived(batch: int) -> sp.Matrix:
    """Backprop through BN with the statistics held fixed: differentiate with independent
    symbols for ``mu`` and ``sigma``, then put the batch statistics back."""
    X, X_tilde_bar = _batch_norm_case(batch)
    means = sp.Matrix(sp.symbols(f"mu1:{D_OUT + 1}", real=True))
    stds = sp.Matrix(sp.symbols(f"sigma1:{D_OUT + 1}", positive=True))
    derived = vjp(_generic_batch_norm(X, means, stds), X, X_tilde_bar)
    values = dict(zip(means, batch_mean(X))) | dict(zip(stds, batch_std(X)))
    return derived.xreplace(values)


identity(
    name="bn_backprop_direct_path",
    topic="normalization",
    source="001 Eq. (12)",
    statement=r"\bar{\mathbf{X}}\big|_{\text{direct}}"
    r" = \bar{\tilde{\mathbf{X}}} \oslash \mathbf{1}\boldsymbol{\sigma}(\mathbf{X})^\top",
    claim=_direct_path_derived,
    expected=lambda n: batch_norm_direct_path(*_batch_norm_case(n)),
    control=lambda n: _batch_norm_case(n)[1],
    sizes=(2, 3),
    simplifier=reduce_radicals,
)


@cache
def _batch_norm_vjp_derived(batch: int) -> sp.Matrix:
    X, X_tilde_bar = _batch_norm_case(batch)
    return vjp(batch_norm(X), X, X_tilde_bar)


identity(
    name="bn_backprop_direct_and_statistics_paths",
    topic="normalization",
    source="001 Sec. 4 (Eq. 11-12 and Fig. 4)",
    statement=r"\bar{\mathbf{X}} = \big[\bar{\tilde{\mathbf{X}}}"
    r" - \mathbf{1}\boldsymbol{\mu}(\bar{\tilde{\mathbf{X}}})^\top"
    r" - \tilde{\mathbf{X}}\odot"
    r"\mathbf{1}\boldsymbol{\mu}(\tilde{\mathbf{X}}\odot\bar{\tilde{\mathbf{X}}})^\top\big]"
    r" \oslash \mathbf{1}\boldsymbol{\sigma}(\mathbf{X})^\top",
    claim=_batch_norm_vjp_derived,
    expected=lambda n: batch_norm_vjp(*_batch_norm_case(n)),
    control=lambda n: batch_norm_direct_path(*_batch_norm_case(n)),
    sizes=(3,),
    simplifier=reduce_radicals,
    note="Batch size 3, D = 2 (with 2 examples BN outputs +-1 and its derivative is zero almost "
    "everywhere). The notes name the two paths but write only the direct one (Eq. 12); the "
    "statistics path subtracts the mean of the incoming gradient (as for BC, Eq. 14) and its "
    "component along the normalized activations. The control is the direct path alone.",
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
    A = batch_center(matrix("z", OUTLIER_BATCH, width)) + _ones(OUTLIER_BATCH) * m.T
    change = A * unvec(direction, width).T  # (B, D_out)
    return change, batch_center(change)


def _outlier_expected(width: int) -> tuple[sp.Matrix, sp.Matrix]:
    m, v = vector("m", width), vector("v", width)
    kept = batch_center(matrix("z", OUTLIER_BATCH, width)) * m * v.T  # A_tilde m v^T
    return kept + m.dot(m) * _ones(OUTLIER_BATCH) * v.T, kept


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
