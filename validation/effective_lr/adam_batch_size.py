"""Larger batches make Adam's steps larger (001 Eq. 4 and the text after it; the Discussion's
"more gradient noise, and hence smaller steps" is a slip, recorded in theory.adaptive).

Eq. 4 is a statement about expectations at one point of weight space: per coordinate a batch of
``B`` examples drawn independently has ``E[g_B^2] = mu^2 + sigma^2/B``
(``theory.adaptive.BATCH_SECOND_MOMENT``), so Adam's expected step ``alpha mu / sqrt(E[g_B^2])``
(``ADAM_BATCH_STEP``) grows with ``B`` towards ``alpha``. The experiment measures exactly that:
the weights are held at their initialization (Adam's learning rate 0, so its moment estimates see
one stationary gradient law), ``mu`` and ``sigma^2`` are each coordinate's mean and variance of
the per-example gradients over the whole training set (exact, by ``torch.func``), and batches are
drawn with replacement, which is the independence Eq. 4 assumes.

Config: the digits MLP without normalization (per-example gradients are defined only without
batch statistics), float64, seeds. Per batch size, ``torch.optim.Adam`` runs the size's
``steps`` steps on batch gradients, the mean of the batch's per-example gradients (the gradient of
the batch's mean loss; a test checks it against autograd), restricted to :data:`COORDINATES`
parameters evenly spaced over the flattened network: Adam acts on each coordinate alone, so they
run exactly as they would inside the whole vector, at a ninth of the cost. Estimators, each of the quantity theory
names: ``second_moment`` is ``sum_j E[g_B,j^2]``, measured by ``sum_j v_hat_j`` averaged over the
second half of the steps (each bias-corrected ``v_hat`` is unbiased); ``step_norm`` is
``||E[u]||`` with ``u = alpha m_hat / sqrt(v_hat)`` the step Adam would take, measured by
``sqrt(<u_1, u_2>)``, the mean steps of the third and fourth quarters (independent halves, so the
product is free of the noise's own energy that ``||mean u||^2`` would add). The bound,
:data:`LIMIT`, is declared below with the reasoning that sized it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import sympy as sp
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch.func import functional_call, grad, vmap

from scalewise import models
from scalewise.theory.adaptive import ADAM_BATCH_STEP, BATCH_SECOND_MOMENT, alpha, batch, mu, sigma
from scalewise.validation.effective_lr.runs import seeds
from scalewise.validation.estimators import Interval, interval
from scalewise.validation.markdown import counted, interval_cell, markdown_table
from scalewise.validation.report import Bound, Report, record
from scalewise.validation.suite import Settings, Size, StepsAndSeeds

EXPERIMENT = "adam_batch_size"
BATCH_SIZES = (4, 16, 64, 256)
ALPHA = 1e-3  # the step size of the steps Adam would take (they scale with it; ratios do not)
BETAS = (0.9, 0.999)
COORDINATES = 1024  # parameters measured, evenly spaced over the flattened network
EPS = 1e-30  # Adam's epsilon: only keeps the coordinates with no gradient at all at 0 / eps = 0
LIMIT = 0.03
"""Largest relative error of either estimator, per batch size (mean over seeds), declared from
the noise of the estimators before any run: ``v_hat`` averages about
``(1 + beta_2)/(1 - beta_2) = 2000`` batches, so a sum of squared batch gradients whose spread
over batches is of its own size is known to about 2% per seed; the step's mean over a quarter of
the run carries a noise a few times smaller; Jensen's gap of ``1/sqrt(v_hat)`` is of the order of
``v_hat``'s squared relative spread, well under 1%."""

_SECOND_MOMENT = sp.lambdify((mu, sigma, batch), BATCH_SECOND_MOMENT, "numpy")
_STEP = sp.lambdify((alpha, mu, sigma, batch), ADAM_BATCH_STEP, "numpy")


SCALES = {Size.SMOKE: StepsAndSeeds(steps=400, seeds=1),
          Size.REFERENCE: StepsAndSeeds(steps=4000, seeds=5)}


