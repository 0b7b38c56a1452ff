"""Numba, where it is installed: the compiler of the two engines' fast paths.

Both engines are loops of a few floating-point operations per element and step. In NumPy each
step is a pass over whole arrays, so the recurrence engine is bound by memory bandwidth (three
array passes per step for two flops per element) and the sphere engine by the random number
generator and a dozen temporaries per step. A compiled loop turns them around: each element
(recurrence) or vector (sphere) keeps its state in registers or the L1 cache and iterates all
its steps, and the elements are split over the cores (``prange``).

Why numba, of the ways to compile such a loop:

* it compiles *the project's own Python functions* -- the update rules of
  :mod:`sim.update_rules` -- so the fast sphere engine runs the same rules as the NumPy one,
  not a retyped copy; the recurrence kernel takes its coefficients from theory's lambdified
  expressions exactly as the NumPy loop does;
* it needs no C compiler on the user's machine (wheels for Linux, macOS and Windows), unlike a
  C extension or a kernel built at run time, and no GPU, unlike a torch or Triton kernel (torch's
  own CPU compiler, ``torch.compile``, needs a C++ compiler and minutes of compilation);
* its loops vectorise (AVX2 here) and give the same IEEE results as NumPy when the arithmetic
  is the same and ``fastmath`` is off: the recurrence kernel is bit for bit the NumPy loop.

Its costs: numba and llvmlite add about 210 MB installed (64 MB of wheels); each numba
release caps the NumPy versions it accepts; compiling a kernel takes a few seconds, so the
recurrence kernel is cached on disk (``cache=True``; it calls nothing outside its own module,
so its cache cannot go stale) and the sphere kernels, which call into other modules whose
changes numba's cache would not notice, are compiled once per process. Numba is therefore an
optional dependency (the ``fast`` extra) and imported only when a fast path runs (the
kernel modules import it; importing :mod:`scalewise.sim` does not): without it, or with the environment variable
``SCALEWISE_NO_COMPILE`` set to a non-empty value, every engine runs its NumPy path, with the
same results (the recurrence bit for bit; the sphere engine with NumPy's random stream).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any

DISABLE_VARIABLE = "SCALEWISE_NO_COMPILE"

_LAUNCH = threading.Lock()


@functools.cache
def _numba() -> Any:
    try:
        import numba
    except ImportError:
        return None
    return numba


def available() -> bool:
    """True when the fast paths run: numba imports and ``SCALEWISE_NO_COMPILE`` is unset."""
    return not os.environ.get(DISABLE_VARIABLE) and _numba() is not None


def jit(fn: Callable[..., Any], *, parallel: bool = False, cache: bool = False,
        reassociate: bool = False) -> Any:
    """``fn`` compiled by numba in nopython mode with NumPy's error model (a float division by
    zero gives inf or nan, as in NumPy, instead of raising: the loops then vectorise).
    ``fastmath`` stays off, so every operation rounds as IEEE and NumPy do; ``reassociate``
    allows reordering sums only (what NumPy's own vectorised sums do), for reductions."""
    return _numba().njit(fn, parallel=parallel, cache=cache, nogil=True, error_model="numpy",
                         fastmath={"reassoc"} if reassociate else False)


def launch(kernel: Any, *args: Any) -> Any:
    """``kernel(*args)`` for a parallel kernel, one launch at a time in this process: numba's
    fallback threading layer (workqueue, where neither OpenMP nor TBB is found) aborts the
    process on launches from two Python threads at once (a Streamlit server runs a thread per
    session), and a kernel uses every core anyway, so waiting costs nothing."""
    with _LAUNCH:
        return kernel(*args)
