"""The sphere engine in torch, on any device (``"cuda"`` above all): the NumPy engine's steps
(:func:`sim.sphere.run_sphere`) on tensors, with the same update rules
(:func:`sim.update_rules.update` takes tensors as well as arrays) in float64.

The noise comes from a ``torch.Generator`` on the device, seeded from the run's NumPy
generator, so its stream is its own: results agree with the other implementations in
distribution (tested on the CPU), not draw by draw. Records stay on the device until the run
ends. Tested here on the CPU only; on CUDA it runs the same code.
"""

from __future__ import annotations

import numpy as np
import torch

from scalewise import checks
from scalewise.sim.spec import SimulationSpec
from scalewise.sim.update_rules import Hyper, OptimizerState, update


def device_of(device: str) -> torch.device:
    """``device`` as a ``torch.device`` that this machine has (ValueError naming it otherwise)."""
    try:
        parsed = torch.device(device)
        torch.empty(0, device=parsed)
    except (RuntimeError, TypeError, AssertionError) as error:
        checks.fail("device", device, f"None or a torch device this machine has, such as "
                    f"'cpu' or 'cuda' ({error})")
    return parsed


def _norm(v: torch.Tensor) -> torch.Tensor:
    return (v * v).sum(-1, keepdim=True).sqrt()  # (..., 1)


def run_sphere_torch(spec: SimulationSpec, w: np.ndarray, state: OptimizerState,
                     rng: np.random.Generator, *, keep_direction: bool, device: str):
    """``(records, direction, final w)`` as NumPy arrays, computed on ``device``."""
    dev = device_of(device)

    def tensor(a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), device=dev)

    def axes(a) -> torch.Tensor:  # a hyperparameter, broadcastable to (*shape, runs, dim)
        return tensor(a)[..., None, None]

    generator = torch.Generator(device=dev)
    generator.manual_seed(int(rng.integers(2**63)))
    w = tensor(w)
    state = OptimizerState(state.step, tensor(state.first), tensor(state.second))
    lr, factors = axes(spec.lr), spec.lr_factors.tolist()
    grad_norm = (tensor(spec.grad_norm_at_steps(np.arange(spec.steps)))[..., None, None]
                 if spec.grad_norm_per_step else axes(spec.grad_norm)[None])  # (steps or 1, ...)
    constant = dict(weight_decay=axes(spec.weight_decay), momentum=axes(spec.momentum),
                    beta1=spec.betas[0], beta2=spec.betas[1], eps=spec.eps,
                    rmsprop_alpha=spec.rmsprop_alpha)
    out_shape = (len(spec.record_steps), *w.shape[:-1])
    norm_sq, angle = (torch.empty(out_shape, dtype=torch.float64, device=dev) for _ in range(2))
    direction = (torch.empty((*out_shape, w.shape[-1]), dtype=torch.float64, device=dev)
                 if keep_direction else None)
    for k in range(spec.steps):
        norm = _norm(w)  # (*shape, runs, 1)
        w_hat = w / norm
        z = torch.randn(w.shape, generator=generator, dtype=torch.float64, device=dev)
        z -= (z * w_hat).sum(-1, keepdim=True) * w_hat
        grad = grad_norm[k if spec.grad_norm_per_step else 0] * z / (_norm(z) * norm)
        w_next, state = update(spec.optimizer, state, w, grad,
                               Hyper(lr=lr * factors[k], **constant))
        if k % spec.record_every == 0:
            row = k // spec.record_every
            norm_sq[row] = norm[..., 0] ** 2
            a, b = w_hat, w_next / _norm(w_next)
            angle[row] = 2 * torch.atan2(_norm(a - b)[..., 0], _norm(a + b)[..., 0])
            if direction is not None:
                direction[row] = w_hat
        w = w_next / _norm(w_next) if spec.renormalize else w_next
    recorded = {"norm_sq": norm_sq.cpu().numpy(), "angular_update": angle.cpu().numpy()}
    return recorded, None if direction is None else direction.cpu().numpy(), w.cpu().numpy()
