"""Theory's mean-field moment map iterated from any start: the expected weight norm of a
scale-invariant weight under SGD, momentum SGD, Adam (L2), AdamW and RMSprop, step by step, fast
enough for an interactive page (100,000 steps in tens of milliseconds on one core, no compiler).

The map is theory's (:func:`scalewise.theory.mean_field.mean_field_map`): ``(x, p, q) ->
(x', p', q')`` with ``x = E||w||^2``, ``p = E<w, m>`` and ``q = E||m||^2`` (``m`` the momentum
buffer or Adam's first moment) in the noise-driven model whose fixed points are
:mod:`theory.equilibria`. SGD is momentum SGD at ``mu = 0``, where the map is 001 Eq. (23)
exactly; for the Adam family it is the late-time model (second moment converged and isotropic,
bias corrections 1). The angular update of step ``k`` is
``arccos(E<w_k, w_{k+1}> / sqrt(x_k x_{k+1}))``, at equilibrium theory's
``arccos(E<w, w'> / E||w||^2)``; the effective learning rate is the optimizer's
(:mod:`sim.effective`).

Why a generated Python loop. The state is three numbers, so nothing vectorises across it: NumPy
spends about a microsecond per operation on 0-d arrays and a lambdified function about half a
microsecond per call, while CPython's float arithmetic costs tens of nanoseconds per operation.
So the map's expressions are printed once per optimizer as the body of a plain ``for`` loop over
Python floats (:func:`_loop_source`): every subexpression of the hyperparameters alone is hoisted
before the loop, the rest shares its common subexpressions (SymPy's ``cse``), and state variables
that the norm does not depend on are not carried (SGD carries ``x`` alone). The source is
compiled with :func:`compile`, as :func:`sympy.lambdify` compiles its functions; the formula is
still written once, in theory/.

The state is recorded at the requested steps only (:func:`log_steps` for a log axis). Once a
whole stretch between two records leaves the state unchanged to within :data:`SETTLED` relative
(a fixed point reached in floating point), the loop stops and the remaining records repeat it.
A state that leaves the floats (an unstable map: the norm overflows, or a square root of a
negative number) is recorded as NaN from there on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple

import numpy as np
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from scalewise import checks
from scalewise.sim.effective import effective_lr
from scalewise.theory import mean_field as mf
from scalewise.theory.equilibrium import alpha, g, lam, x
from scalewise.vocabulary import Optimizer

STATE = (x, mf.p, mf.q)
PARAMETERS = (alpha, lam, g, mf.mu, mf.beta1, mf.d)
SETTLED = 1e-15
"""Relative change of every carried state variable over a stretch between two records below
which the state counts as a fixed point (a few units in the last place of a float64)."""

_MODELS: dict[str, tuple[str, dict[sp.Symbol, Any]]] = {
    "sgd": ("sgdm", {mf.mu: 0}),  # no buffer: 001 Eq. (23)
    "sgdm": ("sgdm", {}),
    "adam": ("adam", {}),
    "adamw": ("adamw", {}),
    "rmsprop": ("rmsprop", {}),
}
OPTIMIZERS = tuple(_MODELS)
"""The optimizers theory has a mean-field map for (Adagrad has none: its step keeps shrinking)."""


class MeanFieldTrajectory(NamedTuple):
    """The map's expected values at the recorded steps ``step`` (records,)."""

    step: np.ndarray
    norm_sq: np.ndarray
    effective_lr: np.ndarray
    angular_update: np.ndarray


def log_steps(steps: int, points: int = 400) -> np.ndarray:
    """Step 0 and about ``points`` steps of ``1 .. steps`` evenly spaced on a log axis, the last
    one ``steps``.

    >>> log_steps(10, 4).tolist()
    [0, 1, 2, 5, 10]
    """
    steps = checks.integer("steps", steps, 1)
    return np.unique(np.concatenate([[0], np.geomspace(1, steps, points).round().astype(int)]))


