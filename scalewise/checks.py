"""Input checks shared by every layer: one message format and one home for each rule.

Every failure is a ``ValueError`` whose message names the parameter, the value given and what
is allowed, in one format, before any work or allocation::

    lr = -1.0 is invalid; allowed: a finite number > 0

A request too large for the memory it may use is refused the same way, as a ``MemoryError``
(:func:`too_large`), before anything is allocated.

Configs name a field by its dotted path (``optimizer.lr``); functions by the argument's name.
The decay rule of 001 Eq. (22) -- a step multiplies ``w`` by ``1 - lr weight_decay``, which must
stay positive -- is :func:`decay_factor`, used wherever a decay shrinks the weights.

>>> positive("lr", 0.1)
array(0.1)
>>> integer("steps", 2.5, minimum=1)
Traceback (most recent call last):
...
ValueError: steps = 2.5 is invalid; allowed: an integer >= 1
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import numpy as np


def fail(name: str, value: Any, allowed: str) -> NoReturn:
    """Raise the one error of this module: ``{name} = {value!r} is invalid; allowed: ...``."""
    raise ValueError(_message(name, value, allowed))


def too_large(name: str, value: Any, allowed: str) -> NoReturn:
    """:func:`fail` for a request that would not fit in memory: a ``MemoryError`` in the same
    format, raised before the allocation it prevents."""
    raise MemoryError(_message(name, value, allowed))


def _message(name: str, value: Any, allowed: str) -> str:
    return f"{name} = {_shown(value)} is invalid; allowed: {allowed}"


def _shown(value: Any) -> str:
    """``repr`` of ``value``, arrays abbreviated so that a message stays one line."""
    if isinstance(value, np.ndarray) and value.size > 6:
        return f"array of shape {value.shape}"
    return repr(value)


def interval(low: float, high: float = math.inf, *, low_open: bool = False,
             high_open: bool = True) -> str:
    """The words for an interval: ``a finite number > 0``, ``a finite number in [0, 1)``."""
    if high == math.inf:
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"a finite number in {left}{low:g}, {high:g}{right}"


def real(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array of finite real numbers (a number gives a 0-d array)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(name, value, "a finite real number or an array of them")
    if not np.all(np.isfinite(array)):
        fail(name, value, "finite numbers (no nan or inf)")
    return array


def in_interval(name: str, value: Any, low: float, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = True) -> np.ndarray:
    """``value`` as a float64 array whose every entry lies in the interval (ends as flagged)."""
    array = real(name, value)
    below = array <= low if low_open else array < low
    above = array >= high if high_open else array > high
    if np.any(below) or np.any(above):
        fail(name, value, interval(low, high, low_open=low_open, high_open=high_open))
    return array


def positive(name: str, value: Any) -> np.ndarray:
    """Entries ``> 0``."""
    return in_interval(name, value, 0.0, low_open=True)


def nonnegative(name: str, value: Any) -> np.ndarray:
    """Entries ``>= 0``."""
    return in_interval(name, value, 0.0)


def unit_interval(name: str, value: Any) -> np.ndarray:
    """Entries in ``[0, 1)``: decay rates, momenta, betas."""
    return in_interval(name, value, 0.0, 1.0)


def number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
           low_open: bool = False, high_open: bool = True) -> float:
    """One finite number (not a bool, not an array) in the interval."""
    if isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0:
        fail(name, value, interval(low, high, low_open=low_open, high_open=high_open)
             if low > -math.inf else "a single finite number")
    return float(in_interval(name, value, low, high, low_open=low_open, high_open=high_open))


def integer(name: str, value: Any, minimum: int | None = None, *,
            optional: bool = False) -> int | None:
    """An ``int`` (not a bool, not a float) ``>= minimum``; ``None`` passes when ``optional``."""
    if optional and value is None:
        return None
    allowed = "an integer" + ("" if minimum is None else f" >= {minimum}")
    allowed += " or None" if optional else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        fail(name, value, allowed)
    if minimum is not None and value < minimum:
        fail(name, value, allowed)
    return int(value)


def one_of(name: str, value: Any, allowed: Iterable[Any], *, optional: bool = False) -> Any:
    """``value`` itself, which must be one of ``allowed`` (or ``None`` when ``optional``)."""
    choices = list(allowed)
    if (optional and value is None) or value in choices:
        return value
    words = ", ".join(str(getattr(c, "value", c)) for c in choices)
    fail(name, value, f"one of {words}" + (" or None" if optional else ""))


def decay_factor(lr: Any, weight_decay: Any, *, name: str = "weight_decay",
                 context: str = "") -> None:
    """The rule of 001 Eq. (22): where a step multiplies ``w`` by ``1 - lr * weight_decay``
    (SGD's coupled L2, decoupled decay), that factor must stay positive, ``lr * weight_decay <
    1``; arrays broadcast. ``context`` says where the rule applies (``"at every step"``)."""
    product = np.asarray(lr, dtype=np.float64) * np.asarray(weight_decay, dtype=np.float64)
    if np.any(product >= 1):
        where = f" {context}" if context else ""
        fail(name, weight_decay, f"lr * weight_decay < 1{where} (the largest product here is "
             f"{float(np.max(product)):g}), so that the decay factor 1 - lr * weight_decay "
             "stays positive (001 Eq. 22)")


def broadcast(named: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    """The common broadcast shape of the named arrays; the error lists every shape."""
    try:
        return np.broadcast_shapes(*(np.shape(a) for a in named.values()))
    except ValueError:
        shapes = ", ".join(f"{name} {np.shape(a)}" for name, a in named.items())
        fail("shapes", shapes, "arrays whose shapes broadcast together")
