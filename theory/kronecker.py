"""Kronecker algebra used by K-FAC, and the outlier eigenvalue that internal covariate shift (ICS)
puts into the K-FAC curvature block.

Sources: 003 slides, 'K-FAC: Kronecker Product' (vec, mixed product, transpose, inverse, spectral
decomposition), 'Modeling the Pseudo-Gradients' and 'Efficient Computation'; 001 Sec. 3 (Eq. 5 and
the ICS Conditioning Hypothesis), 001 Sec. 3.1 (the m = 0.1 example), 001 Sec. 4.2.

Conventions, as in 003: ``vec`` stacks *columns*; a layer's weight ``W`` is ``out x in``, its
pseudo-gradient ``DW = Ds a^T`` and ``vec(DW) = a (x) Ds``, so the K-FAC block is
``A (x) S`` with ``A = E[a a^T]`` (001 Eq. 5). ``mu = ||m||^2`` for an activation mean ``m``.

The outlier: activations with mean ``m`` and covariance ``I`` have the uncentered second moment
``I + m m^T``, with eigenvalue ``1 + ||m||^2`` along ``m`` and 1 elsewhere (exact). With the
homogeneous coordinate that K-FAC and the notes' linear-regression Hessian use, the matrix is
``[[I + m m^T, m], [m^T, 1]]`` and the outlier is the larger root of
``nu^2 - (2 + mu) nu + 1 = 0``: ``||m||^2 + 2 - O(1/||m||^2)``, not ``1 + ||m||^2``.
"""

from __future__ import annotations

from functools import cache

import sympy as sp
from sympy import kronecker_product as kron

from scalewise.theory.adaptive import standardized_expectation
from scalewise.theory.identity import identity, slip, unpack
from scalewise.theory.symbolic import matrix, symmetric, vec, vector

norm_sq, nu = sp.symbols("mu nu", positive=True)

OUTLIER_EIGENVALUE = 1 + norm_sq
"""Outlier eigenvalue of ``E[a a^T] = I + m m^T`` (mean ``m``, covariance ``I``),
``mu = ||m||^2``."""

HOMOGENEOUS_OUTLIER_EIGENVALUE = (2 + norm_sq + sp.sqrt(norm_sq * (norm_sq + 4))) / 2
"""Outlier eigenvalue of ``E[(a,1)(a,1)^T]``: the larger root of ``nu^2 - (2+mu) nu + 1``."""

HOMOGENEOUS_OUTLIER_POLYNOMIAL = nu**2 - (2 + norm_sq) * nu + 1
"""The factor of the characteristic polynomial of ``E[(a,1)(a,1)^T]`` that holds both
eigenvalues other than 1; its roots multiply to 1, so the outlier comes with a small
eigenvalue ``1/nu``."""


