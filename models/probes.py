"""Probes: plain functions of a model and a batch, cheap ones every step, costly ones on a schedule.

Cheap, per unit (rows of a weight, or the whole layer for LN; :func:`unit_rows`), measured
around one optimizer step by :class:`StepProbe`: the sufficient statistics
:data:`UNIT_STATISTICS` of the step (inner products of the weights before and after, the
gradient, the update and the previous gradient), summed per layer at every probed step and kept
per unit at a sparser cadence; and, for contrast and plots, unit means of the squared norm, the
effective learning rate, the angular update, the gradient norm at unit weight norm (001 Eq. 18)
and ``cos(w, grad J(w))`` (0 for scale-invariant weights, 001 Eq. 16 with degree 0).

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
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from scalewise import checks
from scalewise.models.kfac import input_factor, output_factor
from scalewise.models.networks import Granularity, layer_weights
from scalewise.sim.effective import effective_lr as sim_effective_lr
from scalewise.theory.homogeneity import grad_norm_at_unit_norm
from scalewise.vocabulary import Decay, Optimizer

Metric = tuple[str, str, float]  # (layer, name, value); layer "" for the whole network

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU,
                nn.Softplus, nn.Identity)


# ----------------------------------------------------------------------------- cheap, per unit

UNIT_STATISTICS = ("norm_sq", "grad_sq", "w_dot_grad", "update_sq", "w_dot_update",
                   "w_dot_next", "next_norm_sq", "grad_dot_prev", "prev_grad_sq")
"""The sufficient statistics of one unit ``w`` (a row of a weight, or a whole LN layer) for one
step ``w_{k+1} = rho w_k - u_k``, ``g_k = grad J(w_k)`` the gradient of the loss alone:
``||w_k||^2``, ``||g_k||^2``, ``<w_k, g_k>``, ``||u_k||^2``, ``<w_k, u_k>``, ``<w_k, w_{k+1}>``,
``||w_{k+1}||^2``, ``<g_k, g_{k-1}>``, ``||g_{k-1}||^2``. Each is a sum over the unit's
coordinates, so a layer's statistic is the sum of its units'; the step is split into the decay
factor ``rho`` (:func:`decay_factor`) and the optimizer's update ``u``, and
``||w_{k+1}||^2 = rho^2 ||w_k||^2 - 2 rho <w_k, u_k> + ||u_k||^2`` exactly."""

LAYER_MEANS = ("norm_sq", "effective_lr", "angular_update", "grad_norm_unit", "cos_w_grad")
"""Unit means logged beside the layer sums, for contrast and for plots: ``||w||^2``, the
effective LR, the angular update, ``||grad J(w_hat)|| = ||g|| ||w||`` (001 Eq. 18) and
``cos(w, g)`` (0 under scale invariance, 001 Eq. 16)."""


def unit_rows(tensor: torch.Tensor, granularity: Granularity | None) -> torch.Tensor:
    """``tensor`` as (units, fan_in): one row per output unit (BN, WN and non-invariant
    weights), or a single row for a layer-invariant (LN) weight."""
    return tensor.reshape(1 if granularity == "layer" else tensor.shape[0], -1)


def norm_sq(w: torch.Tensor) -> torch.Tensor:
    """``||w||^2`` per row of ``w`` (units, fan_in) -> (units,)."""
    return w.pow(2).sum(dim=1)


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


def decay_factor(form: Optimizer, group: dict) -> float:
    """``rho`` of the step ``w_{k+1} = rho w_k - u_k`` for the parameters of ``group``: the
    shrink ``1 - lr lambda`` where the weight decay multiplies the weights by it (001 Eq. 22: a
    decoupled decay, or an L2 term no preconditioner divides, :meth:`Properties.shrinks`), 1
    where the decay is part of the preconditioned update ``u``."""
    lr = group["lr"]
    if group.get("decoupled_weight_decay"):  # the factory's pre-hook, any optimizer
        return 1.0 - lr * group["decoupled_weight_decay"]
    rate = group.get("weight_decay", 0.0)
    decay = form.properties.decay
    if "wd_mode" in group:  # K-FAC chooses per group
        decay = Decay.DECOUPLED if group["wd_mode"] == Decay.DECOUPLED.value else Decay.COUPLED
    return 1.0 - lr * rate if rate and form.properties.shrinks(decay) else 1.0


def sample_units(units: int, limit: int | None) -> np.ndarray:
    """The units whose statistics are recorded: all of them, or ``limit`` of them evenly spread
    over the layer (first and last included), the same at every step.

    >>> sample_units(10, 4).tolist()
    [0, 3, 6, 9]
    """
    if limit is None or units <= limit:
        return np.arange(units)
    return np.unique(np.round(np.linspace(0, units - 1, limit)).astype(int))


@dataclass(frozen=True)
class UnitRecord:
    """Per-unit statistics of one layer at one step: ``units`` (the unit indices recorded) and
    ``values`` of shape ``(len(UNIT_STATISTICS), len(units))``."""

    units: np.ndarray
    values: np.ndarray


class StepProbe:
    """The sufficient statistics of every layer weight around optimizer steps.

    It persists across the steps of a run to hold the previous step's gradient. :meth:`plan`
    says what the next step measures; before the step (after the backward pass)
    :meth:`snapshot` copies what is due; after the step :meth:`measure` returns the layer metrics
    (the sums of :data:`UNIT_STATISTICS`, the decay factor ``rho``, the unit means of
    :data:`LAYER_MEANS`) and, where due, the per-unit records. Statistics are computed in
    float64 from the weights as they are (float32 or float64), for all layers at once: the
    weights are flattened into one vector and every statistic is one product summed per unit
    (a handful of tensor operations per step, whatever the depth)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 unit_sample: int | None = None) -> None:
        self.form = effective_lr_form(optimizer)
        self.weights = layer_weights(model)
        self.optimizer = optimizer
        # group indices, not the group dicts: loading a checkpoint replaces the dicts
        self.group_of = [next(i for i, g in enumerate(optimizer.param_groups)
                              if any(p is w.param for p in g["params"])) for w in self.weights]
        units = [unit_rows(w.param, w.granularity).shape[0] for w in self.weights]
        self.starts = np.cumsum([0, *units[:-1]])  # first unit of each layer
        self.units = np.array(units)
        self.sizes = [w.param.numel() for w in self.weights]  # entries per layer
        device = self.weights[0].param.device
        self.unit_of = torch.repeat_interleave(  # (entries,) the unit of each weight entry
            torch.arange(sum(units), device=device),
            torch.tensor([size // n for size, n in zip(self.sizes, units) for _ in range(n)],
                         device=device))
        self.samples = [sample_units(n, unit_sample) for n in units]
        self.previous: torch.Tensor | None = None
        self._snapshot: tuple[torch.Tensor, torch.Tensor] | None = None
        self._kept: torch.Tensor | None = None
        self.plan()

    def plan(self, *, layers: bool = True, units: bool = False,
             keep_gradient: bool = True) -> StepProbe:
        """What the next step measures: the layer metrics, the per-unit records, and whether it
        keeps its gradient for the step after it (``<g_k, g_{k-1}>``)."""
        self.layers, self.units_due, self.keep_gradient = layers, units, keep_gradient
        return self

    def _flat(self, grads: bool = False) -> torch.Tensor:
        """Every layer weight (or its gradient, 0 where it has none) as one float64 vector, a
        new tensor (``cat`` copies, so a later in-place step cannot reach it)."""
        parts = [(w.param.grad if grads else w.param) for w in self.weights]
        parts = [torch.zeros_like(w.param) if p is None else p.detach()
                 for w, p in zip(self.weights, parts)]
        return torch.cat([p.reshape(-1) for p in parts]).to(torch.float64)

    def snapshot(self) -> None:
        """Before the step (after the backward pass): the weights and gradients it needs."""
        due = self.layers or self.units_due
        grad = self._flat(grads=True) if due or self.keep_gradient else None
        self._snapshot = (self._flat(), grad) if due else None
        self._kept = grad if self.keep_gradient else None

    def measure(self) -> tuple[list[Metric], dict[str, UnitRecord]]:
        """After the step: layer metrics and per-unit records (empty when none was due)."""
        metrics: list[Metric] = []
        records: dict[str, UnitRecord] = {}
        if self._snapshot is not None:
            groups = [self.optimizer.param_groups[i] for i in self.group_of]
            rho = np.array([decay_factor(self.form, g) for g in groups])  # (layers,)
            values = self._unit_statistics(*self._snapshot, rho)  # (stats, units)
            lrs = np.array([g["lr"] for g in groups])
            metrics = self._layer_metrics(values, rho, lrs) if self.layers else []
            if self.units_due:
                records = {w.name: UnitRecord(index, values[:, start + index].astype(
                               _numpy_dtype(w.param.dtype)))
                           for w, start, index in zip(self.weights, self.starts, self.samples)}
        self.previous, self._snapshot = self._kept, None
        return metrics, records

    def _unit_statistics(self, before: torch.Tensor, grad: torch.Tensor,
                         rho: np.ndarray) -> np.ndarray:
        """:data:`UNIT_STATISTICS` of every unit, ``(stats, units)`` in float64."""
        after = self._flat()
        rho_units = torch.from_numpy(np.repeat(rho, self.units)).to(after.device)
        update = rho_units[self.unit_of] * before - after
        previous = torch.full_like(grad, math.nan) if self.previous is None else self.previous
        pairs = torch.stack([before, grad, before, update, before, before, after, grad, previous])
        partners = torch.stack([before, grad, grad, update, update, after, after, previous,
                                previous])
        products = (pairs * partners).split(self.sizes, dim=1)  # per layer (stats, entries)
        sums = [p.reshape(len(UNIT_STATISTICS), n, -1).sum(dim=2)
                for p, n in zip(products, self.units)]
        return torch.cat(sums, dim=1).cpu().numpy()

    def _layer_metrics(self, values: np.ndarray, rho: np.ndarray,
                       lrs: np.ndarray) -> list[Metric]:
        """Per layer: the sums of the unit statistics, ``decay_factor`` and the unit means."""
        means = unit_means(values, np.repeat(lrs, self.units), self.form,
                           np.repeat(rho, self.units))
        sums = np.add.reduceat(values, self.starts, axis=1)  # (stats, layers)
        averages = {name: np.add.reduceat(means[name], self.starts) / self.units
                    for name in LAYER_MEANS}
        out: list[Metric] = []
        for i, w in enumerate(self.weights):
            out += [(w.name, f"sum_{name}", float(v)) for name, v in zip(UNIT_STATISTICS,
                                                                        sums[:, i])]
            out.append((w.name, "decay_factor", float(rho[i])))
            out += [(w.name, name, float(averages[name][i])) for name in LAYER_MEANS]
        return out


def statistics_of(values: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of a ``(len(UNIT_STATISTICS), ...)`` array by name."""
    return dict(zip(UNIT_STATISTICS, values))


def unit_means(values: np.ndarray, lr: float | np.ndarray, form: Optimizer,
               rho: float | np.ndarray = 1.0) -> dict[str, np.ndarray]:
    """The per-unit quantities of :data:`LAYER_MEANS` from the statistics ``values``
    ``(len(UNIT_STATISTICS), units)`` of a step with decay factor ``rho``. The angle between
    ``w_k`` and ``w_{k+1} = rho w_k - u`` is ``atan2(||u_perp||, rho ||w|| - <w_hat, u>)``,
    ``u_perp`` the part of ``u`` orthogonal to ``w``: accurate for small angles when ``u`` is
    mostly tangent (SGD's), to about ``1e-8 ||u|| / ||w||`` radians otherwise (``||u||^2`` and
    ``<w_hat, u>^2`` then cancel)."""
    s = statistics_of(values)
    norm = np.sqrt(s["norm_sq"])
    radial = s["w_dot_update"] / norm  # <w_hat, u>
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_grad = np.nan_to_num(s["w_dot_grad"] / (norm * np.sqrt(s["grad_sq"])))
    return {
        "norm_sq": s["norm_sq"],
        "effective_lr": sim_effective_lr(form, s["norm_sq"], lr),
        "angular_update": np.arctan2(np.sqrt(np.maximum(s["update_sq"] - radial**2, 0)),
                                     rho * norm - radial),
        "grad_norm_unit": grad_norm_at_unit_norm(norm, np.sqrt(s["grad_sq"])),
        "cos_w_grad": cos_grad,
    }


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The storage dtype of per-unit records: the run's own precision."""
    return np.dtype(np.float64 if dtype == torch.float64 else np.float32)


# ----------------------------------------------------------------------------- normalization margins

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def _normalized_variance(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The smallest variance ``module`` divides by for the input ``x``: per channel over the
    batch (and positions) for batch norm, per example over the normalized features for layer
    and group norm."""
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        axes = (0,) if x.dim() == 2 else (0, 2, 3)
        return x.var(dim=axes, unbiased=False).min()
    return x.flatten(1).var(dim=1, unbiased=False).min()


@torch.no_grad()
def normalization_margins(model: nn.Module, inputs: torch.Tensor) -> list[Metric]:
    """Per normalized layer, ``norm_margin``: the smallest variance its normalization divides by
    on ``inputs``, over the normalization's ``eps``. Scale invariance (001 Eq. 18) holds while
    it is large: the normalization computes ``x / sqrt(var + eps)``, which depends on the scale
    of ``x`` once ``var`` is not large against ``eps`` (a margin of 100 changes the output by
    about half a percent of a rescaling's effect)."""
    margins: list[Metric] = []
    names = {module: name.rsplit(".", 1)[0] for name, module in model.named_modules()}
    handles = [m.register_forward_pre_hook(
        lambda m, args: margins.append(
            (names[m], "norm_margin", float(_normalized_variance(m, args[0]) / m.eps))))
        for m in model.modules() if isinstance(m, _NORMS)]
    try:
        with eval_mode(model):
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return margins


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