def mean_field(optimizer: str, *, lr: float, weight_decay: float, steps: int,
               grad_norm: float = 1.0, init_norm: float = 1.0, momentum: float = 0.0,
               beta1: float = 0.9, dim: int | None = None,
               record: np.ndarray | None = None) -> MeanFieldTrajectory:
    """Iterate ``optimizer``'s mean-field map for ``steps`` steps from ``||w_0|| = init_norm``
    with an empty buffer, recording at the steps ``record`` (ascending, within ``0 .. steps``;
    default :func:`log_steps`). ``grad_norm`` is the gradient norm at unit weight norm,
    ``momentum`` momentum SGD's, ``beta1`` Adam's and AdamW's, ``dim`` the dimension of the
    weight vector (the Adam family's step scale depends on it).

    >>> t = mean_field("sgd", lr=0.1, weight_decay=0.01, steps=3000)
    >>> round(float(t.effective_lr[-1]), 4)  # sim.simulate's value
    0.0447
    """
    name = Optimizer.parse(optimizer, simulated=True).value
    checks.one_of("optimizer", name, OPTIMIZERS)
    properties = Optimizer(name).properties
    steps = checks.integer("steps", steps, 1)
    lr = checks.number("lr", lr, 0.0, low_open=True)
    weight_decay = checks.number("weight_decay", weight_decay, 0.0)
    if properties.shrinks(properties.decay):
        checks.decay_factor(lr, weight_decay)
    momentum = checks.number("momentum", momentum, 0.0, 1.0) if properties.uses_momentum else 0.0
    beta1 = checks.number("beta1", beta1, 0.0, 1.0)
    dim = checks.integer("dim", dim, 1) if properties.adaptive else 1
    params = (lr, weight_decay, checks.number("grad_norm", grad_norm, 0.0, low_open=True),
              momentum, beta1, float(dim))
    x0 = checks.number("init_norm", init_norm, 0.0, low_open=True) ** 2
    recorded = log_steps(steps) if record is None else _record_steps(record, steps)
    loop = _compiled(name)
    records, finished = loop.run(loop.start(x0), np.diff(recorded).tolist(), params)
    states = np.array(records, dtype=float)
    if len(states) < len(recorded):  # settled early (the rest repeats it), or left the floats
        tail = states[-1] if finished else np.full(len(loop.carried), np.nan)
        states = np.vstack([states, np.tile(tail, (len(recorded) - len(states), 1))])
    full = np.zeros((len(recorded), len(STATE)))
    full[:, loop.carried] = states
    norm_sq = full[:, 0]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        next_norm_sq, w_dot_next = loop.observe(*full.T, *params)
        cos = np.clip(w_dot_next / np.sqrt(norm_sq * next_norm_sq), -1.0, 1.0)
    return MeanFieldTrajectory(recorded, norm_sq, effective_lr(Optimizer(name), norm_sq, lr),
                               np.arccos(cos))


def _record_steps(record: np.ndarray, steps: int) -> np.ndarray:
    steps_array = np.asarray(record)
    if (steps_array.ndim != 1 or len(steps_array) == 0 or steps_array[0] < 0
            or steps_array[-1] > steps or np.any(np.diff(steps_array) <= 0)
            or not np.issubdtype(steps_array.dtype, np.integer)):
        checks.fail("record", record, f"ascending integer steps within 0 .. {steps}")
    return steps_array


class _Loop(NamedTuple):
    """A compiled map: ``run(state, stretches, params)`` -> the state at the start of every
    stretch and after the last (fewer when it settled or left the floats early) and whether it
    stayed in the floats, of the
    ``carried`` state variables (indices into :data:`STATE`); ``start(x0)`` the initial carried
    state; ``observe(x, p, q, *params)`` -> ``(x', E<w, w'>)`` on arrays."""

    run: Callable[..., list]
    start: Callable[[float], tuple]
    carried: list[int]
    observe: Callable[..., tuple]


