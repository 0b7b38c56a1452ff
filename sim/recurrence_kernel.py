"""The recurrence engine's compiled loop (numba, see :mod:`sim.compiled`; imported only when
numba is installed).

``x_{k+1} = c_1 x_k + c_{-1} / x_k`` with the coefficients that :mod:`sim.recurrence` computes
from theory's expression, iterated with the loops interchanged: a chunk of :data:`CHUNK`
elements stays in the L1 cache and runs through all its steps before the next chunk starts, and
the chunks are split over the cores. The NumPy loop streams the whole grid through memory at
every step (memory-bound); this one does two flops and a division per element and step from
the cache (bound by the divider). The operations are the NumPy loop's, in its order, with
``fastmath`` off: the results are equal to the last bit.
"""

from __future__ import annotations

from numba import prange

from scalewise.sim import compiled

CHUNK = 256
"""Elements iterated together: three arrays of 256 floats (6 KiB) stay in the L1 cache, and
256 independent divisions keep the vectorised divider busy."""


def _iterate(x, c_pos, c_neg, steps, first_step, record_every, records):
    """Run ``steps`` steps of the recurrence on ``x`` (``(n,)``, in place). ``c_pos`` and
    ``c_neg`` (``(steps, n)``, or ``(1, n)`` when constant) are ``c_1`` and ``c_{-1}``; the
    state before global step ``first_step + k`` goes to ``records[(first_step + k) //
    record_every]`` when ``record_every`` divides that step."""
    n = x.size
    stride = 1 if c_pos.shape[0] > 1 else 0
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        lo = chunk * CHUNK
        hi = min(lo + CHUNK, n)
        xs = x[lo:hi]
        for k in range(steps):
            step = first_step + k
            if step % record_every == 0:
                records[step // record_every, lo:hi] = xs
            a = c_pos[k * stride, lo:hi]
            b = c_neg[k * stride, lo:hi]
            for j in range(hi - lo):
                # the NumPy loop's order: c_{-1} / x first, then c_1 x added to it
                xs[j] = b[j] / xs[j] + a[j] * xs[j]


iterate = compiled.jit(_iterate, parallel=True, cache=True)
