"""Scale-invariant losses, and gradient noise correlated across steps, for the sphere engine's
loss-driven mode.

A loss is given to the engine as its gradient at unit-norm points: a callable mapping ``w_hat``
of shape ``(..., dim)`` with ``||w_hat|| = 1`` to ``grad J(w_hat)`` of the same shape. The engine
applies ``grad J(w) = grad J(w_hat) / ||w||`` (001 Eq. 18, homogeneity of degree -1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalewise import checks


@dataclass(frozen=True, eq=False)
class RayleighQuotient:
    """``J(w) = w^T A w / w^T w`` for a symmetric ``A`` (``(dim, dim)``): invariant to the scale
    of ``w`` (degree 0), like a layer followed by batch normalization (001 Sec. 4.3). At a unit
    vector its gradient ``2 (A w_hat - J(w_hat) w_hat)`` is tangent to the sphere (001 Eq. 16).
    """

    matrix: np.ndarray
    _matrix: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        a = checks.real("matrix", self.matrix)
        if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.allclose(a, a.T, rtol=0, atol=1e-12):
            checks.fail("matrix", a, "a symmetric square matrix")
        object.__setattr__(self, "_matrix", a)

    @property
    def dim(self) -> int:
        return self._matrix.shape[0]

    def value(self, w: np.ndarray) -> np.ndarray:
        """``J(w)`` for ``w`` of shape ``(..., dim)`` (any nonzero norm)."""
        aw = w @ self._matrix  # (..., dim); A is symmetric
        return np.einsum("...d,...d->...", w, aw) / np.einsum("...d,...d->...", w, w)

    def __call__(self, w_hat: np.ndarray) -> np.ndarray:
        """``grad J(w_hat)`` at unit vectors ``w_hat`` (``(..., dim)``)."""
        aw = w_hat @ self._matrix  # (..., dim)
        return 2 * (aw - np.einsum("...d,...d->...", w_hat, aw)[..., None] * w_hat)


class CorrelatedNoise:
    """Gradient noise correlated across steps, for the sphere engine's loss-driven mode: unit
    gradient directions tangent at each ``w_hat``, the normalized tangent part of a Gaussian
    AR(1) process ``z_k = c z_{k-1} + sqrt(1 - c^2) xi_k`` (``xi_k`` standard normal, ``z_0 =
    xi_0``), so that consecutive directions have lag-1 correlation ``c`` (for large ``dim`` and
    small steps; ``c = 0`` is the engine's own independent noise). Stateful: one instance drives
    one run, called once per step. ``seed`` draws from its own stream (the engine's initial
    directions come from ``default_rng(seed)``; this noise from ``default_rng([seed, 1])``).

    >>> noise = CorrelatedNoise(0.5, seed=0)
    >>> w_hat = np.eye(3)[None, :1]  # one unit vector in 3 dimensions
    >>> g = noise(w_hat)
    >>> float(np.linalg.norm(g)), float(g[0, 0, 0])
    (1.0, 0.0)
    """

    def __init__(self, correlation: float, seed: int = 0) -> None:
        self.correlation = checks.number("correlation", correlation, -1.0, 1.0, low_open=True)
        self._rng = np.random.default_rng([checks.integer("seed", seed, 0), 1])
        self._z: np.ndarray | None = None

    def __call__(self, w_hat: np.ndarray) -> np.ndarray:
        xi = self._rng.standard_normal(w_hat.shape)
        c = self.correlation
        self._z = xi if self._z is None else c * self._z + np.sqrt(1 - c * c) * xi
        tangent = self._z - np.einsum("...d,...d->...", self._z, w_hat)[..., None] * w_hat
        return tangent / np.linalg.norm(tangent, axis=-1, keepdims=True)
