"""The update rules of ``torch.optim`` as pure NumPy functions with explicit state.

One step ``update(optimizer, state, w, grad, hyper) -> (w_next, state_next)`` reproduces
``torch.optim.SGD`` (momentum, dampening 0, no Nesterov), ``Adam`` (bias correction, ``eps``
outside the square root), ``AdamW``, ``RMSprop`` (smoothing ``alpha``, ``eps`` outside the square
root, not centered, no momentum) and ``Adagrad`` (initial accumulator 0, no learning-rate decay)
step for step, and ``SGD(nesterov=True)``, Lion (Chen et al. 2023; the project's own
:class:`scalewise.models.lion.Lion`) and ``torch.optim.Muon``. Weight decay is the coupled L2
term ``grad + weight_decay * w`` where the optimizer's decay is coupled and the shrink
``w <- (1 - lr weight_decay) w`` where it is decoupled (AdamW, Lion, Muon; 001 Sec. 5; 004 Sec. 2).
The adaptive rules follow 001 Sec. 2 (RMSprop, Adagrad, Adam).

Every rule of :data:`RULES` acts coordinate by coordinate. Muon's does not: it orthogonalizes
the step matrix, and a weight vector is a ``1 x dim`` matrix whose orthogonal polar factor is
``s / ||s||``. :data:`VECTOR_RULES` holds it, exact (torch's five Newton-Schulz iterations in
bfloat16 leave that single singular value between about 0.7 and 1.2 instead of 1).

Arrays have any shape; hyperparameters broadcast against them. The same functions serve three
kinds of numbers: NumPy arrays (the reference sphere engine), torch tensors on any device (its
torch backend) and floats inside the compiled sphere kernel, which compiles these very functions
(:mod:`sim.sphere_kernel`). Hence square roots are written ``v ** 0.5`` (NumPy, torch and the
compiler all evaluate it as the correctly rounded square root, bit for bit ``np.sqrt``) and
``math.sqrt`` for Python scalars.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from scalewise.vocabulary import Decay, Optimizer


class Hyper(NamedTuple):
    """Hyperparameters of one step (arrays broadcastable to the weights)."""

    lr: np.ndarray | float
    weight_decay: np.ndarray | float
    momentum: np.ndarray | float
    beta1: float
    beta2: float
    eps: float
    rmsprop_alpha: float


class OptimizerState(NamedTuple):
    """``first``: momentum buffer (SGD) or first moment (Adam); ``second``: second moment (Adam,
    RMSprop) or sum of squared gradients (Adagrad); ``step``: steps taken so far."""

    step: int
    first: np.ndarray
    second: np.ndarray


def init_state(w: np.ndarray) -> OptimizerState:
    """Zero state, as ``torch.optim`` initialises it lazily at the first step."""
    return OptimizerState(step=0, first=np.zeros_like(w), second=np.zeros_like(w))


def update(optimizer: Optimizer, state: OptimizerState, w: np.ndarray, grad: np.ndarray,
           hyper: Hyper) -> tuple[np.ndarray, OptimizerState]:
    """One optimizer step from ``w`` with gradient ``grad`` (both ``(..., dim)``)."""
    rule = RULES[optimizer] if optimizer in RULES else VECTOR_RULES[optimizer]
    return step_with(rule, optimizer.properties.decay is Decay.DECOUPLED, state, w,
                     grad, hyper)


def step_with(rule, decoupled: bool, state: OptimizerState, w, grad, hyper: Hyper):
    """:func:`update` with its rule (a value of :data:`RULES`) and weight-decay form given:
    decoupled ``w <- (1 - lr weight_decay) w`` or the coupled L2 term ``grad + weight_decay w``."""
    if decoupled:
        w = w * (1 - hyper.lr * hyper.weight_decay)
    else:
        grad = grad + hyper.weight_decay * w
    step = state.step + 1
    direction, first, second = rule(state, grad, hyper, step)
    return w - hyper.lr * direction, OptimizerState(step, first, second)


def _sgd(state: OptimizerState, grad: np.ndarray, hyper: Hyper, step: int):
    # dampening 0: buf_1 = grad, buf_k = momentum buf_{k-1} + grad (zero initial buffer)
    first = hyper.momentum * state.first + grad
    return first, first, state.second


def _nesterov(state: OptimizerState, grad: np.ndarray, hyper: Hyper, step: int):
    # torch SGD(nesterov=True): the buffer as _sgd's, the step grad + momentum * buffer
    first = hyper.momentum * state.first + grad
    return grad + hyper.momentum * first, first, state.second


def _lion(state: OptimizerState, grad: np.ndarray, hyper: Hyper, step: int):
    # Chen et al. (2023), Program 1: the step's sign interpolates with beta1, the buffer with beta2
    mixed = hyper.beta1 * state.first + (1 - hyper.beta1) * grad
    # sign(mixed), written so that arrays, tensors and the kernel's floats all take it
    direction = (mixed > 0) * 1.0 - (mixed < 0) * 1.0
    first = hyper.beta2 * state.first + (1 - hyper.beta2) * grad
    return direction, first, state.second


def _muon(state: OptimizerState, grad: np.ndarray, hyper: Hyper, step: int):
    # torch Muon (nesterov=True): buf.lerp_(grad, 1 - mu); step grad.lerp(buf, mu), orthogonalized
    first = hyper.momentum * state.first + (1 - hyper.momentum) * grad
    direction = (1 - hyper.momentum) * grad + hyper.momentum * first
    norm = (direction * direction).sum(-1)[..., None] ** 0.5
    return direction / norm, first, state.second


def _adam(state: OptimizerState, grad: np.ndarray, hyper: Hyper, step: int):
    first = hyper.beta1 * state.first + (1 - hyper.beta1) * grad
    second = hyper.beta2 * state.second + (1 - hyper.beta2) * grad**2
    denom = second**0.5 / math.sqrt(1 - hyper.beta2**step) + hyper.eps
    return first / ((1 - hyper.beta1**step) * denom), first, second


def _rmsprop(state: OptimizerState, grad: np.ndarray, hyper: Hyper, step: int):
    a = hyper.rmsprop_alpha
    second = a * state.second + (1 - a) * grad**2
    return grad / (second**0.5 + hyper.eps), state.first, second


def _adagrad(state: OptimizerState, grad: np.ndarray, hyper: Hyper, step: int):
    second = state.second + grad**2
    return grad / (second**0.5 + hyper.eps), state.first, second


RULES = {
    Optimizer.SGD: _sgd,
    Optimizer.SGDM: _sgd,
    Optimizer.ADAM: _adam,
    Optimizer.ADAMW: _adam,
    Optimizer.RMSPROP: _rmsprop,
    Optimizer.ADAGRAD: _adagrad,
    Optimizer.NESTEROV: _nesterov,
    Optimizer.LION: _lion,
}
"""The coordinate-wise rules (the ones the compiled sphere kernel runs)."""

VECTOR_RULES = {Optimizer.MUON: _muon}
"""Rules that read the whole weight vector (run by the NumPy and torch sphere engines)."""
