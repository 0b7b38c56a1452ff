"""Exact curvature of the first layer of a small MLP (:func:`models.build_model`), measured: its
Gauss-Newton block with the full-batch Jacobian (so a normalization's statistics path is
included), optionally in the quasi-diagonal coordinates of 001 Eq. (9), K-FAC's factor ``S``
of it, the inputs each Linear layer sees, and the condition number on a spectrum's range.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from scalewise.models.networks import NormedLayer, layer_weights
from scalewise.models.probes import softmax_hessian
from scalewise.theory import preconditioning

QUASI_DIAGONAL = "quasi-diagonal"  # the variant measured in the coordinates of 001 Eq. (9)


def first_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name (as in ``model.named_parameters``) and module of the first Linear layer."""
    name = layer_weights(model)[0].name
    module = model.get_submodule(name)
    if isinstance(module, NormedLayer):
        return f"{name}.layer", module.layer
    return name, module


def linear_inputs(model: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The inputs ``(N, fan_in)`` of every Linear layer of ``model`` by module name, captured by
    forward pre-hooks on one pass of ``inputs`` without gradients (in the model's mode)."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_pre_hook(
        lambda _, args, name=name: captured.__setitem__(name, args[0].detach()))
        for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def first_layer_logits(model: nn.Module, inputs: torch.Tensor, variant: str
                       ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits of ``inputs`` as a function of the first layer's ``(W, b)`` flattened (``W`` alone
    where a normalization removed the bias), or, for ``quasi-diagonal``, of
    ``(W_tilde, b_tilde)`` of 001 Eq. (9) with the batch mean and variance of the layer's inputs
    (theory's :func:`~scalewise.theory.preconditioning.parameters_from_reparameterized`)."""
    name, layer = first_linear(model)
    out_dim, in_dim = layer.weight.shape
    a = linear_inputs(model, inputs)[name]
    mean, std = a.mean(0), a.std(0, unbiased=False)

    def logits(theta: torch.Tensor) -> torch.Tensor:
        weight = theta[:out_dim * in_dim].reshape(out_dim, in_dim)
        params = {f"{name}.weight": weight}
        if layer.bias is not None:
            bias = theta[out_dim * in_dim:]
            if variant == QUASI_DIAGONAL:
                weight, bias = preconditioning.parameters_from_reparameterized(
                    weight, bias, torch.diag(1 / std), mean)
            params = {f"{name}.weight": weight, f"{name}.bias": bias}
        return torch.func.functional_call(model, params, (inputs,))
    return logits


def first_layer_theta(model: nn.Module, inputs: torch.Tensor, variant: str) -> torch.Tensor:
    """The point ``theta`` of :func:`first_layer_logits` at which ``model`` is now (001 Eq. 9,
    :func:`~scalewise.theory.preconditioning.reparameterize`, for ``quasi-diagonal``)."""
    name, layer = first_linear(model)
    weight = layer.weight.detach()
    if layer.bias is None:
        return weight.flatten()
    bias = layer.bias.detach()
    if variant == QUASI_DIAGONAL:
        a = linear_inputs(model, inputs)[name]
        weight, bias = preconditioning.reparameterize(
            weight, bias, torch.diag(a.std(0, unbiased=False)), a.mean(0))
    return torch.cat([weight.flatten(), bias])


def gauss_newton_block(logits_of: Callable[[torch.Tensor], torch.Tensor],
                       theta: torch.Tensor) -> torch.Tensor:
    """The exact Gauss-Newton block ``(1/N) sum_n J_n^T H_n J_n`` of the mean cross-entropy in
    the parameters ``theta`` (P,), ``J`` the Jacobian of the logits of the whole batch (with
    batch statistics, so BN's statistics path is included), ``H_n = diag(p_n) - p_n p_n^T``
    (:func:`models.probes.softmax_hessian`). The Jacobian is taken by autograd, which lets a
    normalization update its running statistics on the way."""
    hessian = softmax_hessian(logits_of(theta))  # (N, C, C)
    jacobian = torch.autograd.functional.jacobian(logits_of, theta, vectorize=True)  # (N, C, P)
    return torch.einsum("ncp,ncd,ndq->pq", jacobian, hessian, jacobian).detach() / len(hessian)


def pseudo_gradient_factor(model: nn.Sequential, inputs: torch.Tensor) -> torch.Tensor:
    """K-FAC's ``S = (1/N) sum_n J_sn^T H_n J_sn`` of the first layer of a network without
    normalization, ``J_sn`` the Jacobian of example n's logits in its first-layer
    pre-activations."""
    name, _ = first_linear(model)
    split = list(model._modules).index(name) + 1
    front, head = model[:split], model[split:]
    pre = front(inputs).detach()  # (N, H)
    jacobian = torch.func.vmap(torch.func.jacrev(head))(pre)  # (N, C, H)
    hessian = softmax_hessian(head(pre))
    return torch.einsum("nch,ncd,ndk->hk", jacobian, hessian, jacobian).detach() / len(pre)


def range_condition(eigenvalues: torch.Tensor) -> float:
    """Largest over smallest eigenvalue on the range (eigenvalues above 1e-9 of the largest):
    BN's and centering's exact null directions (bias, scale) are left out."""
    top = float(eigenvalues[-1])
    kept = eigenvalues[eigenvalues > 1e-9 * top]
    return top / float(kept[0])
