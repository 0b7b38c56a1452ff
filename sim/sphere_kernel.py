"""The sphere engine's compiled loop (numba, see :mod:`sim.compiled`; imported only when numba is
installed).

Each of the ``(*shape, runs)`` weight vectors runs through all its steps before the next one
starts, its three arrays (``w`` and the optimizer's two moments, ``3 dim`` floats) in the cache;
the vectors are split over the cores. A step does what :func:`sim.sphere.run_sphere` does with
NumPy, in four passes over the vector: draw Gaussian ``z`` and its component along ``w``; make
``z`` tangent and measure it; apply the optimizer's update coordinate by coordinate; at recorded
steps, measure the angle. The update is :func:`sim.update_rules.step_with` with the rules of
:data:`sim.update_rules.RULES`, compiled from the same functions for one coordinate at a time.

The noise is counter-based: the draw of step ``k``, vector ``v`` and coordinate ``d`` is a
function of ``(key, k, v, d)`` alone -- SplitMix64's output function (:func:`mix`) of
``key + counter * golden`` turned into a standard normal by Marsaglia and Tsang's ziggurat
(:func:`normal`) -- so the results do not depend on how the vectors are split over threads.
NumPy's generator is sequential, so this stream is not NumPy's: the compiled and the NumPy
engine agree in distribution, not draw by draw.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math

import numpy as np
from numba import prange

from scalewise.sim import compiled, update_rules
from scalewise.sim.update_rules import RULES, Hyper, OptimizerState, step_with
from scalewise.vocabulary import Optimizer

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)

ZIGGURAT_R = 3.6541528853610088
"""Start of the tail of Marsaglia and Tsang's 256-layer ziggurat for the normal distribution."""
_ZIGGURAT_AREA = 4.92867323399e-3  # of each layer


@compiled.jit
def mix(z):
    """SplitMix64's output function (Steele, Lea and Flood 2014): a bijection of 64-bit words
    whose values at ``key + k * GOLDEN``, ``k = 0, 1, ...``, form the SplitMix64 sequence."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(k, w, f)`` of the 256-layer ziggurat (Marsaglia and Tsang 2000, "The ziggurat method
    for generating random variables", with 52-bit mantissas as NumPy's legacy sampler): layer
    ``i`` accepts ``m w_i`` outright when ``m < k_i``, and ``f_i = exp(-x_i^2 / 2)`` bounds
    its wedge; layer 0 is the base strip with the tail beyond :data:`ZIGGURAT_R`."""
    scale = 2.0**52
    k, w, f = np.zeros(256, np.uint64), np.zeros(256), np.zeros(256)
    x = previous = ZIGGURAT_R
    base = _ZIGGURAT_AREA / math.exp(-0.5 * x * x)  # width of the base strip
    k[0], w[0], w[255] = np.uint64(x / base * scale), base / scale, x / scale
    f[0], f[255] = 1.0, math.exp(-0.5 * x * x)
    for i in range(254, 0, -1):
        x = math.sqrt(-2.0 * math.log(_ZIGGURAT_AREA / x + math.exp(-0.5 * x * x)))
        k[i + 1] = np.uint64(x / previous * scale)
        previous = x
        f[i], w[i] = math.exp(-0.5 * x * x), x / scale
    return k, w, f


@compiled.jit
def _uniform(bits):
    return np.float64(bits >> np.uint64(11)) * 2.0**-53  # [0, 1)


@compiled.jit
def normal(word, k, w, f):
    """A standard normal from the 64-bit ``word``: ziggurat on ``mix(word)`` (8 bits of layer,
    1 of sign, 52 of position); a rejection (about 1 in 100) draws on with further words
    ``mix(previous + GOLDEN)``, its own chain, as the tail of Marsaglia (1964) does."""
    bits = mix(word)
    while True:
        layer = bits & np.uint64(0xFF)
        negative = (bits >> np.uint64(8)) & np.uint64(1)
        position = bits >> np.uint64(12)  # 52 bits
        x = np.float64(position) * w[layer]
        if position < k[layer]:
            return -x if negative else x
        bits = mix(bits + GOLDEN)
        if layer == 0:
            while True:
                tail = -math.log1p(-_uniform(bits)) / ZIGGURAT_R
                bits = mix(bits + GOLDEN)
                height = -math.log1p(-_uniform(bits))
                bits = mix(bits + GOLDEN)
                if height + height > tail * tail:
                    return -(ZIGGURAT_R + tail) if negative else ZIGGURAT_R + tail
        if (f[layer - 1] - f[layer]) * _uniform(bits) + f[layer] < math.exp(-0.5 * x * x):
            return -x if negative else x
        bits = mix(bits + GOLDEN)


_step_with = compiled.jit(step_with)
_TABLES = ziggurat_tables()
SGD_RULE, ADAM_RULE, RMSPROP_RULE, ADAGRAD_RULE = RULE_ORDER = tuple(
    compiled.jit(rule) for rule in dict.fromkeys(RULES.values()))
"""The rules of :data:`sim.update_rules.RULES` compiled (module globals, so that the kernel that
calls them can be cached on disk)."""

