"""Figures of LLM trainability grids, read back as pixels: what a reader would see."""

import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import QuadMesh

from llmmap import grid_figures as gf

MISSING_RGB = tuple(int(gf.MISSING[k : k + 2], 16) for k in (1, 3, 5))


def pixels(path):
    return (matplotlib.image.imread(path)[..., :3] * 255).round().astype(int)


def count(img, rgb):
    return int((img == np.array(rgb)).all(axis=-1).sum())


def grid(n=6):
    xs, ys = np.logspace(-4, -1, n), np.logspace(-3, 0, n)
    x, y = np.meshgrid(np.arange(n), np.arange(n))
    trainable = (x + y < n).astype(float)
    loss = 2.0 + x + 0.5 * y
    return xs, ys, loss, trainable


def test_trainability_values():
    loss = np.array([[1.0, 2.0], [3.0, np.nan]])
    trainable = np.array([[1, 1], [0, np.nan]])
    v = gf.trainability_values(loss, trainable)
    assert v[0, 0] == 1.0 and math.isclose(v[0, 1], 0.3)  # lowest loss darkest blue
    assert v[1, 0] == -1.0  # not trainable: dark red
    assert np.isnan(v[1, 1])  # missing stays missing, never "not trainable"
    cmap = gf.TRAINABILITY_CMAP
    for t, want in ((-1.0, "#8B0000"), (0.3, "#ADD8E6"), (1.0, "#00008B")):
        got = cmap((t + 1) / 2)[:3]  # 256-entry table: equal to within one step
        np.testing.assert_allclose(got, matplotlib.colors.to_rgb(want), atol=2 / 255)


def test_cell_edges_are_centred_in_log10():
    edges = gf.cell_edges(np.logspace(-4, -1, 4))
    np.testing.assert_allclose(np.diff(edges), 1.0)  # one decade per cell, centred
    assert np.isclose(edges[0], -4.5)


def test_only_cells_without_a_result_are_hatched(tmp_path):
    xs, ys, loss, trainable = grid()
    names = ("matrix_lr", "unembedding_lr")
    gf.trainability_figure(xs, ys, loss, trainable, tmp_path / "full.png", *names, "t")
    edges = np.zeros((5, 5), bool)
    edges[2, :] = True
    gf.boundary_figure(xs, ys, edges, np.zeros((5, 5), bool), tmp_path / "b.png", *names, "t")
    for name in ("full.png", "b.png"):  # a complete grid: no hatched grey (text antialiasing
        assert count(pixels(tmp_path / name), MISSING_RGB) < 150, name  # has a few such pixels)
    assert count(pixels(tmp_path / "b.png"), (255, 255, 255)) > 1000  # no boundary: white
    trainable[0, :3] = np.nan
    gf.trainability_figure(xs, ys, loss, trainable, tmp_path / "gaps.png", *names, "t")
    assert count(pixels(tmp_path / "gaps.png"), MISSING_RGB) > 1000


def test_an_all_stable_grid_shows_what_tells_cells_apart(tmp_path):
    xs, ys, loss, _ = grid()
    stable = np.ones_like(loss)
    gf.stability_figure(xs, ys, stable, loss, tmp_path / "s.png", "a", "b", "t")
    img = pixels(tmp_path / "s.png")
    blue = count(img, matplotlib.colors.to_rgb(gf.TRAINABLE_DARK) * np.array(255))
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert blue < 100 and colours > 30  # final losses, not one blue square


@pytest.fixture
def shown(monkeypatch):
    """The figures saved, as matplotlib Figures (their texts, legends and colour bars)
    next to the PNG written: {file name: figure}."""
    figures = {}
    real = gf.save_figure

    def keep(fig, path, title=None, **kw):
        figures[Path(path).name] = fig
        fig.canvas.draw()  # the texts as drawn
        return real(fig, path, title, **kw)

    monkeypatch.setattr(gf, "save_figure", keep)
    return figures


