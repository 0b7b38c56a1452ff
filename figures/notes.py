"""Paper figures: each function simulates and returns a :class:`matplotlib.figure.Figure`.

Figures are built on :class:`~matplotlib.figure.Figure` directly (no ``pyplot``, no global
backend or state; :mod:`~scalewise.figures.layout`), so they render headless and can be saved as
PNG or PDF.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from scalewise import checks
from scalewise.figures.layout import axes_row, colors
from scalewise.sim.dynamics import simulate
from scalewise.sim.equilibria import equilibrium
from scalewise.sim.preconditioned_paths import (
    least_squares_cost,
    preconditioned_paths,
    regression_data,
)
from scalewise.sim.schedules import StepDecay
from scalewise.theory import equilibrium as eq


def _log_spaced(n: int, points: int = 500) -> np.ndarray:
    """About ``points`` indices of ``1 .. n - 1``, evenly spaced on a log axis (curves on log
    axes need no more to look smooth, and draw faster)."""
    return np.unique(np.geomspace(1, n - 1, points).astype(int))


def _shared_legend(fig: Figure, **kwargs) -> None:
    """One legend for the whole figure, with each label of any of its axes once."""
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(entries.values(), entries.keys(), **kwargs)


def norm_growth(lrs: Sequence[float] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
                steps: int = 100_000, grad_norm: float = 1.0) -> Figure:
    """001 Fig. 6: growth of ``||w_k||^2`` (left) and the effective learning rate
    ``alpha / ||w_k||^2`` (right) under SGD without weight decay, ``||w_0|| = 1``, for several
    ``alpha``; dashed, the square-root law ``||w_0||^2 sqrt(1 + k / k0)`` of 001 Sec. 4.3."""
    lr = np.asarray(lrs, dtype=np.float64)
    t = simulate("sgd", lr=lr, grad_norm=grad_norm, steps=steps)
    i = _log_spaced(steps)
    k = t.step[i]
    law = eq.growth_norm_sq(t.step[i, None], 1.0, lr, grad_norm)  # (points, lrs)
    fig, (left, right) = axes_row(2)
    for j, (a, color) in enumerate(zip(lr, colors(len(lr)))):
        left.loglog(k, t.norm_sq[i, j], color=color, label=rf"$\alpha={a:g}$")
        left.loglog(k, law[:, j], color=color, ls="--", lw=0.9)
        right.loglog(k, t.effective_lr[i, j], color=color, label=rf"$\alpha={a:g}$")
        right.loglog(k, eq.effective_lr(law[:, j], a), color=color, ls="--", lw=0.9)
    left.plot([], [], "k--", lw=0.9, label=r"$\sqrt{1+k/k_0}$ law")
    left.set(xlabel="step $k$", ylabel=r"$\|w_k\|^2$", title="Norm growth without weight decay")
    right.set(xlabel="step $k$", ylabel=r"effective LR $\alpha/\|w_k\|^2$",
              title="Effective learning rate")
    _shared_legend(fig, loc="outside right center")
    return fig


def wd_equilibrium(lrs: Sequence[float] = (0.03, 0.1, 0.3, 1.0), weight_decay: float = 1e-3,
                   steps: int = 200_000, grad_norm: float = 1.0) -> Figure:
    """001 Fig. 7: with weight decay the effective learning rate of SGD converges to its
    equilibrium ``sqrt(alpha lam (2 - alpha lam)) / g`` (001 Eq. 25; dotted) for every ``alpha``,
    instead of decaying for ever; the norm settles at
    ``alpha g / sqrt(alpha lam (2 - alpha lam))``."""
    lr = np.asarray(lrs, dtype=np.float64)
    t = simulate("sgd", lr=lr, weight_decay=weight_decay, grad_norm=grad_norm, steps=steps)
    i = _log_spaced(steps)
    k = t.step[i]
    fig, (left, right) = axes_row(2)
    for j, (a, color) in enumerate(zip(lr, colors(len(lr)))):
        left.loglog(k, t.norm_sq[i, j], color=color, label=rf"$\alpha={a:g}$")
        left.axhline(eq.wd_norm_sq(a, weight_decay, grad_norm), color=color, ls=":", lw=1)
        right.loglog(k, t.effective_lr[i, j], color=color, label=rf"$\alpha={a:g}$")
        right.axhline(eq.wd_effective_lr(a, weight_decay, grad_norm), color=color, ls=":", lw=1)
    right.plot([], [], "k:", lw=1, label=r"equilibrium $\hat\alpha_\infty$ (Eq. 25)")
    left.set(xlabel="step $k$", ylabel=r"$\|w_k\|^2$",
             title=rf"Norm with weight decay $\lambda={weight_decay:g}$")
    right.set(xlabel="step $k$", ylabel=r"effective LR $\alpha/\|w_k\|^2$",
              title="Effective LR converges to its equilibrium")
    _shared_legend(fig, loc="outside right center")
    return fig


_COMPARISON = (
    # optimizer, label, lr, momentum; the weight decay gives every one the same lr * wd
    ("sgd", "SGD", 0.1, 0.0),
    ("sgdm", r"SGD, momentum $0.9$", 0.03, 0.9),
    ("adam", "Adam (L2)", 3e-3, 0.0),
    ("adamw", "AdamW", 3e-3, 0.0),
)


def optimizer_comparison(lr_times_wd: float = 1e-3, steps: int = 5000, dim: int = 64,
                         runs: int = 8, seed: int = 0) -> Figure:
    """Effective learning rate (left; ``alpha / ||w||^2`` for SGD and momentum SGD,
    ``alpha / ||w||`` for the Adam family, as in theory) and angular update per step (right) of
    SGD, momentum SGD, Adam with L2 and AdamW on the noise-driven sphere (mean over ``runs``
    runs from ``||w_0|| = 1``), each with its equilibrium from theory (dotted). Every optimizer
    has the same ``lr * weight_decay``."""
    fig, (left, right) = axes_row(2)
    for (name, label, lr, momentum), color in zip(_COMPARISON, colors(len(_COMPARISON))):
        wd = lr_times_wd / lr
        t = simulate(name, lr=lr, weight_decay=wd, momentum=momentum, steps=steps,
                     engine="sphere", dim=dim, runs=runs, seed=seed, record_every=5)
        target = equilibrium(name, lr=lr, weight_decay=wd, momentum=momentum, dim=dim)
        k = t.step[1:]
        left.loglog(k, t.run_mean("effective_lr")[1:], color=color, label=label)
        left.axhline(target["effective_lr"], color=color, ls=":", lw=1)
        right.loglog(k, t.run_mean("angular_update")[1:], color=color, label=label)
        right.axhline(target["angular_update"], color=color, ls=":", lw=1)
    left.plot([], [], "k:", lw=1, label="equilibrium\n(theory)")
    left.set(xlabel="step $k$", ylabel=r"$\alpha/\|w\|^2$ (SGD), $\alpha/\|w\|$ (Adam)",
             title=rf"Effective LR ($\alpha\lambda={lr_times_wd:g}$, sphere $d={dim}$)")
    right.set(xlabel="step $k$", ylabel="angular update per step (rad)",
              title="Angular update")
    _shared_legend(fig, loc="outside right center")
    return fig


def step_decay_response(lr: float = 0.1, weight_decay: float = 5e-4, epochs: int = 200,
                        steps_per_epoch: int = 391, drop_every: int = 60,
                        grad_norm: float = 1.0) -> Figure:
    """004 Fig. 3 (Sec. 4.1): effective learning rate of SGD under step decays of the learning
    rate (factor 10 every ``drop_every`` epochs, CIFAR-sized epochs of 391 steps), with and
    without weight decay. Without it the norm growth adds its own decay; with it the effective
    LR re-equilibrates after each drop."""
    steps = epochs * steps_per_epoch
    milestones = tuple(e * steps_per_epoch for e in range(drop_every, epochs, drop_every))
    schedule = StepDecay(milestones, 0.1)
    wds = np.array([0.0, weight_decay])
    t = simulate("sgd", lr=lr, weight_decay=wds, grad_norm=grad_norm, steps=steps,
                 schedule=schedule, record_every=steps_per_epoch // 8 or 1)
    epoch = t.step / steps_per_epoch
    fig, (ax,) = axes_row(1, width=5.0, height=3.4)
    for j, (wd, color) in enumerate(zip(wds, ("tab:red", "tab:blue"))):
        label = "no weight decay" if wd == 0 else rf"weight decay $\lambda={wd:g}$"
        ax.semilogy(epoch, t.effective_lr[:, j], color=color, label=label)
    ax.semilogy(epoch, lr * schedule.factors(steps)[t.step], "k--", lw=0.9,
                label=r"learning rate $\alpha_k$")
    ax.set(xlabel="epoch", ylabel=r"effective LR $\alpha_k/\|w_k\|^2$",
           title="Step decays of the learning rate (SGD)")
    ax.legend(loc="lower left")
    return fig


_PATH_LABELS = {"gd": "GD", "natural": r"natural GD, $F^{-1}$",
                "empirical": r"$F_{\mathrm{emp}}^{-1}$ (Eq. 3)",
                "empirical_sqrt": r"$F_{\mathrm{emp}}^{-1/2}$"}


def empirical_fisher_paths(steps: int = 300, seed: int = 0) -> Figure:
    """001 Fig. 2 (Kunstner et al. 2019): fitting a line to the data on the left, gradient
    descent, natural gradient descent (one step: the Fisher is the Hessian) and gradient descent
    preconditioned by the empirical Fisher ``F_emp^{-1}`` (001 Eq. 3; a detour) or
    ``F_emp^{-1/2}`` take the paths on the right over the contours of the cost, from one start
    (:func:`sim.preconditioned_paths.preconditioned_paths` at its default step sizes)."""
    x, y = regression_data(seed=seed)
    paths = preconditioned_paths(x, y, steps=steps)
    fig, (left, right) = axes_row(2)
    ends = np.array([x.min(), x.max()])
    left.scatter(x, y, s=10, color="0.4", label="data")
    for (a, b), style, label in ((paths.minimizer, "k-", "least-squares fit"),
                                 (paths.iterates["gd"][0], "k--", "start")):
        left.plot(ends, a * ends + b, style, lw=1, label=label)
    points = np.concatenate(list(paths.iterates.values()))  # (methods * (steps + 1), 2)
    low, high = points.min(axis=0), points.max(axis=0)
    low, high = low - 0.1 * (high - low), high + 0.1 * (high - low)
    slope, intercept = np.meshgrid(*np.linspace(low, high, 200).T)
    excess = least_squares_cost(np.stack([slope, intercept], axis=-1), x, y) - paths.min_loss
    right.contour(slope, intercept, excess, levels=np.geomspace(1e-3, excess.max(), 12),
                  colors="0.8", linewidths=0.6)
    for (method, path), color in zip(paths.iterates.items(), colors(len(paths.iterates))):
        right.plot(path[:, 0], path[:, 1], ".-", ms=2, lw=0.8, color=color,
                   label=_PATH_LABELS[method])
    right.plot(*paths.minimizer, "k*", ms=9, label="minimizer")
    left.set(xlabel="$x$", ylabel="$y$", title="Data: fit $y = a x + b$")
    left.legend(loc="upper left")
    right.set(xlabel="slope $a$", ylabel="intercept $b$", title="Paths over the cost's contours")
    right.legend(loc="upper right", fontsize="small")
    return fig


FIGURES: dict[str, Callable[[], Figure]] = {
    "fig2_empirical_fisher_paths": empirical_fisher_paths,
    "fig6_norm_growth": norm_growth,
    "fig7_wd_equilibrium": wd_equilibrium,
    "optimizer_comparison": optimizer_comparison,
    "step_decay_response": step_decay_response,
}
"""Every figure, by file name."""


SAVE_FORMATS = ("png", "pdf", "svg")


def save_all(out_dir: str | Path, formats: Sequence[str] = ("png", "pdf"),
             dpi: int = 200) -> list[Path]:
    """Draw every figure of :data:`FIGURES` and write ``out_dir/<name>.<format>``. Bad
    ``formats`` or ``dpi`` are refused before anything is drawn."""
    for fmt in formats:
        checks.one_of("format", fmt, SAVE_FORMATS)
    checks.integer("dpi", dpi, 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        fig = draw()
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            fig.savefig(path, dpi=dpi)
            written.append(path)
    return written
