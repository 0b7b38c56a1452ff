"""The recurrence engine: SGD's exact scalar recurrence for ``x = ||w||^2`` iterated on arrays.

For SGD on a scale-invariant cost the gradient is orthogonal to ``w`` with norm ``g / ||w||``
(001 Eq. 16 and 18), so ``x`` alone obeys theory's :data:`~theory.equilibrium.NORM_SQ_STEP`
(001 Eq. 23; Eq. 19 without weight decay) exactly, whatever the directions. The expression is
taken from theory and split into powers of ``x``::

    x_{k+1} = c_1(alpha_k, lam, g_k) x_k + c_{-1}(alpha_k, lam, g_k) / x_k

with each coefficient lambdified once. Two loops iterate it, with the same coefficients and the
same operations in the same order, so their results are equal to the last bit:

* the compiled loop (:mod:`sim.recurrence_kernel`, where numba is installed: see
  :mod:`sim.compiled` for why numba), which holds each chunk of the grid in the L1 cache through
  all its steps and splits the chunks over the cores;
* the NumPy loop, three in-place array operations per step, where numba is absent or disabled.

Both take the coefficients computed once when they are constant, else for blocks of steps at a
time (:data:`COEFFICIENT_BLOCK_BYTES`), as arrays: no per-step call into theory's expression.

With per-step renormalisation (001 Sec. 4.3: rescale ``w`` to unit norm after every step) the
recurrence is ``x_{k+1} = 1`` and the effective learning rate equals the learning rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.sim import compiled
from scalewise.sim.spec import MEMORY_LIMIT_BYTES, Footprint, SimulationSpec, check_memory
from scalewise.sim.trajectory import Trajectory
from scalewise.theory import equilibrium as eq
from scalewise.theory import kfac

_PARAMETERS = (eq.alpha, eq.lam, eq.g)


def laurent_terms(expr: sp.Expr, var: sp.Symbol) -> dict[int, sp.Expr]:
    """``expr`` as ``{p: c_p}`` with ``expr == sum_p c_p var^p`` exactly (integer ``p``)."""
    terms: dict[int, sp.Expr] = {}
    for term in sp.Add.make_args(sp.expand(expr)):
        coefficient, power = term.as_coeff_exponent(var)
        if not (power.is_integer and coefficient.free_symbols.isdisjoint({var})):
            checks.fail("expr", expr, f"a Laurent polynomial in {var} (not the term {term})")
        terms[int(power)] = terms.get(int(power), 0) + coefficient
    if sp.simplify(sum(c * var**p for p, c in terms.items()) - expr) != 0:
        checks.fail("expr", expr, f"the sum of its terms in powers of {var}")
    return {p: sp.factor(c) for p, c in terms.items()}


_NORM_SQ_TERMS: tuple[tuple[int, Callable[..., np.ndarray]], ...] = tuple(
    (p, sp.lambdify(_PARAMETERS, c, "numpy"))
    for p, c in sorted(laurent_terms(eq.NORM_SQ_STEP, eq.x).items())
)


_COMPILED_FORM = tuple(p for p, _ in _NORM_SQ_TERMS) == (-1, 1)
"""The compiled loop iterates ``c_{-1} / x + c_1 x``: it runs while theory's step has exactly
these two terms (else the NumPy loop, which takes any powers, runs)."""

COEFFICIENT_BLOCK_BYTES = 64 * 2**20
"""Memory for the coefficients of a block of steps when they change from step to step."""

COMPILED_MIN_STEPS = 5_000
COMPILED_MIN_WORK = 10**7
"""The compiled loop runs where it pays for its fixed cost: numba loads a kernel for each new
argument signature (about half a second, once per process and signature), while the NumPy
loop costs a few microseconds a step plus nanoseconds per element. A run of at least
``COMPILED_MIN_STEPS`` steps, or of ``COMPILED_MIN_WORK`` element-steps, takes the compiled
loop; shorter runs on small grids (a stored run driven layer by layer) finish in NumPy first,
with the same results bit for bit."""


def footprint(shape: tuple[int, ...]) -> Footprint:
    """Bytes of a run on the hyperparameter ``shape``: the state, its scratch and the
    coefficients (eight arrays of the grid, or the coefficient block), the per-step change
    marks, and per record ``norm_sq``, ``effective_lr``, ``angular_update`` and two temporaries
    of the angle."""
    size = float(np.prod(shape))
    return Footprint(fixed=8 * 8 * size + COEFFICIENT_BLOCK_BYTES, per_step=3 * 8.0,
                     per_record=5 * 8 * size)


def _step_norm_sq(x: np.ndarray, coefficients: list[np.ndarray], out: np.ndarray,
                  term: np.ndarray) -> None:
    """``out = sum_p c_p x^p`` in place; ``term`` is scratch space of ``x``'s shape."""
    for i, ((power, _), c) in enumerate(zip(_NORM_SQ_TERMS, coefficients)):
        target = out if i == 0 else term
        if power == 1:
            np.multiply(c, x, out=target)
        elif power == -1:
            np.divide(c, x, out=target)
        else:
            np.power(x, power, out=target)
            np.multiply(c, target, out=target)
        if i > 0:
            np.add(out, term, out=out)


