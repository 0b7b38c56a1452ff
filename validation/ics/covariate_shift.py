"""Internal covariate shift in the K-FAC factor ``A = E[a a^T]`` of a layer (001 Sec. 3, Eq. 5,
and the ICS Conditioning Hypothesis; 001 Sec. 3.1, the m = 0.1 example): input activations with
mean ``m`` and covariance ``I`` make the uncentered second moment ``I + m m^T``, whose outlier
eigenvalue ``1 + ||m||^2`` (:data:`theory.kronecker.OUTLIER_EIGENVALUE`) grows with the mean;
with K-FAC's homogeneous coordinate the outlier is the larger root of
``nu^2 - (2 + ||m||^2) nu + 1`` (:data:`theory.kronecker.HOMOGENEOUS_OUTLIER_EIGENVALUE`).

:func:`outlier_curves` estimates both factors from sampled activations (the quantity a K-FAC
optimizer accumulates) and sets them beside theory's closed forms.
"""

from __future__ import annotations

import pandas as pd
import sympy as sp
import torch

from scalewise import checks
from scalewise.theory import kronecker

_OUTLIER = sp.lambdify(kronecker.norm_sq, kronecker.OUTLIER_EIGENVALUE, "numpy")
_HOMOGENEOUS = sp.lambdify(kronecker.norm_sq, kronecker.HOMOGENEOUS_OUTLIER_EIGENVALUE, "numpy")


def second_moment(activations: torch.Tensor, *, homogeneous: bool) -> torch.Tensor:
    """K-FAC's input factor ``A = E[a a^T]`` (001 Eq. 5) of ``activations`` (samples, dim),
    with a trailing 1 appended to each ``a`` when ``homogeneous`` (the bias coordinate)."""
    if homogeneous:
        ones = torch.ones_like(activations[:, :1])
        activations = torch.cat([activations, ones], dim=1)  # (samples, dim + 1)
    return activations.T @ activations / activations.shape[0]  # (dim[+1], dim[+1])


def shifted_activations(mean_norm: float, *, dim: int, samples: int,
                        generator: torch.Generator) -> torch.Tensor:
    """``samples`` activations (samples, dim) from ``N(m, I)`` with ``m = mean_norm / sqrt(dim)
    * 1``, so ``||m|| = mean_norm`` (the constant shift of every unit that ICS describes)."""
    checks.integer("dim", dim, 2)
    checks.integer("samples", samples, 2)
    checks.number("mean_norm", mean_norm, 0.0)
    noise = torch.randn(samples, dim, generator=generator, dtype=torch.float64)
    return noise + mean_norm / dim**0.5


def shifted_second_moment(moment: torch.Tensor, mean_norm: float) -> torch.Tensor:
    """The homogeneous factor of ``a + m`` from the homogeneous factor ``moment`` of ``a``
    (:func:`second_moment`), with ``m = mean_norm / sqrt(dim) * 1``: ``(a + m, 1) = T (a, 1)``
    with ``T = [[I, m], [0, 1]]``, so the factor is ``T moment T^T`` exactly; its leading
    ``dim x dim`` block is the plain factor."""
    checks.number("mean_norm", mean_norm, 0.0)
    dim = moment.shape[0] - 1
    shift = torch.eye(dim + 1, dtype=moment.dtype)
    shift[:-1, -1] = mean_norm / dim**0.5
    return shift @ moment @ shift.T


def outlier_curves(mean_norms: tuple[float, ...], *, dim: int = 32, samples: int = 4096,
                   seed: int = 0) -> pd.DataFrame:
    """Per ``||m||`` of ``mean_norms``: the largest eigenvalue of ``A`` estimated from
    ``samples`` sampled activations (``measured``, ``measured_homogeneous``) and theory's
    ``1 + ||m||^2`` and homogeneous outlier (``theory``, ``theory_homogeneous``).
    The sampled estimate carries ``O(sqrt(dim / samples))`` sampling error. One draw of the
    activations serves every ``||m||``, shifted by each (common random numbers, so the curves
    are smooth in ``||m||``); its factor is computed once and shifted exactly
    (:func:`shifted_second_moment`)."""
    generator = torch.Generator().manual_seed(seed)
    moment = second_moment(shifted_activations(0.0, dim=dim, samples=samples,
                                               generator=generator), homogeneous=True)
    rows = []
    for mean_norm in mean_norms:
        factor = shifted_second_moment(moment, mean_norm)
        mu = mean_norm**2
        rows.append({
            "mean_norm": mean_norm,
            "measured": float(torch.linalg.eigvalsh(factor[:-1, :-1])[-1]),
            "measured_homogeneous": float(torch.linalg.eigvalsh(factor)[-1]),
            "theory": float(_OUTLIER(mu)),
            "theory_homogeneous": float(_HOMOGENEOUS(mu)),
        })
    return pd.DataFrame(rows)
