"""The sphere engine's compiled loop (numba, see :mod:`sim.compiled`; imported only when numba is
installed).

Each of the ``(*shape, runs)`` weight vectors runs through all its steps before the next one
starts, its three arrays (``w`` and the optimizer's two moments, ``3 dim`` floats) in the cache;
the vectors are split over the cores. A step does what :func:`sim.sphere.run_sphere` does with
NumPy, in passes over the vector: draw Gaussian ``z``; its component along ``w``; make ``z``
tangent and measure it; apply the optimizer's update coordinate by coordinate, in place (a loop
without a reduction, which vectorises); measure ``w``; at recorded steps, the angle. The update
is :func:`sim.update_rules.step_with` with the rules of :data:`sim.update_rules.RULES`,
compiled from the same functions for one coordinate at a time and checked against them bit for
bit; only the sums are reordered (vectorised, as NumPy's own sums are). A coordinate-step of
Adam costs about 4 ns of one core of a 2-core Xeon with AVX-512 (NumPy's engine: 23 ns; on an
earlier 2-core Xeon 8 and 40 to 50; ``bench/bench_sim.py`` measures both), mostly the draw and
the update (Adam's two divisions and square root keep the divider busy).

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
# the area of each layer: the base strip, r f(r) plus the tail beyond r, f(x) = exp(-x^2 / 2)
_ZIGGURAT_AREA = ZIGGURAT_R * math.exp(-0.5 * ZIGGURAT_R**2) \
    + math.sqrt(math.pi / 2) * math.erfc(ZIGGURAT_R / math.sqrt(2))


@compiled.jit
def mix(z):
    """SplitMix64's output function (Steele, Lea and Flood 2014): a bijection of 64-bit words
    whose values at ``key + k * GOLDEN``, ``k = 0, 1, ...``, form the SplitMix64 sequence."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(k, w, f)`` of the 256-layer ziggurat (Marsaglia and Tsang 2000, "The ziggurat method
    for generating random variables", with 52-bit positions as NumPy's legacy sampler): layer
    ``i`` accepts ``m w_i`` outright when the position ``m < k_i``, and ``f_i = exp(-x_i^2 /
    2)`` bounds its wedge; layer 0 is the base strip with the tail beyond :data:`ZIGGURAT_R`."""
    scale = 2.0**52
    k, w, f = np.zeros(256, np.int64), np.zeros(256), np.zeros(256)
    x = previous = ZIGGURAT_R
    base = _ZIGGURAT_AREA / math.exp(-0.5 * x * x)  # width of the base strip
    k[0], w[0], w[255] = int(x / base * scale), base / scale, x / scale
    f[0], f[255] = 1.0, math.exp(-0.5 * x * x)
    for i in range(254, 0, -1):
        x = math.sqrt(-2.0 * math.log(_ZIGGURAT_AREA / x + math.exp(-0.5 * x * x)))
        k[i + 1] = int(x / previous * scale)
        previous = x
        f[i], w[i] = math.exp(-0.5 * x * x), x / scale
    return k, w, f


_K, _W, _F = ziggurat_tables()  # globals: compiled in as constants, never passed as arrays


@compiled.jit
def _uniform(bits):
    return np.float64(np.int64(bits >> np.uint64(11))) * 2.0**-53  # [0, 1)


@compiled.jit
def _draw(bits):
    """``(sign, layer, position)`` of a 64-bit draw: 1 bit of sign as +-1.0 (to multiply by:
    a branch on a fair coin would be mispredicted every other draw), 8 bits of layer and 52 of
    position, as int64 (whose conversion to float is one instruction, unlike uint64's)."""
    sign = 1.0 - 2.0 * np.float64(np.int64((bits >> np.uint64(8)) & np.uint64(1)))
    return sign, np.int64(bits & np.uint64(0xFF)), np.int64(bits >> np.uint64(12))


@compiled.jit
def accepted_normal(word):
    """:func:`normal` of ``word`` where the ziggurat accepts its first draw outright (99 words
    in 100), NaN where it does not: the fast path alone, with no call in it, for loops that
    fill in the rare NaN with :func:`normal` afterwards. The tables are globals: arrays passed
    as arguments would be reference-counted on every draw."""
    sign, layer, position = _draw(mix(word))
    return sign * np.float64(position) * _W[layer] if position < _K[layer] else np.nan


@compiled.jit
def normal(word):
    """A standard normal from the 64-bit ``word``: Marsaglia and Tsang's ziggurat on
    ``mix(word)``."""
    value = accepted_normal(word)
    if value == value:
        return value
    bits = mix(word)
    sign, layer, position = _draw(bits)
    return sign * _rejected(bits, layer, np.float64(position) * _W[layer])


@compiled.jit
def _rejected(bits, layer, x):
    """The magnitude after the fast test failed (about 1 draw in 100): the wedge test, the
    tail (Marsaglia 1964) or a fresh draw, each on further words ``mix(previous + GOLDEN)`` of
    this draw's own chain. The sign drawn first stays: it is independent of the magnitude."""
    while True:
        bits = mix(bits + GOLDEN)
        if layer == 0:
            while True:
                tail = -math.log1p(-_uniform(bits)) / ZIGGURAT_R
                bits = mix(bits + GOLDEN)
                height = -math.log1p(-_uniform(bits))
                if height + height > tail * tail:
                    return ZIGGURAT_R + tail
                bits = mix(bits + GOLDEN)
        if (_F[layer - 1] - _F[layer]) * _uniform(bits) + _F[layer] < math.exp(-0.5 * x * x):
            return x
        bits = mix(bits + GOLDEN)
        _, layer, position = _draw(bits)
        x = np.float64(position) * _W[layer]
        if position < _K[layer]:
            return x


_step_with = compiled.jit(step_with)
(SGD_RULE, ADAM_RULE, RMSPROP_RULE, ADAGRAD_RULE, NESTEROV_RULE,
 LION_RULE) = RULE_ORDER = tuple(
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
    if code == 3:
        return _step_with(ADAGRAD_RULE, decoupled, state, w, grad, hyper)
    if code == 4:
        return _step_with(NESTEROV_RULE, decoupled, state, w, grad, hyper)
    return _step_with(LION_RULE, decoupled, state, w, grad, hyper)


def rule_code(optimizer: Optimizer) -> int:
    """The index of ``optimizer``'s rule in :data:`RULE_ORDER`."""
    return [r.py_func for r in RULE_ORDER].index(RULES[optimizer])


@functools.partial(compiled.jit, reassociate=True)
def dot(a, b):
    """``sum_d a_d b_d``, vectorised: the only reordered arithmetic of the kernel (as NumPy's
    vectorised sums reorder theirs), where a sequential sum would wait on each addition."""
    total = 0.0
    for d in range(a.size):
        total += a[d] * b[d]
    return total


@functools.partial(compiled.jit, reassociate=True)
def _subtract_and_square(z, along, w):
    """``z -= along w`` in place; returns the new ``z . z`` (one pass instead of two)."""
    total = 0.0
    for d in range(z.size):
        z[d] -= along * w[d]
        total += z[d] * z[d]
    return total


@compiled.jit
def _angle(a, a_norm, b, b_norm):
    """Angle between ``a`` and ``b`` (norms given), accurate for tiny angles, as
    :func:`sim.sphere._angle`: ``2 atan2(|a^ - b^|, |a^ + b^|)``."""
    apart, together = a / a_norm - b / b_norm, a / a_norm + b / b_norm
    return 2.0 * math.atan2(math.sqrt(dot(apart, apart)), math.sqrt(dot(together, together)))


@functools.cache
def kernel(code: int, decoupled: bool):
    """The compiled run of the rule ``RULE_ORDER[code]`` (:func:`rule_code`) with decoupled or
    coupled weight decay (compiled on first use, then cached on disk; both are constants of the
    compiled code, so the rule's loop-invariant parts leave the coordinate loop):
    ``kernel(code, decoupled)(w, first, second, step0, lr, factors, weight_decay, momentum,
    grad_norm, runs, betas_eps_alpha, renormalize, key, record_every, norm_sq, angle,
    direction)``.

    ``w``, ``first``, ``second``: ``(vectors, dim)``, updated in place (``step0`` steps taken).
    ``lr``, ``weight_decay``, ``momentum``: ``(groups,)``, one per hyperparameter combination;
    vector ``v`` belongs to group ``v // runs``. ``grad_norm``: ``(1, groups)`` or ``(steps,
    groups)``. ``factors``: the schedule, ``(steps,)``. Records of step ``k``, when
    ``record_every`` divides it: ``norm_sq[r, v] = ||w_k||^2``, ``angle[r, v]`` (radians between
    ``w_k`` and ``w_{k+1}``) and, when ``direction`` has rows, ``direction[r, v] = w_k /
    ||w_k||``."""
    digest = RULES_DIGEST

    def run(w, first, second, step0, lr, factors, weight_decay, momentum, grad_norm, runs,
            betas_eps_alpha, renormalize, key, record_every, norm_sq, angle, direction):
        assert digest  # a closure constant: the cache key follows the rules' source
        vectors, dim = w.shape
        beta1, beta2, eps, rmsprop_alpha = betas_eps_alpha
        per_step = grad_norm.shape[0] > 1
        keep = direction.shape[0] > 0
        for v in prange(vectors):
            group = v // runs
            wv, fv, sv = w[v], first[v], second[v]
            z, before = np.empty(dim), np.empty(dim)
            norm2 = dot(wv, wv)
            for k in range(factors.size):
                norm = math.sqrt(norm2)
                # draw d of this step and vector: the word key + (first + d) GOLDEN
                first_word = key + (np.uint64(step0 + k) * np.uint64(vectors) + np.uint64(v)) \
                    * np.uint64(dim) * GOLDEN
                word = first_word
                for d in range(dim):
                    z[d] = accepted_normal(word)
                    word += GOLDEN
                for d in range(dim):
                    if z[d] != z[d]:
                        z[d] = normal(first_word + np.uint64(d) * GOLDEN)
                along = dot(z, wv) / norm2
                # grad J(w_k) = (g_k / ||w_k||) u_k with u_k = z / ||z|| (001 Eq. 16 and 18)
                tangent = math.sqrt(_subtract_and_square(z, along, wv))
                scale = grad_norm[k if per_step else 0, group] / (norm * tangent)
                hyper = Hyper(lr[group] * factors[k], weight_decay[group], momentum[group],
                              beta1, beta2, eps, rmsprop_alpha)
                # a float, as Python's float ** int is pow(float, float): the bias corrections
                # are the NumPy engine's pow(), and, loop-invariant, computed once per step
                steps_taken = np.float64(step0 + k)
                record = k % record_every == 0
                if record:
                    before[:] = wv
                # in place and without a reduction: the loop vectorises
                for d in range(dim):
                    wv[d], state = _step(code, decoupled,
                                         OptimizerState(steps_taken, fv[d], sv[d]), wv[d],
                                         scale * z[d], hyper)
                    fv[d], sv[d] = state.first, state.second
                norm2 = dot(wv, wv)
                if record:
                    row = k // record_every
                    norm_sq[row, v] = norm * norm
                    angle[row, v] = _angle(before, norm, wv, math.sqrt(norm2))
                    if keep:
                        direction[row, v] = before / norm
                if renormalize:
                    wv /= math.sqrt(norm2)
                    norm2 = dot(wv, wv)

    return compiled.jit(run, parallel=True, cache=True)
