"""Probes: plain functions of a model and a batch, cheap ones every step, costly ones on a schedule.

Cheap, per unit (rows of a weight, or the whole layer for LN; :func:`unit_rows`), measured
around one optimizer step: squared weight norm, effective learning rate in the form that fits
the optimizer, angular update, gradient norm at unit weight norm ``||grad J(w)|| ||w||``
(001 Eq. 18), and the cosine between ``w`` and ``grad J(w)`` (0 for scale-invariant weights,
001 Eq. 16 with degree 0).

Costly, per network: the input-output Jacobian's squared Frobenius norm, the Gauss-Newton norm
``theta^T G theta`` and its K-FAC approximation ``theta^T G_hat theta`` (004 Sec. 4.2, Lemma 2,
Theorem 1), and per layer the traces of the Fisher and Gauss-Newton blocks (004 Fig. 7). They
are evaluated in eval mode (batch norm with its running statistics), so each example is a
separate function of its input.

The Gauss-Newton quantities use the loss ``1/2 ||f(x) - t||^2`` per example, averaged over
examples, so the output metric is the identity: ``G = E_x[J_theta^T J_theta]``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from scalewise import checks
from scalewise.models.kfac import input_factor, output_factor
from scalewise.models.networks import Granularity, layer_weights
from scalewise.sim.effective import effective_lr as sim_effective_lr
from scalewise.theory.homogeneity import grad_norm_at_unit_norm
from scalewise.vocabulary import Optimizer

Metric = tuple[str, str, float]  # (layer, name, value); layer "" for the whole network

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU,
                nn.Softplus, nn.Identity)


# ----------------------------------------------------------------------------- cheap, per unit


def unit_rows(tensor: torch.Tensor, granularity: Granularity | None) -> torch.Tensor:
    """``tensor`` as (units, fan_in): one row per output unit (BN, WN and non-invariant
    weights), or a single row for a layer-invariant (LN) weight."""
    return tensor.reshape(1 if granularity == "layer" else tensor.shape[0], -1)


def norm_sq(w: torch.Tensor) -> torch.Tensor:
    """``||w||^2`` per row of ``w`` (units, fan_in) -> (units,)."""
    return w.pow(2).sum(dim=1)


def grad_norm_unit(w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``||grad J(w_hat)|| = ||grad J(w)|| ||w||`` per row (001 Eq. 18: the gradient of a
    scale-invariant cost is homogeneous of degree -1)."""
    return grad_norm_at_unit_norm(w.norm(dim=1), grad.norm(dim=1))