RULES_DIGEST = hashlib.sha256(inspect.getsource(update_rules).encode()).hexdigest()
"""Part of the kernel's cache key: numba's cache notices edits of this file only, so an edit of
the rules it compiles in must change the key."""


@compiled.jit
def _step(code, decoupled, state, w, grad, hyper):
    """:func:`sim.update_rules.step_with` with the rule ``RULE_ORDER[code]``."""
    if code == 0:
        return _step_with(SGD_RULE, decoupled, state, w, grad, hyper)
    if code == 1:
        return _step_with(ADAM_RULE, decoupled, state, w, grad, hyper)
    if code == 2:
        return _step_with(RMSPROP_RULE, decoupled, state, w, grad, hyper)
    return _step_with(ADAGRAD_RULE, decoupled, state, w, grad, hyper)


def rule_code(optimizer: Optimizer) -> int:
    """The index of ``optimizer``'s rule in :data:`RULE_ORDER`."""
    return [r.py_func for r in RULE_ORDER].index(RULES[optimizer])


@functools.cache
def kernel():
    """The compiled run (compiled on first use, then cached on disk):
    ``kernel()(code, decoupled, w, first, second, step0, lr, factors, weight_decay, momentum,
    grad_norm, runs, betas_eps_alpha, renormalize, key, record_every, norm_sq, angle,
    direction)``.

    ``code``: :func:`rule_code` of the optimizer; ``decoupled``: its weight decay is decoupled.
    ``w``, ``first``, ``second``: ``(vectors, dim)``, updated in place (``step0`` steps taken).
    ``lr``, ``weight_decay``, ``momentum``: ``(groups,)``, one per hyperparameter combination;
    vector ``v`` belongs to group ``v // runs``. ``grad_norm``: ``(1, groups)`` or ``(steps,
    groups)``. ``factors``: the schedule, ``(steps,)``. Records of step ``k``, when
    ``record_every`` divides it: ``norm_sq[r, v] = ||w_k||^2``, ``angle[r, v]`` (radians between
    ``w_k`` and ``w_{k+1}``) and, when ``direction`` has rows, ``direction[r, v] = w_k /
    ||w_k||``."""
    digest = RULES_DIGEST
    k_table, w_table, f_table = _TABLES

    def run(code, decoupled, w, first, second, step0, lr, factors, weight_decay, momentum,
            grad_norm, runs, betas_eps_alpha, renormalize, key, record_every, norm_sq, angle,
            direction):
        assert digest  # a closure constant: the cache key follows the rules' source
        vectors, dim = w.shape
        beta1, beta2, eps, rmsprop_alpha = betas_eps_alpha
        per_step = grad_norm.shape[0] > 1
        keep = direction.shape[0] > 0
        for v in prange(vectors):
            group = v // runs
            wv, fv, sv = w[v], first[v], second[v]
            z, nxt = np.empty(dim), np.empty(dim)
            norm2 = 0.0
            for d in range(dim):
                norm2 += wv[d] * wv[d]
            for k in range(factors.size):
                norm = math.sqrt(norm2)
                counter = (np.uint64(step0 + k) * np.uint64(vectors) + np.uint64(v)) \
                    * np.uint64(dim)
                along = 0.0
                for d in range(dim):
                    z[d] = normal(key + (counter + np.uint64(d)) * GOLDEN, k_table, w_table,
                                   f_table)
                    along += z[d] * wv[d]
                along /= norm2
                tangent2 = 0.0
                for d in range(dim):
                    z[d] -= along * wv[d]
                    tangent2 += z[d] * z[d]
                # grad J(w_k) = (g_k / ||w_k||) u_k with u_k = z / ||z|| (001 Eq. 16 and 18)
                scale = grad_norm[k if per_step else 0, group] / (norm * math.sqrt(tangent2))
                hyper = Hyper(lr[group] * factors[k], weight_decay[group], momentum[group],
                              beta1, beta2, eps, rmsprop_alpha)
                next2 = 0.0
                for d in range(dim):
                    nxt[d], state = _step(code, decoupled,
                                          OptimizerState(step0 + k, fv[d], sv[d]), wv[d],
                                          scale * z[d], hyper)
                    fv[d], sv[d] = state.first, state.second
                    next2 += nxt[d] * nxt[d]
                next_norm = math.sqrt(next2)
                if k % record_every == 0:
                    row = k // record_every
                    norm_sq[row, v] = norm2
                    apart, together = 0.0, 0.0
                    for d in range(dim):
                        a, b = wv[d] / norm, nxt[d] / next_norm
                        apart += (a - b) * (a - b)
                        together += (a + b) * (a + b)
                        if keep:
                            direction[row, v, d] = a
                    # accurate for tiny angles, as sim.sphere's angle
                    angle[row, v] = 2.0 * math.atan2(math.sqrt(apart), math.sqrt(together))
                norm2 = 0.0
                for d in range(dim):
                    wv[d] = nxt[d] / next_norm if renormalize else nxt[d]
                    norm2 += wv[d] * wv[d]

    return compiled.jit(run, parallel=True, cache=True)