def adam_batch_size(report: Report, settings: Settings) -> None:
    """Adam's second moment and expected step per batch size against Eq. 4's."""
    scale = settings.scale(SCALES)
    rows = pd.DataFrame([{"seed": seed, "batch": size, **estimates}
                         for seed in seeds(settings, scale.seeds)
                         for size, estimates in batch_estimates(seed, scale.steps).items()])
    means = rows.groupby("batch").mean(numeric_only=True)
    for size, row in means.iterrows():
        for quantity in ("second_moment", "step_norm"):
            report.add(record(EXPERIMENT, f"adam(B={size})", "", quantity,
                              predicted=row[f"{quantity}_theory"], measured=row[quantity]))
    report.bounds += [Bound(EXPERIMENT, q, LIMIT, description=f"{q}: Adam's measured estimate "
                            "against Eq. 4's, per batch size (mean over seeds), the worst")
                      for q in ("second_moment", "step_norm")]
    section = report.section("Larger batches, larger Adam steps (001 Eq. 4)", _text(rows))
    section.figure(EXPERIMENT, _figure(rows), "Adam's expected step against the batch size: "
                   "Eq. 4's prediction (line) and the measured mean step (points, 95% "
                   "intervals over seeds); the dotted line is the limit of infinite batches.")


def per_example_gradients(seed: int) -> torch.Tensor:
    """``(N, P)``: the gradient of each training example's loss with respect to every parameter
    of the float64 digits MLP without normalization initialized by ``seed``, flattened in the
    order of ``model.parameters()``."""
    model, inputs, targets = network(seed)
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(p: dict, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (x[None],)), t[None])

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, inputs, targets)
    return torch.cat([grads[name].reshape(len(targets), -1) for name in params], dim=1)