def cos_w_grad(w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Cosine between ``w`` and ``grad J(w)`` per row; 0 under scale invariance (001 Eq. 16),
    and 0 for a zero gradient (a dead unit) rather than 0/0."""
    norms = (w.norm(dim=1) * grad.norm(dim=1)).clamp_min(torch.finfo(w.dtype).tiny)
    return (w * grad).sum(dim=1) / norms


def angular_update(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Angle between ``w_k`` and ``w_{k+1}`` per row, as ``2 atan2(||u - v||, ||u + v||)`` of the
    unit vectors, accurate for small angles (unlike ``arccos`` of the cosine)."""
    u = before / before.norm(dim=1, keepdim=True)
    v = after / after.norm(dim=1, keepdim=True)
    return 2 * torch.atan2((u - v).norm(dim=1), (u + v).norm(dim=1))


def effective_lr_form(optimizer: torch.optim.Optimizer) -> Optimizer:
    """Which optimizer's effective-LR form ``optimizer`` steps with
    (:func:`scalewise.sim.effective.effective_lr`: ``lr / ||w||^2`` for SGD and momentum SGD,
    ``lr / ||w||`` for the Adam family, ``lr`` for K-FAC, whose step is invariant to the scale of
    the weights up to damping, 001 Sec. 5.2). An AdaGraft optimizer takes the form of the
    optimizer that sets its step's magnitude."""
    inner = getattr(optimizer, "magnitude", optimizer)
    if type(inner) is torch.optim.SGD:
        momentum = any(g.get("momentum", 0) for g in inner.param_groups)
        return Optimizer.SGDM if momentum else Optimizer.SGD
    for name in Optimizer:
        module, _, kind = name.properties.torch_class.rpartition(".")
        if type(inner) is getattr(importlib.import_module(module), kind):
            return name
    checks.fail("optimizer", type(inner).__name__, "an optimizer of "
                "scalewise.vocabulary.Optimizer (no effective-LR form for others)")


def effective_lr(lr: float, squared_norm: torch.Tensor, form: Optimizer) -> torch.Tensor:
    """Effective learning rate per unit for ``form`` (see :func:`effective_lr_form`)."""
    values = sim_effective_lr(form, squared_norm.cpu().numpy(), lr)
    return torch.as_tensor(values, dtype=squared_norm.dtype, device=squared_norm.device)


def unit_probes(
    before: torch.Tensor, grad: torch.Tensor, after: torch.Tensor, lr: float, form: Optimizer
) -> dict[str, torch.Tensor]:
    """Every cheap probe per unit (rows of ``before``/``grad``/``after``, (units, fan_in)) for
    one step from ``before`` to ``after`` taken with gradient ``grad`` and learning rate ``lr``."""
    squared = norm_sq(before)
    return {
        "norm_sq": squared,
        "effective_lr": effective_lr(lr, squared, form),
        "angular_update": angular_update(before, after),
        "grad_norm_unit": grad_norm_unit(before, grad),
        "cos_w_grad": cos_w_grad(before, grad),
    }


class StepProbe:
    """Snapshot of every layer weight and its gradient before a step; :meth:`metrics` after
    the step reduces :func:`unit_probes` to the layer mean."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.form = effective_lr_form(optimizer)
        self.lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
        self.weights = [w for w in layer_weights(model) if w.param.grad is not None]
        self.before = [unit_rows(w.param.detach(), w.granularity).clone() for w in self.weights]
        self.grads = [unit_rows(w.param.grad, w.granularity).clone() for w in self.weights]

    def metrics(self) -> list[Metric]:
        out = []
        for w, before, grad in zip(self.weights, self.before, self.grads):
            after = unit_rows(w.param.detach(), w.granularity)
            probes = unit_probes(before, grad, after, self.lrs[id(w.param)], self.form)
            out += [(w.name, name, float(v.mean())) for name, v in probes.items()]
        return out


# ----------------------------------------------------------------------------- costly, per network


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the duration, its previous mode restored after."""
    training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(training)


def jacobian_sq_norm(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``E_x ||J_zx(x)||_F^2``, the input-output Jacobian's squared Frobenius norm averaged over
    the examples of ``inputs`` (B, ...) (004 Sec. 4.2, Table 2). One pullback per output
    coordinate, batched with ``vmap``; examples are independent in eval mode, so each pullback
    of ``sum_i z_ik`` gives every example's row ``k`` at once."""
    with eval_mode(model):
        outputs, pullback = vjp(model, inputs.detach())  # outputs (B, C)
        classes = outputs.shape[-1]
        basis = torch.eye(classes, dtype=outputs.dtype, device=outputs.device)
        cotangents = basis[:, None, :].expand(classes, *outputs.shape)  # (C, B, C)
        (rows,) = vmap(pullback)(cotangents)  # (C, B, ...)
    return rows.detach().pow(2).sum() / inputs.shape[0]


def _linear_sequential_problem(model: nn.Module) -> str | None:
    """Why ``model`` is not an ``nn.Sequential`` of Linear layers and elementwise activations
    (``None`` when it is)."""
    if not isinstance(model, nn.Sequential):
        return (f"model must be an nn.Sequential of Linear layers and elementwise activations, "
                f"got {type(model).__name__}")
    for name, module in model.named_children():
        if not isinstance(module, (nn.Linear, nn.Flatten) + _ELEMENTWISE):
            return (f"model must hold only Linear layers and elementwise activations; "
                    f"layer '{name}' is a {type(module).__name__}")
    return None


def _check_linear_sequential(model: nn.Module) -> None:
    problem = _linear_sequential_problem(model)
    if problem is not None:
        raise ValueError(problem)


def gn_norm(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Gauss-Newton norm ``theta^T G theta = E_x ||J_theta(x) theta||^2`` (004 Sec. 4.2), with
    ``theta`` every parameter of the ``nn.Sequential`` ``model``; one forward-mode pass."""
    _check_linear_sequential(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = inputs.detach()
    with eval_mode(model):
        _, tangent = jvp(lambda p: functional_call(model, p, (x,)), (params,), (params,))  # (B, C)
    return tangent.pow(2).sum() / x.shape[0]


def _linear_activations(model: nn.Sequential, inputs: torch.Tensor):
    """Forward pass recording each Linear layer's input ``a`` (B, in) and output ``s`` (B, out)."""
    records, x = [], inputs.detach()
    for module in model:
        y = module(x)
        if isinstance(module, nn.Linear):
            records.append((module, x.detach(), y))
        x = y
    return x, records


def kfac_gn_factors(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    samples: int | None = None,
    generator: torch.Generator | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """K-FAC Gauss-Newton factors ``(A, S)`` of each Linear layer of the ``nn.Sequential``
    ``model`` (003, "Modeling the pseudo-gradients"): ``A = E[a_bar a_bar^T]`` (``a_bar = [a; 1]``
    with a bias) and ``S = E[Ds Ds^T]``, ``Ds = J_zs^T Dz`` pulled back from ``Dz ~ N(0, I)``
    (003, "Pullback Sampling Trick").

    ``samples=None`` (default) takes the expectation over ``Dz`` exactly: since
    ``E[Dz Dz^T] = I``, pulling back the ``C`` basis vectors gives
    ``S = E_x[J_zs^T J_zs]``. An integer draws that many ``Dz`` per example with ``generator``.
    Block ``l`` of ``G_hat`` is ``S (x) A`` in PyTorch's row-major parameter order.
    """
    _check_linear_sequential(model)
    checks.integer("samples", samples, 1, optional=True)
    with torch.enable_grad(), eval_mode(model):
        outputs, records = _linear_activations(model, inputs)  # outputs (B, C)
        batch, classes = outputs.shape
        if samples is None:
            eye = torch.eye(classes, dtype=outputs.dtype, device=outputs.device)
            directions = [eye[k].expand(batch, classes) for k in range(classes)]
        else:
            directions = [torch.randn(outputs.shape, generator=generator, dtype=outputs.dtype,
                                      device=outputs.device) for _ in range(samples)]
        pulled = [torch.autograd.grad(outputs, [s for _, _, s in records], dz, retain_graph=True)
                  for dz in directions]
    factors = []
    for i, (module, a, _) in enumerate(records):
        ds = torch.cat([p[i] for p in pulled])  # (B * draws, out)
        s = output_factor(ds, batch * (1 if samples is None else samples))
        factors.append((input_factor(a, bias=module.bias is not None), s))
    return factors


def kfac_gn_norm(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    samples: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """K-FAC Gauss-Newton norm ``theta^T G_hat theta = sum_l vec(W_l)^T (A_{l-1} (x) S_l) vec(W_l)
    = sum_l <W_l, S_l W_l A_{l-1}>`` (004 Lemma 2; ``W_l = [W | b]`` with a bias), factors from
    :func:`kfac_gn_factors` (same ``samples``/``generator``)."""
    factors = kfac_gn_factors(model, inputs, samples=samples, generator=generator)
    total = inputs.new_zeros(())
    for (a, s), module in zip(factors, [m for m in model if isinstance(m, nn.Linear)]):
        w = module.weight.detach()
        if module.bias is not None:
            w = torch.cat([w, module.bias.detach()[:, None]], dim=1)  # (out, in + 1)
        total = total + (w * (s @ w @ a)).sum()
    return total


def softmax_hessian(logits: torch.Tensor) -> torch.Tensor:
    """``diag(p) - p p^T`` per example (B, C, C), ``p = softmax(logits)``: the Hessian of the
    cross-entropy in the logits (B, C), the output metric of the Fisher and of the exact
    Gauss-Newton matrix of that loss (004 Sec. 4.3). Detached.

    >>> softmax_hessian(torch.zeros(1, 2))
    tensor([[[ 0.2500, -0.2500],
             [-0.2500,  0.2500]]])
    """
    p = torch.softmax(logits.detach(), dim=-1)  # (B, C)
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


def curvature_traces(model: nn.Module, inputs: torch.Tensor, *, chunk: int = 16) -> list[Metric]:
    """Per layer weight: ``tr G_ll = E_x ||J_zw(x)||_F^2`` and the Fisher's
    ``tr F_ll = E_x tr(J_zw J_zw^T (diag p - p p^T))`` for softmax outputs ``p`` (004 Sec. 4.3,
    Fig. 7: the Fisher adds the output Hessian ``diag p - p p^T`` to the Gauss-Newton metric).
    Per-example Jacobians via ``vmap(jacrev)``, ``chunk`` examples at a time (memory
    ``chunk x C x P``)."""
    weights = layer_weights(model)
    names = {id(p): n for n, p in model.named_parameters()}
    keys = [names[id(w.param)] for w in weights]
    params = {k: v.detach() for k, v in model.named_parameters()}
    chosen = {k: params[k] for k in keys}

    def logits(trial: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**params, **trial}, (x[None],))[0]  # (C,)

    gn, fisher = {k: 0.0 for k in keys}, {k: 0.0 for k in keys}
    with eval_mode(model):
        for x in inputs.detach().split(chunk):
            jac = vmap(jacrev(logits), in_dims=(None, 0))(chosen, x)  # name -> (b, C, *shape)
            hessian = softmax_hessian(model(x))  # (b, C, C)
            for key in keys:
                j = jac[key].flatten(2)  # (b, C, P)
                kernel = j @ j.transpose(1, 2)  # (b, C, C)
                gn[key] += float(kernel.diagonal(dim1=1, dim2=2).sum())
                fisher[key] += float((kernel * hessian).sum())
    count = inputs.shape[0]
    return [metric for w, key in zip(weights, keys)
            for metric in ((w.name, "gn_trace", gn[key] / count),
                           (w.name, "fisher_trace", fisher[key] / count))]


def costly_probes(model: nn.Module, inputs: torch.Tensor) -> list[Metric]:
    """Jacobian norm; Gauss-Newton and K-FAC Gauss-Newton norms where defined (an
    ``nn.Sequential`` of Linear layers and elementwise activations); per-layer Fisher and
    Gauss-Newton traces."""
    out = [("", "jacobian_sq_norm", float(jacobian_sq_norm(model, inputs)))]
    if _linear_sequential_problem(model) is None:
        out.append(("", "gn_norm", float(gn_norm(model, inputs))))
        out.append(("", "kfac_gn_norm", float(kfac_gn_norm(model, inputs))))
    return out + curvature_traces(model, inputs)
