"""Figures render headless with labelled axes, and the CLI writes PNG and PDF of each."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from scalewise.cli import figures as figures_command
from scalewise.figures import notes as figures

SMALL = {
    "fig2_empirical_fisher_paths": dict(steps=50),
    "fig6_norm_growth": dict(steps=2000),
    "fig7_wd_equilibrium": dict(steps=2000),
    "optimizer_comparison": dict(steps=300, dim=16, runs=2),
    "step_decay_response": dict(epochs=20, steps_per_epoch=40, drop_every=6),
}


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_figure_has_labelled_axes_and_legend(name: str) -> None:
    fig = figures.FIGURES[name](**SMALL[name])
    assert isinstance(fig, Figure)
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        assert ax.get_legend() is not None or fig.legends
        assert ax.lines


def test_figures_command_writes_png_and_pdf(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(figures, "FIGURES", {
        name: (lambda draw=draw, kw=SMALL[name]: draw(**kw))
        for name, draw in figures.FIGURES.items()})
    import argparse

    parser = argparse.ArgumentParser()
    figures_command.register(parser.add_subparsers())
    args = parser.parse_args(["figures", "--out", str(tmp_path), "--dpi", "40"])
    assert figures_command.run(args) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"{n}.{ext}" for n in figures.FIGURES for ext in ("png", "pdf"))
    assert all((tmp_path / name).stat().st_size > 1000 for name in written)