def run_recurrence(spec: SimulationSpec, memory_limit: float = MEMORY_LIMIT_BYTES) -> Trajectory:
    """Iterate the SGD norm recurrence for every hyperparameter combination of ``spec``; a run
    over ``memory_limit`` bytes (:func:`footprint`) is refused before allocating."""
    check_memory(footprint(spec.shape), steps=spec.steps, record_every=spec.record_every,
                 limit=memory_limit)
    records = spec.record_steps
    x = np.array(np.broadcast_to(spec.init_norm**2, spec.shape), dtype=np.float64, order="C")
    norm_sq = np.empty((len(records), *spec.shape))
    if spec.renormalize:  # x_0 as given, then 1 after every step
        norm_sq[...] = 1.0
        norm_sq[0] = x
        x = np.ones_like(x)
    elif _COMPILED_FORM and _compiled_pays(spec) and compiled.available():  # imports numba
        _iterate_compiled(spec, x, norm_sq)
    else:
        x = _iterate_numpy(spec, x, norm_sq)
    lr = spec.lr_at_steps(records)  # (records, *shape) after broadcasting
    g = spec.grad_norm_at_steps(records)
    return Trajectory(
        spec=spec, engine="recurrence", dim=None, runs=1, seed=0, step=records, norm_sq=norm_sq,
        effective_lr=np.broadcast_to(eq.effective_lr(norm_sq, lr), norm_sq.shape),
        angular_update=np.broadcast_to(eq.angular_update(norm_sq, lr, spec.weight_decay, g),
                                       norm_sq.shape),
        final_norm_sq=x,
    )


def _compiled_pays(spec: SimulationSpec) -> bool:
    """Whether ``spec`` is long enough for the compiled loop (:data:`COMPILED_MIN_STEPS`)."""
    return (spec.steps >= COMPILED_MIN_STEPS
            or spec.steps * float(np.prod(spec.shape)) >= COMPILED_MIN_WORK)


def _coefficient_blocks(spec: SimulationSpec) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """The coefficients of theory's terms for blocks of steps at once, ``(ks, [c_p of shape
    (len(ks), *spec.shape)])`` within :data:`COEFFICIENT_BLOCK_BYTES`: one block of step 0
    alone when they are the same at every step."""
    if spec.has_static_coefficients:
        blocks = [np.arange(1)]
    else:
        size = 8 * len(_NORM_SQ_TERMS) * float(np.prod(spec.shape))
        per_block = max(1, int(COEFFICIENT_BLOCK_BYTES // size))
        blocks = [np.arange(k, min(k + per_block, spec.steps))
                  for k in range(0, spec.steps, per_block)]
    for ks in blocks:
        args = (spec.lr_at_steps(ks), spec.weight_decay, spec.grad_norm_at_steps(ks))
        yield ks, [np.broadcast_to(term(*args), (len(ks), *spec.shape))
                   for _, term in _NORM_SQ_TERMS]


def _iterate_numpy(spec: SimulationSpec, x: np.ndarray, norm_sq: np.ndarray) -> np.ndarray:
    """The NumPy loop: ``x`` after ``spec.steps`` steps; records into ``norm_sq``."""
    out, term = np.empty_like(x), np.empty_like(x)
    for ks, block in _coefficient_blocks(spec):
        steps = range(spec.steps) if spec.has_static_coefficients else ks
        for k in steps:
            if k % spec.record_every == 0:
                norm_sq[k // spec.record_every] = x
            row = 0 if spec.has_static_coefficients else k - ks[0]
            _step_norm_sq(x, [c[row] for c in block], out, term)
            x, out = out, x
    return x


def _iterate_compiled(spec: SimulationSpec, x: np.ndarray, norm_sq: np.ndarray) -> None:
    """The compiled loop on ``x`` in place, with the NumPy loop's coefficients."""
    from scalewise.sim import recurrence_kernel

    flat_x, flat_records = x.reshape(-1), norm_sq.reshape(len(norm_sq), -1)
    for ks, (c_neg, c_pos) in _coefficient_blocks(spec):
        c_neg, c_pos = (np.ascontiguousarray(c).reshape(len(ks), -1) for c in (c_neg, c_pos))
        steps = spec.steps if spec.has_static_coefficients else len(ks)
        compiled.launch(recurrence_kernel.iterate, flat_x, c_pos, c_neg, steps, int(ks[0]),
                        spec.record_every, flat_records)


def effective_damping(norm_sq: np.ndarray, damping: float) -> np.ndarray:
    """K-FAC's effective damping of a scale-invariant layer over training, theory's
    :data:`~theory.kfac.EFFECTIVE_DAMPING` (``eta ||w||^2``; 001 Sec. 5.2, 004 Eq. 13-14): its
    curvature scales as ``||w||^-2``, so the fixed damping ``eta`` weighs like ``eta ||w||^2``
    against the curvature of the normalized weights. ``norm_sq`` is any recorded ``||w_k||^2``
    (e.g. ``trajectory.norm_sq``)."""
    return np.asarray(kfac.effective_damping(damping, np.asarray(norm_sq)))
