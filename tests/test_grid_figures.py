"""Figures of LLM trainability grids, read back as pixels: what a reader would see."""

import math

import matplotlib
import numpy as np

from fractal import grid_figures as gf

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