def network(seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The digits MLP without normalization initialized by ``seed`` in float64, and the
    training inputs (float64) and targets of the split ``seed`` draws."""
    config = models.override(models.TrainConfig(seed=seed), {"model.norm": "none"})
    data = models.load_dataset(config.data, seed=seed)
    model = models.build_model(config.model, data.in_shape, data.num_classes, seed=seed).double()
    return model, data.train.inputs.double(), data.train.targets


def batch_estimates(seed: int, steps: int) -> dict[int, dict[str, float]]:
    """Per batch size of :data:`BATCH_SIZES`, the two estimators (module docstring) and theory's
    values (``*_theory``) at the initialization of ``seed``."""
    gradients = per_example_gradients(seed)
    gradients = gradients[:, torch.linspace(0, gradients.shape[1] - 1, COORDINATES).round().long()]
    mean = gradients.mean(dim=0).numpy()
    spread = gradients.std(dim=0, correction=0).numpy()  # the empirical law's own sigma
    out = {}
    for size in BATCH_SIZES:
        moment, step = adam_statistics(gradients, size, steps, seed)
        out[size] = {"second_moment": moment, "step_norm": step,
                     "second_moment_theory": float(_SECOND_MOMENT(mean, spread, size).sum()),
                     "step_norm_theory": float(np.linalg.norm(_step(mean, spread, size))),
                     "step_norm_limit": ALPHA * math.sqrt(np.count_nonzero(mean))}
    return out


def adam_statistics(gradients: torch.Tensor, size: int, steps: int, seed: int
                    ) -> tuple[float, float]:
    """Run ``torch.optim.Adam`` (learning rate 0) for ``steps`` steps on the means of ``size``
    rows of ``gradients`` drawn with replacement: the mean of ``sum v_hat`` over the second half
    and ``sqrt(<u_1, u_2>)`` of the third and fourth quarters' mean steps."""
    weight = torch.nn.Parameter(torch.zeros(gradients.shape[1], dtype=gradients.dtype))
    adam = torch.optim.Adam([weight], lr=0.0, betas=BETAS, eps=EPS)
    draws = torch.Generator().manual_seed(seed)
    moments, quarters = [], [torch.zeros_like(weight) for _ in range(2)]
    with _one_thread():
        for k in range(1, steps + 1):
            weight.grad = gradients[torch.randint(len(gradients), (size,), generator=draws)].mean(0)
            adam.step()
            if k > steps // 2:
                v_hat = adam.state[weight]["exp_avg_sq"] / (1 - BETAS[1] ** k)
                m_hat = adam.state[weight]["exp_avg"] / (1 - BETAS[0] ** k)
                moments.append(float(v_hat.sum()))
                quarters[k > 3 * steps // 4] += ALPHA * m_hat / (v_hat.sqrt() + EPS)
    counts = (3 * steps // 4 - steps // 2, steps - 3 * steps // 4)
    product = float((quarters[0] / counts[0]) @ (quarters[1] / counts[1]))
    return float(np.mean(moments)), math.sqrt(max(product, 0.0))


def _step(mean: np.ndarray, spread: np.ndarray, size: int) -> np.ndarray:
    """Theory's expected step per coordinate, 0 where a coordinate has no gradient at all."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(_STEP(ALPHA, mean, spread, size))


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread: on vectors of a thousand numbers two threads' parallel regions
    cost more than they save, twenty times more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _ratios(rows: pd.DataFrame, quantity: str) -> dict[int, Interval]:
    return {size: interval((group[quantity] / group[f"{quantity}_theory"]).to_numpy())
            for size, group in rows.groupby("batch")}


def _text(rows: pd.DataFrame) -> str:
    means = rows.groupby("batch").mean(numeric_only=True)
    moments, steps = _ratios(rows, "second_moment"), _ratios(rows, "step_norm")
    table = pd.DataFrame({
        "sum of E[g_B^2], theory": means["second_moment_theory"],
        "sum of E[g_B^2], measured / theory": [interval_cell(moments[b]) for b in means.index],
        "||E[u]||, theory": means["step_norm_theory"],
        "||E[u]||, measured / theory": [interval_cell(steps[b]) for b in means.index],
    }, index=pd.Index(means.index, name="batch size"))
    growth = means["step_norm"].iloc[-1] / means["step_norm"].iloc[0]
    predicted = means["step_norm_theory"].iloc[-1] / means["step_norm_theory"].iloc[0]
    direction = "larger" if growth > 1 else "smaller"
    rising = bool(np.all(np.diff(means["step_norm"].to_numpy()) > 0))
    return "\n".join([
        f"Weights held at each seed's initialization ({counted(rows['seed'].nunique(), 'seed')}); "
        f"{len(BATCH_SIZES)} batch sizes drawn with replacement; Adam with betas {BETAS}. "
        "Theory's values use each coordinate's mean and variance of the per-example "
        "gradients over the training set. Mean over seeds, measured / theory with 95% "
        "intervals:", "", markdown_table(table), "",
        f"From batch size {BATCH_SIZES[0]} to {BATCH_SIZES[-1]} Adam's measured expected step "
        f"is {growth:.3g} times as large ({direction}; theory {predicted:.3g}), "
        + ("rising at every batch size." if rising else "not rising at every batch size.")
        + " SGD's expected step, the mean gradient times the learning rate, does not depend "
        "on the batch size: the growth is Adam's division by the root of the second moment."])


def _figure(rows: pd.DataFrame) -> Figure:
    means = rows.groupby("batch").mean(numeric_only=True)
    measured = [interval(group["step_norm"].to_numpy()) for _, group in rows.groupby("batch")]
    sizes = means.index.to_numpy()
    fig = Figure(figsize=(4.2, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(sizes, means["step_norm_theory"], "-", color="0.5", lw=4, alpha=0.4,
            label="theory (Eq. 4)")
    ax.axhline(means["step_norm_limit"].mean(), color="0.3", lw=0.8, ls=":",
               label=r"$B \to \infty$")
    centres = np.array([i.mean for i in measured])
    ax.errorbar(sizes, centres, yerr=np.nan_to_num(centres - [i.low for i in measured]),
                fmt="o", ms=4, capsize=2, color="C0", label="measured")
    ax.set(xscale="log", xlabel="batch size", ylabel=r"$\Vert E[u]\Vert$")
    ax.legend(fontsize=7)
    return fig
