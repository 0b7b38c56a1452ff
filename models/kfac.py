"""K-FAC (003, "Kronecker-Factored Approximate Curvature"; 001 Sec. 5.2): a hook-based
``torch.optim.Optimizer`` for ``Linear`` and ``Conv2d`` layers, and the pure functions it is made of.

For a layer ``s = W_bar a_bar`` (``a_bar = [a; 1]`` when the layer has a bias, 003 "Modeling the
pseudo-gradients") the curvature block is approximated by the Kronecker product of two factors::

    G_ll ~ A (x) S,   A = E[a_bar a_bar^T]   (in x in),   S = E[Ds Ds^T]   (out x out)

with ``Ds`` a *pseudo-gradient*: a random output vector ``Dz`` pulled back by backprop (003,
"Pullback Sampling Trick"). ``Dz ~ N(0, I)`` gives the Gauss-Newton matrix ``J^T J`` of the logits
(the paper 004's K-FAC-G); ``Dz = grad_z -log p(t|x)`` with ``t`` sampled from the model's
predictive distribution gives the Fisher ``J^T (diag(p) - p p^T) J`` (K-FAC-F). With parameters
flattened row-major (PyTorch's order) the block is ``S (x) A`` and
``(S (x) A) vec(V) = vec(S V A)`` (003, "Efficient computation").

Damping is the Tikhonov form of 001 Eq. (26), applied exactly: ``(A (x) S + eta I)^{-1} grad``,
computed from the eigendecompositions ``A = Q_A D_A Q_A^T``, ``S = Q_S D_S Q_S^T`` as
``Q_S [(Q_S^T V Q_A) / (d_S d_A^T + eta)] Q_A^T`` (003, spectral decomposition of a Kronecker
product). Because ``S`` of a layer feeding batch norm scales as ``1/||w||^2`` (001 Sec. 5.2),
the damping seen by the normalized weights is ``eta ||w||^2``; with ``eta = 0`` the update is
invariant to rescaling those weights.

Convolutions follow Grosse & Martens (2016, KFC): ``A`` averages the outer products of the
input patches over examples and positions, ``S`` sums the pseudo-gradient outer products over
positions and averages over examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from scalewise import checks
from scalewise.models.config import Curvature, WeightDecayMode

Eigen = tuple[torch.Tensor, torch.Tensor]  # (eigenvalues (n,), eigenvectors (n, n))

_NORMALIZATION = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def layer_inputs(module: nn.Linear | nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows ``a`` (rows, fan_in): one per example for ``Linear``, one per
    example and output position (an unfolded patch) for ``Conv2d``."""
    if isinstance(module, nn.Conv2d):
        patches = F.unfold(x, module.kernel_size, dilation=module.dilation,
                           padding=module.padding, stride=module.stride)  # (B, C k k, T)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return x.reshape(-1, x.shape[-1])


def layer_output_grads(module: nn.Linear | nn.Conv2d, ds: torch.Tensor) -> torch.Tensor:
    """Pseudo-gradients of the layer's output as rows (rows, out), ordered as :func:`layer_inputs`."""
    if isinstance(module, nn.Conv2d):
        return ds.flatten(2).transpose(1, 2).reshape(-1, ds.shape[1])  # (B T, C_out)
    return ds.reshape(-1, ds.shape[-1])


def input_factor(a: torch.Tensor, *, bias: bool) -> torch.Tensor:
    """``A = E[a_bar a_bar^T]`` over the rows of ``a`` (rows, d); ``a_bar = [a; 1]`` with a bias
    (003, "Modeling the pseudo-gradients")."""
    if bias:
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)  # (rows, d + 1)
    return a.T @ a / a.shape[0]


def output_factor(ds: torch.Tensor, batch: int) -> torch.Tensor:
    """``S = E[Ds Ds^T]``: the outer products of the rows of ``ds`` (rows, out), summed over
    positions and averaged over the ``batch`` examples."""
    return ds.T @ ds / batch


def sample_output_grads(
    outputs: torch.Tensor, curvature: Curvature, generator: torch.Generator | None
) -> torch.Tensor:
    """Random ``Dz`` (B, C) whose covariance is the output metric of ``curvature``: ``N(0, I)``
    for Gauss-Newton; ``p - onehot(t)``, ``t ~ softmax(outputs)``, for the Fisher (003, PST)."""
    outputs = outputs.detach()
    if Curvature(curvature) == Curvature.GAUSS_NEWTON:
        return torch.randn(outputs.shape, generator=generator, dtype=outputs.dtype,
                           device=outputs.device)
    probs = torch.softmax(outputs, dim=-1)  # (B, C)
    sampled = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
    return probs - F.one_hot(sampled, probs.shape[-1]).to(probs.dtype)


def eigen(factor: torch.Tensor) -> Eigen:
    """Eigendecomposition of a symmetric factor (symmetrized first against rounding)."""
    return torch.linalg.eigh((factor + factor.T) / 2)


