"""figures.layout: the row of gridded axes and the curve colours that the notes' figures and the
explorer share."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from scalewise.figures import layout


@pytest.mark.parametrize("ncols", [1, 2, 3])
def test_axes_row_has_ncols_gridded_axes_side_by_side(ncols: int) -> None:
    fig, axes = layout.axes_row(ncols, width=7.0, height=3.0)
    assert isinstance(fig, Figure) and list(fig.get_size_inches()) == [7.0, 3.0]
    assert len(axes) == ncols and axes == fig.axes
    assert all(ax.xaxis.get_gridlines()[0].get_visible() for ax in axes)
    fig.canvas.draw()  # constrained layout: the axes are placed left to right, not stacked
    lefts = [ax.get_position().x0 for ax in axes]
    assert lefts == sorted(lefts) and len({round(ax.get_position().y0, 6) for ax in axes}) == 1


def test_colors_are_distinct_and_avoid_the_pale_end() -> None:
    found = layout.colors(5)
    assert len(set(found)) == 5
    assert all(sum(c[:3]) < sum(layout.colormaps["viridis"](1.0)[:3]) for c in found)
