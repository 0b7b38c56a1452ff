"""The recurrence engine: SGD's exact scalar recurrence for ``x = ||w||^2`` iterated on arrays.

For SGD on a scale-invariant cost the gradient is orthogonal to ``w`` with norm ``g / ||w||``
(001 Eq. 16 and 18), so ``x`` alone obeys theory's :data:`~theory.equilibrium.NORM_SQ_STEP`
(001 Eq. 23; Eq. 19 without weight decay) exactly, whatever the directions. The expression is
taken from theory and split into powers of ``x``::

    x_{k+1} = c_1(alpha_k, lam, g_k) x_k + c_{-1}(alpha_k, lam, g_k) / x_k

with each coefficient lambdified once; the loop then costs three in-place array operations per
step (the coefficients are recomputed only when the learning rate or gradient norm changes).
With per-step renormalisation (001 Sec. 4.3: rescale ``w`` to unit norm after every step) the
recurrence is ``x_{k+1} = 1`` and the effective learning rate equals the learning rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.sim.spec import SimulationSpec, check_memory
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


def _coefficients(spec: SimulationSpec, k: int) -> list[np.ndarray]:
    args = (spec.lr_at(k), spec.weight_decay, spec.grad_norm_at(k))
    return [np.broadcast_to(term(*args), spec.shape) for _, term in _NORM_SQ_TERMS]


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


def run_recurrence(spec: SimulationSpec, memory_limit: float) -> Trajectory:
    """Iterate the SGD norm recurrence for every hyperparameter combination of ``spec``."""
    records = spec.record_steps
    size = int(np.prod(spec.shape))
    check_memory(8.0 * size * (3 * len(records) + 6), memory_limit)
    x = np.broadcast_to(spec.init_norm**2, spec.shape).astype(np.float64)  # (*shape)
    out, term = np.empty_like(x), np.empty_like(x)
    norm_sq = np.empty((len(records), *spec.shape))
    coefficients = _coefficients(spec, 0)
    # coefficients change only where the learning rate or the gradient norm does
    changes = np.flatnonzero(np.diff(spec.lr_factors)) + 1
    refresh = np.zeros(spec.steps, dtype=bool)
    refresh[changes] = True
    refresh[1:] |= spec.grad_norm_per_step
    for k in range(spec.steps):
        if k % spec.record_every == 0:
            norm_sq[k // spec.record_every] = x
        if spec.renormalize:
            x.fill(1.0)
            continue
        if refresh[k]:
            coefficients = _coefficients(spec, k)
        _step_norm_sq(x, coefficients, out, term)
        x, out = out, x
    lr = spec.lr_at_steps(records)  # (records, *shape) after broadcasting
    g = spec.grad_norm[records] if spec.grad_norm_per_step else spec.grad_norm
    return Trajectory(
        spec=spec, engine="recurrence", dim=None, runs=1, seed=0, step=records, norm_sq=norm_sq,
        effective_lr=np.broadcast_to(eq.effective_lr(norm_sq, lr), norm_sq.shape),
        angular_update=np.broadcast_to(eq.angular_update(norm_sq, lr, spec.weight_decay, g),
                                       norm_sq.shape),
        final_norm_sq=x,
    )


def effective_damping(norm_sq: np.ndarray, damping: float) -> np.ndarray:
    """K-FAC's effective damping of a scale-invariant layer over training, theory's
    :data:`~theory.kfac.EFFECTIVE_DAMPING` (``eta ||w||^2``; 001 Sec. 5.2, 004 Eq. 13-14): its
    curvature scales as ``||w||^-2``, so the fixed damping ``eta`` weighs like ``eta ||w||^2``
    against the curvature of the normalized weights. ``norm_sq`` is any recorded ``||w_k||^2``
    (e.g. ``trajectory.norm_sq``)."""
    return np.asarray(kfac.effective_damping(damping, np.asarray(norm_sq)))