def diagonalizable(name: str, dim: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """``(M, P, D)`` with ``M = P D P^{-1}``: a generic diagonalizable matrix built from a generic
    eigenvector matrix ``P`` and eigenvalues ``D = diag(name_eig_i)``."""
    basis = matrix(f"{name}P", dim, dim)
    values = sp.diag(*sp.symbols(f"{name}_eig1:{dim + 1}", real=True))
    return (basis * values * basis.inv()).applyfunc(sp.cancel), basis, values


def homogeneous_second_moment(mean: sp.Matrix, scale: sp.Matrix) -> sp.Matrix:
    """``E[a_bar a_bar^T]`` for ``a_bar = (a, 1)`` and ``a = mean + scale z`` with standardized
    noise ``z``: the K-FAC factor ``A`` with a homogeneous coordinate (003 'Modeling the
    Pseudo-Gradients'), whose activations have mean ``mean`` and covariance ``scale scale^T``."""
    noise = list(sp.symbols(f"z1:{len(mean) + 1}"))
    a_bar = (mean + scale * sp.Matrix(noise)).col_join(sp.Matrix([1]))
    return standardized_expectation(a_bar * a_bar.T, noise)


# ---------------------------------------------------------------- Kronecker algebra (003)


def _product_shapes(n: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """Conformable rectangular ``A (n x n+1)``, ``X (n+1 x 2)``, ``B (2 x n)``."""
    return matrix("A", n, n + 1), matrix("X", n + 1, 2), matrix("B", 2, n)


identity(
    name="kron_vec_of_product",
    topic="kronecker",
    source="003 slides, 'K-FAC: Kronecker Product'",
    statement=r"\mathrm{vec}(\mathbf{A}\mathbf{X}\mathbf{B}) = (\mathbf{B}^\top\otimes\mathbf{A})\,"
    r"\mathrm{vec}(\mathbf{X})\quad(\mathrm{vec}\text{ stacks columns})",
    claim=unpack(_product_shapes, lambda A, X, B: vec(A * X * B)),
    expected=unpack(_product_shapes, lambda A, X, B: kron(B.T, A) * vec(X)),
    control=unpack(_product_shapes, lambda A, X, B: kron(A, B.T) * vec(X)),
    sizes=(1, 2, 3),
    simplifier=sp.expand,
    note="Rectangular A (n x n+1), X (n+1 x 2), B (2 x n).",
)

identity(
    name="kron_vec_of_outer_product",
    topic="kronecker",
    source="003 slides, 'K-FAC: Kronecker Product'",
    statement=r"\mathrm{vec}(\mathbf{u}\mathbf{v}^\top) = \mathbf{v}\otimes\mathbf{u}",
    claim=lambda n: vec(vector("u", n) * vector("v", n + 1).T),
    expected=lambda n: kron(vector("v", n + 1), vector("u", n)),
    control=lambda n: kron(vector("u", n), vector("v", n + 1)),
    sizes=(1, 2, 3),
    simplifier=sp.expand,
    note="This fixes the order of every Kronecker factor below: vec(Ds a^T) = a (x) Ds.",
)


def _mixed(n: int) -> tuple[sp.Matrix, ...]:
    """Conformable ``A (n x 2)``, ``B (2 x n)``, ``C (2 x n)``, ``D (n x 2)``."""
    return matrix("A", n, 2), matrix("B", 2, n), matrix("C", 2, n), matrix("D", n, 2)


identity(
    name="kron_mixed_product",
    topic="kronecker",
    source="003 slides, 'K-FAC: Kronecker Product' (matrix multiplication)",
    statement=r"(\mathbf{A}\otimes\mathbf{B})(\mathbf{C}\otimes\mathbf{D})"
    r" = \mathbf{A}\mathbf{C}\otimes\mathbf{B}\mathbf{D}",
    claim=unpack(_mixed, lambda A, B, C, D: kron(A, B) * kron(C, D)),
    expected=unpack(_mixed, lambda A, B, C, D: kron(A * C, B * D)),
    control=unpack(_mixed, lambda A, B, C, D: kron(B * D, A * C)),
    sizes=(1, 2),
    simplifier=sp.expand,
)

identity(
    name="kron_transpose",
    topic="kronecker",
    source="003 slides, 'K-FAC: Kronecker Product' (matrix transpose)",
    statement=r"(\mathbf{A}\otimes\mathbf{B})^\top = \mathbf{A}^\top\otimes\mathbf{B}^\top",
    claim=lambda n: kron(matrix("A", n, n + 1), matrix("B", 2, n)).T,
    expected=lambda n: kron(matrix("A", n, n + 1).T, matrix("B", 2, n).T),
    control=lambda n: kron(matrix("B", 2, n).T, matrix("A", n, n + 1).T),
    sizes=(1, 2),
    simplifier=sp.expand,
)

identity(
    name="kron_inverse",
    topic="kronecker",
    source="003 slides, 'K-FAC: Kronecker Product' (matrix inversion)",
    statement=r"(\mathbf{A}\otimes\mathbf{B})(\mathbf{A}^{-1}\otimes\mathbf{B}^{-1}) = \mathbf{I}"
    r"\;\Leftrightarrow\;(\mathbf{A}\otimes\mathbf{B})^{-1} = \mathbf{A}^{-1}\otimes\mathbf{B}^{-1}",
    claim=lambda n: kron(matrix("A", n, n), matrix("B", 2, 2))
    * kron(matrix("A", n, n).inv(), matrix("B", 2, 2).inv()),
    expected=lambda n: sp.eye(2 * n),
    control=lambda n: kron(matrix("A", n, n), matrix("B", 2, 2))
    * kron(matrix("A", n, n).inv(), matrix("B", 2, 2)),
    sizes=(1, 2),
    simplifier=sp.cancel,
    note="Generic invertible A (n x n) and B (2 x 2); the product is computed entry by entry.",
)


def _kfac_solve_sides(n: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """Symmetric ``A (n x n)``, ``S (2 x 2)`` and a gradient ``V (2 x n)`` (out x in)."""
    return symmetric("A", n), symmetric("S", 2), matrix("V", 2, n)


def _kfac_solve_product(n: int, right) -> sp.Matrix:
    """``(A (x) S) vec(S^{-1} V right(A))``: ``vec(V)`` when ``right(A) = A^{-1}``."""
    A, S, V = _kfac_solve_sides(n)
    return kron(A, S) * vec(S.inv() * V * right(A))


identity(
    name="kfac_kronecker_solve",
    topic="kronecker",
    source="003 slides, 'K-FAC: Efficient Computation'",
    statement=r"(\mathbf{A}\otimes\mathbf{S})\,\mathrm{vec}(\mathbf{S}^{-1}\mathbf{V}\mathbf{A}^{-1})"
    r" = \mathrm{vec}(\mathbf{V})\quad(\mathbf{A},\mathbf{S}\text{ symmetric})",
    claim=lambda n: _kfac_solve_product(n, lambda A: A.inv()),
    expected=lambda n: vec(_kfac_solve_sides(n)[2]),
    control=lambda n: _kfac_solve_product(n, lambda A: A),
    sizes=(1, 2),
    simplifier=sp.cancel,
    note="The K-FAC step never forms the Kronecker product: two small solves suffice. The "
    "control keeps A un-inverted.",
)


@cache
def _kron_spectral(n: int) -> tuple[sp.ImmutableMatrix, ...]:
    """``(A, P, D, B, Q, E)``: generic diagonalizable ``A = P D P^{-1}`` (n x n) and
    ``B = Q E Q^{-1}`` (2 x 2)."""
    return tuple(sp.ImmutableMatrix(M) for M in (*diagonalizable("A", n), *diagonalizable("B", 2)))


def _kron_sum_candidate(A, P, D, B, Q, E) -> sp.Matrix:
    """``(P (x) Q)(D (x) I + I (x) E)``: eigenvalues added instead of multiplied."""
    return kron(P, Q) * (kron(D, sp.eye(E.rows)) + kron(sp.eye(D.rows), E))


identity(
    name="kron_eigenpairs",
    topic="kronecker",
    source="003 slides, 'K-FAC: Kronecker Product' (spectral decomposition)",
    statement=r"\mathbf{A}\mathbf{r}_i = \lambda_i\mathbf{r}_i,\ \mathbf{B}\mathbf{s}_j = \nu_j\mathbf{s}_j"
    r"\;\Rightarrow\;(\mathbf{A}\otimes\mathbf{B})(\mathbf{r}_i\otimes\mathbf{s}_j)"
    r" = \lambda_i\nu_j\,(\mathbf{r}_i\otimes\mathbf{s}_j)",
    claim=unpack(_kron_spectral, lambda A, P, D, B, Q, E: kron(A, B) * kron(P, Q)),
    expected=unpack(_kron_spectral, lambda A, P, D, B, Q, E: kron(P, Q) * kron(D, E)),
    control=lambda n: _kron_sum_candidate(*_kron_spectral(n)),
    sizes=(1, 2),
    simplifier=sp.cancel,
    note="Column (i, j) of P (x) Q is r_i (x) s_j and D (x) E is diagonal with entries "
    "lambda_i nu_j: a full eigendecomposition of A (x) B for generic diagonalizable A (n x n) "
    "and B (2 x 2), so its eigenvalues are exactly the products. The control uses sums "
    "(the Kronecker sum's eigenvalues).",
)


def _pseudo_gradient_block(n: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """``vec(DW) vec(DW)^T`` for ``DW = Ds a^T``, with ``a`` of size n+1 and ``Ds`` of size n."""
    a, ds = vector("a", n + 1), vector("ds", n)
    grad = vec(ds * a.T)
    return grad * grad.T, a * a.T, ds * ds.T


identity(
    name="kfac_block_kronecker_order",
    topic="kronecker",
    source="003 slides, 'K-FAC: Modeling the Pseudo-Gradients'; 001 Eq. (5)",
    statement=r"\mathrm{vec}(\mathcal{D}\mathbf{s}\,\mathbf{a}^\top)\mathrm{vec}(\mathcal{D}\mathbf{s}\,"
    r"\mathbf{a}^\top)^\top = \mathbf{a}\mathbf{a}^\top\otimes\mathcal{D}\mathbf{s}\mathcal{D}\mathbf{s}^\top",
    claim=lambda n: _pseudo_gradient_block(n)[0],
    expected=lambda n: kron(_pseudo_gradient_block(n)[1], _pseudo_gradient_block(n)[2]),
    control=lambda n: kron(_pseudo_gradient_block(n)[2], _pseudo_gradient_block(n)[1]),
    sizes=(1, 2),
    simplifier=sp.expand,
    note="Per example, before any independence assumption; taking expectations with a independent "
    "of Ds gives A (x) S, in this order for column-stacking vec.",
)

# ---------------------------------------------------------------- ICS outlier (001 Sec. 3)


def _centered_case(n: int) -> tuple[sp.Matrix, sp.Expr]:
    """``E[a a^T]`` for activations with mean ``m`` and covariance ``I`` (derived), and
    ``||m||^2``."""
    m = vector("m", n)
    second = homogeneous_second_moment(m, sp.eye(n))[:n, :n]
    return second, (m.T * m)[0]


_lam = sp.Symbol("lambda")

identity(
    name="ics_second_moment_spectrum",
    topic="kronecker",
    source="001 Sec. 3 (ICS Conditioning Hypothesis, nu = ||m||^2 + 1)",
    statement=r"\mathbb{E}[\mathbf{a}\mathbf{a}^\top] = \mathbf{I} + \mathbf{m}\mathbf{m}^\top,\quad"
    r"\det(\lambda\mathbf{I} - \mathbb{E}[\mathbf{a}\mathbf{a}^\top])"
    r" = (\lambda - 1)^{n-1}(\lambda - 1 - \|\mathbf{m}\|^2)",
    claim=lambda n: _centered_case(n)[0].charpoly(_lam).as_expr(),
    expected=lambda n: (_lam - 1) ** (n - 1)
    * (_lam - OUTLIER_EIGENVALUE.subs(norm_sq, _centered_case(n)[1])),
    control=lambda n: (_lam - 1) ** (n - 1) * (_lam - _centered_case(n)[1]),
    sizes=(1, 2, 3),
    simplifier=sp.expand,
    note="Activations with mean m and covariance I: one outlier 1 + ||m||^2, all other "
    "eigenvalues exactly 1.",
)

identity(
    name="ics_outlier_eigenvector",
    topic="kronecker",
    source="001 Sec. 3 (ICS Conditioning Hypothesis)",
    statement=r"(\mathbf{I} + \mathbf{m}\mathbf{m}^\top)\,\mathbf{m} = (1 + \|\mathbf{m}\|^2)\,\mathbf{m}",
    claim=lambda n: _centered_case(n)[0] * vector("m", n),
    expected=lambda n: OUTLIER_EIGENVALUE.subs(norm_sq, _centered_case(n)[1]) * vector("m", n),
    control=lambda n: _centered_case(n)[1] * vector("m", n),
    sizes=(1, 2, 3),
    simplifier=sp.expand,
)


def _homogeneous_case(n: int) -> tuple[sp.Matrix, sp.Expr]:
    """``E[(a,1)(a,1)^T]`` for mean ``m`` and covariance ``I`` (derived), and ``||m||^2``."""
    m = vector("m", n)
    return homogeneous_second_moment(m, sp.eye(n)), (m.T * m)[0]


identity(
    name="ics_homogeneous_spectrum",
    topic="kronecker",
    source="001 Sec. 3 (Hessian with a homogeneous coordinate); 003 'Modeling the Pseudo-Gradients'",
    statement=r"\det\!\left(\lambda\mathbf{I} - \begin{pmatrix}\mathbf{I}+\mathbf{m}\mathbf{m}^\top"
    r" & \mathbf{m}\\ \mathbf{m}^\top & 1\end{pmatrix}\right)"
    r" = (\lambda-1)^{n-1}\left(\lambda^2 - (2+\|\mathbf{m}\|^2)\lambda + 1\right)",
    claim=lambda n: _homogeneous_case(n)[0].charpoly(_lam).as_expr(),
    expected=lambda n: (_lam - 1) ** (n - 1)
    * HOMOGENEOUS_OUTLIER_POLYNOMIAL.subs({nu: _lam, norm_sq: _homogeneous_case(n)[1]}),
    control=lambda n: (_lam - 1) ** n
    * (_lam - OUTLIER_EIGENVALUE.subs(norm_sq, _homogeneous_case(n)[1])),
    sizes=(1, 2, 3),
    simplifier=sp.expand,
    note="The control is the notes' claim (outlier 1 + ||m||^2, the rest 1): it is rejected. "
    "The two non-unit eigenvalues multiply to 1.",
)

identity(
    name="ics_homogeneous_outlier",
    topic="kronecker",
    source="001 Sec. 3 (outlier eigenvalue of magnitude 1 + ||m||^2)",
    statement=r"\nu = \tfrac{1}{2}\left(2+\|\mathbf{m}\|^2+\sqrt{\|\mathbf{m}\|^2(\|\mathbf{m}\|^2+4)}\right)"
    r"\text{ solves } \nu^2-(2+\|\mathbf{m}\|^2)\nu+1=0;\quad"
    r"\lim_{\|\mathbf{m}\|\to\infty}\left(\nu - \|\mathbf{m}\|^2\right) = 2",
    claim=lambda: (
        max(sp.solve(HOMOGENEOUS_OUTLIER_POLYNOMIAL, nu), key=lambda r: r.subs(norm_sq, 1)),
        sp.limit(HOMOGENEOUS_OUTLIER_EIGENVALUE - norm_sq, norm_sq, sp.oo),
    ),
    expected=lambda: (HOMOGENEOUS_OUTLIER_EIGENVALUE, sp.Integer(2)),
    control=lambda: (HOMOGENEOUS_OUTLIER_EIGENVALUE, sp.Integer(1)),
    note="1 + ||m||^2 is exact only without the homogeneous coordinate; with it the outlier is "
    "||m||^2 + 2 - O(1/||m||^2), and its partner eigenvalue 1/nu ~ 1/||m||^2 makes the "
    "condition number nu^2.",
)

def homogeneous_outlier_eigenvector(mean: sp.Matrix) -> sp.Matrix:
    """Eigenvector ``(m, nu - 1 - ||m||^2)`` of ``E[(a,1)(a,1)^T]`` for its outlier ``nu``
    (activations with mean ``mean`` and covariance ``I``); unnormalized."""
    mean_sq = (mean.T * mean)[0]
    outlier = HOMOGENEOUS_OUTLIER_EIGENVALUE.subs(norm_sq, mean_sq)
    return mean.col_join(sp.Matrix([outlier - 1 - mean_sq]))


identity(
    name="ics_homogeneous_outlier_eigenvector",
    topic="kronecker",
    source="001 Sec. 3 (outlier eigenvector); 003 'Modeling the Pseudo-Gradients'",
    statement=r"\begin{pmatrix}\mathbf{I}+\mathbf{m}\mathbf{m}^\top & \mathbf{m}\\ \mathbf{m}^\top & 1\end{pmatrix}"
    r"\begin{pmatrix}\mathbf{m}\\ \nu-1-\|\mathbf{m}\|^2\end{pmatrix}"
    r" = \nu\begin{pmatrix}\mathbf{m}\\ \nu-1-\|\mathbf{m}\|^2\end{pmatrix}",
    claim=lambda n: _homogeneous_case(n)[0] * homogeneous_outlier_eigenvector(vector("m", n)),
    expected=lambda n: HOMOGENEOUS_OUTLIER_EIGENVALUE.subs(norm_sq, _homogeneous_case(n)[1])
    * homogeneous_outlier_eigenvector(vector("m", n)),
    control=lambda n: HOMOGENEOUS_OUTLIER_EIGENVALUE.subs(norm_sq, _homogeneous_case(n)[1])
    * vector("m", n).col_join(sp.Matrix([1])),
    sizes=(1, 2, 3),
    simplifier=sp.expand,
    note="The outlier direction is m with a homogeneous component nu - 1 - ||m||^2 -> 1 as "
    "||m|| grows; in the K-FAC block it pairs with every eigenvector v of S as "
    "(m, nu - 1 - ||m||^2) (x) v.",
)

slip(
    seed="001",
    place="Sec. 3, first paragraph (H with a homogeneous coordinate)",
    says=r"$\mathbf{H}$ has a large outlier eigenvalue of magnitude $1 + \|\mathbf{m}\|^2$",
    truth=r"with the homogeneous coordinate the outlier is the larger root of $\nu^2 - (2+\|\mathbf{m}\|^2)\nu + 1 = 0$, i.e. $\|\mathbf{m}\|^2 + 2 - O(\|\mathbf{m}\|^{-2})$, paired with a small eigenvalue $1/\nu$; $1 + \|\mathbf{m}\|^2$ is exact for $\mathbb{E}[\mathbf{a}\mathbf{a}^\top]$ without it (unit feature covariance)",
    identity="ics_homogeneous_outlier",
)


def _kfac_outlier(n: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix, sp.Expr, sp.Expr]:
    """``A (x) S`` with ``A = I + m m^T`` (size n+1, derived) and a diagonalizable ``S`` (2 x 2)
    with eigenpair ``(lambda_1, v)``; returns the block, ``m``, ``v``, ``nu``, ``lambda_1``."""
    A, mean_sq = _centered_case(n + 1)
    S, basis, values = diagonalizable("S", 2)
    outlier = OUTLIER_EIGENVALUE.subs(norm_sq, mean_sq)
    return kron(A, S), vector("m", n + 1), basis[:, 0], outlier, values[0, 0]


identity(
    name="ics_kfac_outlier_eigenpairs",
    topic="kronecker",
    source="001 Sec. 3 (ICS Conditioning Hypothesis) and Eq. (5)",
    statement=r"\mathbf{S}\mathbf{v} = \lambda\mathbf{v}\;\Rightarrow\;"
    r"(\mathbf{A}\otimes\mathbf{S})(\mathbf{m}\otimes\mathbf{v}) = (1+\|\mathbf{m}\|^2)\lambda\,"
    r"(\mathbf{m}\otimes\mathbf{v}),\quad \mathbf{A} = \mathbf{I} + \mathbf{m}\mathbf{m}^\top",
    claim=unpack(_kfac_outlier, lambda G, m, v, nu_, lam_: G * kron(m, v)),
    expected=unpack(_kfac_outlier, lambda G, m, v, nu_, lam_: nu_ * lam_ * kron(m, v)),
    control=unpack(_kfac_outlier, lambda G, m, v, nu_, lam_: nu_ * lam_ * kron(v, m)),
    sizes=(1, 2),
    simplifier=sp.cancel,
    note="Activation dimension n+1, output dimension 2. The control is the Sec. 4.2 order "
    "v (x) m, which is not an eigenvector of A (x) S for column-stacking vec.",
)

slip(
    seed="001",
    place="Sec. 4.2, paragraph after the batch gradient ('outlier eigenvectors are of the form v (x) m')",
    says=r"the outlier eigenvectors are of the form $\mathbf{v}\otimes\mathbf{m}$",
    truth=r"with column-stacking vec and $\hat{\mathbf{G}} = \mathbf{A}\otimes\mathbf{S}$ (Eq. 5) they are $\mathbf{m}\otimes\mathbf{v}$, as Sec. 3 states ($= \mathrm{vec}(\mathbf{v}\mathbf{m}^\top)$); $\mathbf{v}\otimes\mathbf{m}$ is the row-stacking form",
    identity="ics_kfac_outlier_eigenpairs",
)


def _example(n: int) -> tuple[sp.Expr, tuple[sp.Expr, ...]]:
    """Sec. 3.1 example in dimension n: Sigma = I, m = 0.1 * 1. Returns the largest eigenvalue
    of Sigma + m m^T and its diagonal entries."""
    m = sp.Matrix([sp.Rational(1, 10)] * n)
    second = homogeneous_second_moment(m, sp.eye(n))[:n, :n]
    return max(second.eigenvals()), tuple(second.diagonal())


identity(
    name="ics_example_outlier",
    topic="kronecker",
    source="001 Sec. 3.1 (example: Sigma = I, entries of m all 0.1)",
    statement=r"\mathbf{\Sigma} = \mathbf{I},\ \mathbf{m} = 0.1\cdot\mathbf{1}\in\mathbb{R}^M:\ "
    r"\lambda_{\max}(\mathbf{\Sigma}+\mathbf{m}\mathbf{m}^\top) = 1 + 0.01M,\quad"
    r"\text{diagonal entries } 1.01",
    claim=lambda n: _example(n),
    expected=lambda n: (1 + sp.Rational(n, 100), (sp.Rational(101, 100),) * n),
    control=lambda n: (sp.Rational(n, 10), (sp.Rational(11, 10),) * n),
    sizes=(2, 3, 4),
    note="The control is the notes' statement (outliers 0.1M, diagonal 1.1).",
)

slip(
    seed="001",
    place="Sec. 3.1, example in parentheses (Sigma = I, entries of m all 0.1)",
    says=r"outlier eigenvalues of $0.1M$; diagonal entries all $1.1$",
    truth=r"$\|\mathbf{m}\|^2 = 0.01M$, so the outlier is $1 + 0.01M$ and the diagonal entries are $1 + 0.1^2 = 1.01$ (the stated numbers are those of entries $m_i^2 = 0.1$); the point stands: the outlier grows linearly in $M$ while the diagonal does not (with the homogeneous coordinate the outlier is $0.01M + 2 - O(1/M)$, see `ics_homogeneous_outlier`)",
    identity="ics_example_outlier",
)


# ---------------------------------------------------------------- NumPy forms for sim/ and models/

outlier_eigenvalue = sp.lambdify(norm_sq, OUTLIER_EIGENVALUE, "numpy")
homogeneous_outlier_eigenvalue = sp.lambdify(norm_sq, HOMOGENEOUS_OUTLIER_EIGENVALUE, "numpy")