@cache
def _compiled(name: str) -> _Loop:
    model_name, fixed = _MODELS[name]
    model = mf.mean_field_model(model_name)
    step = model.moments
    exprs = [e.subs(mf.c, model.step_scale).subs(fixed) for e in step[:3]]
    carried = _carried(exprs)
    namespace = {"math": math, "repeat": itertools.repeat}
    source = _loop_source([STATE[i] for i in carried], [exprs[i] for i in carried])
    exec(compile(source, f"<mean-field map of {name}>", "exec"), namespace)
    observed = [exprs[0], step.w_dot_next.subs(mf.c, model.step_scale).subs(fixed)]
    observe = sp.lambdify((*STATE, *PARAMETERS), observed, "numpy")
    initial = {x: None, mf.p: 0.0, mf.q: 0.0}  # an empty buffer
    return _Loop(namespace["run"], lambda x0: tuple(x0 if initial[STATE[i]] is None
                                                    else initial[STATE[i]] for i in carried),
                 carried, observe)


def _carried(exprs: list[sp.Expr]) -> list[int]:
    """Indices of the state variables the norm ``x'`` depends on, directly or through others."""
    needed = {0}
    while True:
        more = {STATE.index(s) for i in needed for s in exprs[i].free_symbols if s in STATE}
        if more <= needed:
            return sorted(needed)
        needed |= more


def _hoisted(exprs: list[sp.Expr], state: list[sp.Symbol]) -> tuple[list[sp.Expr], dict]:
    """``exprs`` with every largest subexpression free of the ``state`` (and the product of the
    constant factors of a product, the sum of the constant terms of a sum) replaced by a symbol
    ``h<i>``; and those symbols' definitions."""
    constants: dict[sp.Expr, sp.Symbol] = {}

    def constant(e: sp.Expr) -> sp.Expr:
        return constants.setdefault(e, sp.Symbol(f"h{len(constants)}"))

    def visit(e: sp.Expr) -> sp.Expr:
        if e.is_Atom:
            return e
        if e.free_symbols.isdisjoint(state):
            return constant(e)
        if not (e.is_Add or e.is_Mul):
            return e.func(*[visit(a) for a in e.args])
        # the constant terms of a sum (factors of a product) become one symbol
        fixed = [a for a in e.args if a.free_symbols.isdisjoint(state)]
        varying = [visit(a) for a in e.args if not a.free_symbols.isdisjoint(state)]
        folded = e.func(*fixed)
        return e.func(folded if folded.is_Atom else constant(folded), *varying)

    return [visit(e) for e in exprs], {s: e for e, s in constants.items()}


def _loop_source(state: list[sp.Symbol], exprs: list[sp.Expr]) -> str:
    """Python source of ``run(state, stretches, params) -> (records, finished)`` iterating
    ``state <- exprs``; ``finished`` is False where the state left the floats."""
    exprs, constants = _hoisted(exprs, state)
    steps, final = sp.cse(exprs, symbols=sp.numbered_symbols("t"))
    hoisted, loop = dict(constants), []
    for symbol, e in steps:  # common subexpressions of constants alone go before the loop too
        if e.free_symbols <= set(hoisted) | set(PARAMETERS):
            hoisted[symbol] = e
        else:
            loop.append((symbol, e))
    printer = PythonCodePrinter({"standard": "python3"})
    names = ", ".join(printer.doprint(s) for s in state)
    olds = ", ".join(f"_{printer.doprint(s)}" for s in state)
    settled = " and ".join(f"abs({n} - _{n}) <= {SETTLED!r} * abs({n})"
                           for n in (printer.doprint(s) for s in state))
    lines = [
        "def run(state, stretches, params):",
        f"    {names}, = state",
        f"    {', '.join(printer.doprint(s) for s in PARAMETERS)}, = params",
        "    sqrt = math.sqrt  # a local name: no global and attribute look-up per step",
        *(f"    {s} = {printer.doprint(e)}" for s, e in hoisted.items()),
        f"    records = [({names},)]",
        "    try:",
        "        for n in stretches:",
        f"            {olds}, = {names},",
        "            for _ in repeat(None, n):",
        *(f"                {s} = {_local(printer.doprint(e))}" for s, e in loop),
        f"                {names}, = {', '.join(_local(printer.doprint(e)) for e in final)},",
        f"            records.append(({names},))",
        f"            if {settled}:",
        "                break",
        "    except (ArithmeticError, ValueError):  # left the floats",
        "        return records, False",
        "    return records, True",
    ]
    return "\n".join(lines) + "\n"


def _local(code: str) -> str:
    return code.replace("math.sqrt(", "sqrt(")