def damped_solve(grad: torch.Tensor, eig_a: Eigen, eig_s: Eigen, damping: float) -> torch.Tensor:
    """``(A (x) S + damping I)^{-1} grad`` for ``grad`` (out, in) flattened row-major
    (001 Eq. 26 with the K-FAC block; 003 "Efficient computation")."""
    (d_a, q_a), (d_s, q_s) = eig_a, eig_s
    rotated = q_s.T @ grad @ q_a  # (out, in)
    return q_s @ (rotated / (d_s[:, None] * d_a[None, :] + damping)) @ q_a.T


def _joined(module: nn.Linear | nn.Conv2d, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``[W | b]`` (out, fan_in [+ 1]) from a weight-shaped and, with a bias, a bias-shaped tensor."""
    matrix = tensors[0].reshape(tensors[0].shape[0], -1)
    return torch.cat([matrix, tensors[1][:, None]], dim=1) if module.bias is not None else matrix


def preconditioned_layers(model: nn.Module) -> dict[nn.Module, str]:
    """The ``Linear``/``Conv2d`` layers of ``model`` K-FAC preconditions, with their names.

    Raises ``ValueError`` for a layer it cannot precondition: a reparametrized (e.g. weight
    normalized) or grouped convolution, or any other module type holding parameters other
    than a batch/layer/group norm (whose parameters are updated by SGD)."""
    layers = {}
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if parametrize.is_parametrized(module):
                raise ValueError(f"K-FAC supports Linear and Conv2d layers with plain weights; "
                                 f"layer '{name}' is reparametrized (weight norm)")
            if isinstance(module, nn.Conv2d) and module.groups != 1:
                raise ValueError(f"K-FAC supports Conv2d with groups=1; layer '{name}' has "
                                 f"groups={module.groups}")
            layers[module] = name
        elif own and not isinstance(module, _NORMALIZATION):
            raise ValueError(f"K-FAC supports Linear, Conv2d and normalization layers; layer "
                             f"'{name}' is a {type(module).__name__}")
    return layers


class KFAC(torch.optim.Optimizer):
    """K-FAC with running-average factors, separate factor and inverse update intervals,
    exact Tikhonov damping (001 Eq. 26), momentum, and weight decay ``l2`` (``lambda w`` added
    to the gradient before preconditioning) or ``decoupled`` (``w <- (1 - alpha lambda) w``,
    001 Eq. 22). Parameters outside ``Linear``/``Conv2d`` layers (norm gains and shifts) take
    SGD steps with the same learning rate, momentum and weight decay.

    Usage per step: forward pass, ``update_curvature(outputs, generator)`` (a second backward
    pass from a sampled ``Dz``, on factor-update steps only), ``loss.backward()``, ``step()``.
    The factors, their eigendecompositions, momentum buffers and step counts are optimizer
    state, so ``state_dict``/``load_state_dict`` resume a run exactly.
    """

    def __init__(
        self,
        model: nn.Module,
        params: Iterable[Any] | None = None,
        *,
        lr: float,
        momentum: float = 0.0,
        damping: float = 1e-3,
        weight_decay: float = 0.0,
        wd_mode: WeightDecayMode = WeightDecayMode.NONE,
        curvature: Curvature = Curvature.GAUSS_NEWTON,
        factor_decay: float = 0.95,
        factor_interval: int = 1,
        inverse_interval: int = 20,
    ):
        _check_hyperparameters(lr, momentum, damping, weight_decay, factor_decay,
                               factor_interval, inverse_interval)
        defaults = dict(lr=lr, momentum=momentum, damping=damping, weight_decay=weight_decay,
                        wd_mode=WeightDecayMode(wd_mode).value)
        super().__init__(model.parameters() if params is None else params, defaults)
        self.curvature = Curvature(curvature)
        self.factor_decay = factor_decay
        self.factor_interval = factor_interval
        self.inverse_interval = inverse_interval
        owned = {p for group in self.param_groups for p in group["params"]}
        self.layers = {m: n for m, n in preconditioned_layers(model).items() if m.weight in owned}
        self._check_layer_groups()
        self._captured: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self._hooks = [m.register_forward_hook(self._capture) for m in self.layers]

    def _check_layer_groups(self) -> None:
        for module, name in self.layers.items():
            if module.bias is not None and self._group_of(module.bias) is not self._group_of(module.weight):
                raise ValueError(f"params: the weight and bias of layer '{name}' must be in the "
                                 f"same parameter group (K-FAC preconditions them jointly)")

    def _group_of(self, param: torch.Tensor) -> dict[str, Any] | None:
        return next((g for g in self.param_groups if any(p is param for p in g["params"])), None)

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        # Only training forward passes feed the curvature; evaluation passes are ignored.
        if module.training and torch.is_grad_enabled():
            self._captured[module] = (inputs[0].detach(), output)

    def steps_taken(self) -> int:
        """Number of :meth:`step` calls so far (stored with each layer's state)."""
        return next((int(self.state[m.weight]["step"]) for m in self.layers
                     if "step" in self.state[m.weight]), 0)

    def update_curvature(self, outputs: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Update the running factors from the last training forward pass, whose output is
        ``outputs`` (B, C), on every ``factor_interval``-th step: sample ``Dz`` (with
        ``generator``), pull it back to each layer's output, and average
        ``A <- decay A + (1 - decay) A_batch`` (003, "Estimating the covariance matrices";
        the first estimate initialises the average). Outputs that are not finite (a diverged
        run) leave the factors as they are: no targets can be sampled from them, and the
        caller sees the divergence in its loss."""
        captured, self._captured = self._captured, {}
        if self.steps_taken() % self.factor_interval or not bool(outputs.isfinite().all()):
            return
        missing = [self.layers[m] for m in self.layers if m not in captured]
        if missing:
            raise RuntimeError(f"no training forward pass recorded for layers {missing}; call "
                               f"update_curvature after model(inputs) in training mode")
        dz = sample_output_grads(outputs, self.curvature, generator)  # (B, C)
        modules = list(self.layers)
        ds = torch.autograd.grad(outputs, [captured[m][1] for m in modules], grad_outputs=dz,
                                 retain_graph=True)
        with torch.no_grad():
            for module, grad in zip(modules, ds):
                a = layer_inputs(module, captured[module][0])
                new_a = input_factor(a, bias=module.bias is not None)
                new_s = output_factor(layer_output_grads(module, grad), batch=outputs.shape[0])
                self._average(self.state[module.weight], new_a, new_s)

    def _average(self, state: dict[str, Any], new_a: torch.Tensor, new_s: torch.Tensor) -> None:
        if "A" not in state:
            state["A"], state["S"] = new_a, new_s
            return
        state["A"].mul_(self.factor_decay).add_(new_a, alpha=1 - self.factor_decay)
        state["S"].mul_(self.factor_decay).add_(new_s, alpha=1 - self.factor_decay)

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """One K-FAC step (SGD for parameters outside preconditioned layers)."""
        if closure is not None:
            raise ValueError("closure: K-FAC takes no closure (call update_curvature, backward, step)")
        weights = {m.weight: m for m in self.layers}
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None or any(param is m.bias for m in self.layers):
                    continue
                if param in weights:
                    self._layer_step(weights[param], group)
                else:
                    _apply(group, [param], param.grad, param, self.state[param])

    def _layer_step(self, module: nn.Linear | nn.Conv2d, group: dict[str, Any]) -> None:
        state = self.state[module.weight]
        if "A" not in state:
            raise RuntimeError(f"K-FAC has no curvature factors for layer '{self.layers[module]}'"
                               f" yet: call update_curvature(outputs) before the first step")
        step = int(state.get("step", 0))
        if step % self.inverse_interval == 0 or "eig_A" not in state:
            (state["eig_A"], state["vec_A"]), (state["eig_S"], state["vec_S"]) = (
                eigen(state["A"]), eigen(state["S"]))
        params = [module.weight] + ([module.bias] if module.bias is not None else [])
        weight = _joined(module, tuple(p.detach() for p in params))  # (out, in [+1])
        grad = _joined(module, tuple(p.grad for p in params))
        if group["wd_mode"] == WeightDecayMode.L2.value:
            grad = grad + group["weight_decay"] * weight
        direction = damped_solve(grad, (state["eig_A"], state["vec_A"]),
                                 (state["eig_S"], state["vec_S"]), group["damping"])
        _apply(group, params, direction, weight, state, l2_added=True)
        state["step"] = step + 1


def _apply(
    group: dict[str, Any],
    params: list[torch.Tensor],
    direction: torch.Tensor,
    weight: torch.Tensor,
    state: dict[str, Any],
    *,
    l2_added: bool = False,
) -> None:
    """``buf <- momentum buf + d``; decoupled decay ``w <- (1 - lr wd) w``; ``w <- w - lr buf``.
    ``direction`` and ``weight`` are one tensor for ``params`` (``[W | b]`` for a layer)."""
    lr, decay, mode = group["lr"], group["weight_decay"], group["wd_mode"]
    if mode == WeightDecayMode.L2.value and not l2_added:
        direction = direction + decay * weight
    if group["momentum"]:
        buffer = state.get("momentum_buffer")
        state["momentum_buffer"] = direction.clone() if buffer is None else (
            buffer.mul_(group["momentum"]).add_(direction))
        direction = state["momentum_buffer"]
    shrink = 1 - lr * decay if mode == WeightDecayMode.DECOUPLED.value else 1.0
    for param, part in zip(params, _split(direction, params)):
        param.mul_(shrink).sub_(lr * part)


def _split(direction: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Undo :func:`_joined`: ``[W | b]`` back to the weight and bias shapes."""
    if len(params) == 1:
        return [direction.reshape(params[0].shape)]
    return [direction[:, :-1].reshape(params[0].shape), direction[:, -1]]


def _check_hyperparameters(lr: float, momentum: float, damping: float, weight_decay: float,
                           factor_decay: float, factor_interval: int, inverse_interval: int) -> None:
    checks.positive("lr", lr)
    checks.unit_interval("momentum", momentum)
    checks.nonnegative("damping", damping)
    checks.nonnegative("weight_decay", weight_decay)
    checks.unit_interval("factor_decay", factor_decay)
    checks.integer("factor_interval", factor_interval, 1)
    checks.integer("inverse_interval", inverse_interval, 1)