def llm_grid(n=8):
    """A map like the flagship's: trained below, barely moved on one row, blown up (finite
    1e29 losses) above, a diverged corner (NaN), one cell without a result."""
    xs, ys = np.logspace(-3, 2, n), np.logspace(-4, 2, n)
    x, y = np.meshgrid(np.arange(n), np.arange(n))
    ratio = np.where(y >= n // 2 + 1, 10.0 ** (3 * (y - n // 2)), 0.65 + 0.2 * y / n + 0.01 * x)
    ratio[n // 2, :] = 0.998  # 10.83 -> 10.81: "trainable", barely
    stable = np.ones((n, n))
    stable[-2:, -2:] = 0
    ratio[stable == 0] = np.nan
    loss = 10.83 * ratio
    trainable = ((ratio < 1.0) & (stable == 1)).astype(float)
    trainable[0, 0] = stable[0, 0] = np.nan
    return xs, ys, loss, trainable, stable, ratio


def texts(fig):
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def test_llm_map_says_what_each_axis_colour_and_label_is(tmp_path, shown):
    xs, ys, loss, trainable, stable, ratio = llm_grid()
    names = gf.axis_name("matrix_lr", "muon"), gf.axis_name("unembedding_lr", "muon")
    assert names == (
        "Muon lr, hidden matrices (matrix_lr)",
        "AdamW lr, output head (unembedding_lr)",
    )
    path = tmp_path / "t.png"
    gf.trainability_figure(
        xs, ys, loss, trainable, path, *names, "m", stable=stable, ratio=ratio, threshold=1.0,
        window=20,
    )  # fmt: skip
    fig = shown["t.png"]
    panels, bars = fig.axes[:3], fig.axes[3:]
    assert len(bars) == 2  # the loss ratio's and the final loss's colour bars
    assert all(ax.get_xlabel() == f"{names[0]}, log10" for ax in panels)
    assert all(ax.get_ylabel() == f"{names[1]}, log10" for ax in panels)
    titles = [ax.get_title() for ax in panels]
    assert "last 20 train losses < 1 x the first" in titles[0]  # the rule, train loss named
    assert titles[1].startswith("loss ratio") and titles[2].startswith("final train loss")
    legend = [t.get_text() for t in panels[0].get_legend().get_texts()]
    assert [t.split(":")[0] for t in legend] == [
        "diverged", "not trainable", "barely trainable", "trainable", "no result"
    ]  # fmt: skip
    img = pixels(path)
    rgb = lambda c: tuple(round(v * 255) for v in matplotlib.colors.to_rgb(c))  # noqa: E731
    for colour in (gf.DIVERGED, gf.NOT_TRAINABLE, gf.BARELY, gf.TRAINABLE_DARK):
        assert count(img, rgb(colour)) > 400, colour  # each label is drawn, in its colour
    assert count(img, rgb(gf.NOT_TRAINABLE)) > 400 and gf.NOT_TRAINABLE != "#ffffff"


def test_barely_trainable_is_a_margin_of_the_threshold():
    t = np.array([[1.0, 1.0, 0.0]])
    codes = gf.label_codes(t, np.ones((1, 3)), np.array([[0.5, 0.998, 1.2]]), 1.0)
    assert codes.tolist() == [[3.0, 2.0, 1.0]]
    codes = gf.label_codes(t, np.array([[1.0, 0.0, 1.0]]), None, None)  # no ratio recorded
    assert codes.tolist() == [[3.0, 0.0, 1.0]]


def test_stability_colours_show_the_variation_of_losses_from_10_to_1e29(tmp_path, shown):
    xs, ys, loss, _, stable, _ = llm_grid(16)
    gf.stability_figure(xs, ys, stable, loss, tmp_path / "s.png", "a", "b", "t")
    fig = shown["s.png"]
    mesh = next(c for c in fig.axes[0].collections if isinstance(c, QuadMesh))
    steps = mesh.norm(np.ma.compressed(mesh.get_array()))
    assert len(fig.axes) == 2 and "deciles" in fig.axes[1].get_ylabel()
    assert len(np.unique(steps)) >= 8  # not two colours for the rows below 1e29 and above


def test_boundary_figure_explains_its_pixels_and_gives_no_dimension_from_two_sizes(tmp_path, shown):
    from llmmap import maps

    xs, ys, loss, trainable, stable, ratio = llm_grid(16)
    dim, n, how = maps.boundary_dimension(trainable)
    assert dim is None and how["box_sizes"] == [1, 2]  # one slope: no dimension
    about = gf.dimension_text(dim, how["box_sizes"])
    assert "no dimension" in about and "at least 3" in about
    edges = maps.boundary(trainable)
    missing = maps._window_missing(np.isnan(trainable))
    gf.boundary_figure(
        xs, ys, edges, missing, tmp_path / "b.png", "a", "b", "t", trainable=trainable,
        dimension=about,
    )  # fmt: skip
    ax = shown["b.png"].axes[0]
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "boundary pixel: 2 x 2 neighbouring runs" in legend and "no result" in legend
    assert f"{n} pixels" in ax.get_title() and "no dimension" in ax.get_title()
    assert count(pixels(tmp_path / "b.png"), (0, 0, 0)) > 300  # the boundary, black


def test_a_saved_grid_is_redrawn_in_todays_layout(tmp_path):
    # scripts/redraw_map.py: a grid saved by an older summary (no loss ratio) drawn again
    # with the current figure code; the labels are the saved ones, the middle panel blank
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    xs, ys, loss, trainable = grid()
    inferred = np.zeros_like(trainable, dtype=bool)
    inferred[1::2, 1::2] = True
    npz = tmp_path / "grid-old.npz"
    np.savez(npz, xs=xs, ys=ys, loss=loss, trainable=trainable, stable=np.ones_like(loss), inferred=inferred)  # fmt: skip
    out = tmp_path / "redrawn.png"
    cmd = [sys.executable, str(root / "scripts/redraw_map.py"), "--npz", str(npz)]
    cmd += ["--defconfig", "fractal-16x16", "--grid", "old", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True)
    img = pixels(out)
    dark = tuple(int(gf.TRAINABLE_DARK[k : k + 2], 16) for k in (1, 3, 5))
    assert count(img, dark) > 1000  # the saved trainable labels, in the labels' colour
