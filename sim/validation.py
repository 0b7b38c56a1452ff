"""Input checks shared by the simulators: each failure is a ``ValueError`` naming the parameter
and the allowed range, raised before any work or allocation."""

from __future__ import annotations

from typing import Any

import numpy as np


def finite_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array; every entry must be a finite real number."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a real number or an array of them, got {value!r}"
        ) from error
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no nan or inf), got {value!r}")
    return array


def positive_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array of finite entries ``> 0``."""
    array = finite_array(name, value)
    if np.any(array <= 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return array


def nonnegative_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array of finite entries ``>= 0``."""
    array = finite_array(name, value)
    if np.any(array < 0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return array


def unit_interval_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array of finite entries in ``[0, 1)`` (decay rates, momenta)."""
    array = finite_array(name, value)
    if np.any((array < 0) | (array >= 1)):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return array


def scalar(name: str, value: Any, check: Any = finite_array) -> float:
    """A single number passed through ``check`` (one of the array checks above)."""
    array = check(name, value)
    if array.ndim != 0:
        raise ValueError(f"{name} must be a single number, got an array of shape {array.shape}")
    return float(array)


def integer_at_least(name: str, value: Any, minimum: int) -> int:
    """An ``int`` (not a bool or a float) that is ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def broadcast_shape(named: dict[str, np.ndarray]) -> tuple[int, ...]:
    """The common broadcast shape of the named arrays, or a ValueError listing their shapes."""
    try:
        return np.broadcast_shapes(*(a.shape for a in named.values()))
    except ValueError as error:
        shapes = ", ".join(f"{name} {a.shape}" for name, a in named.items())
        raise ValueError(f"hyperparameter shapes do not broadcast together: {shapes}") from error
