"""Colour mapping, the figures (with missing cells), and run labels on synthetic curves."""

import math

import matplotlib
import matplotlib.figure
import numpy as np
import pytest

from fractal import dimension, figures
from llmmap.labels import label_run


def luminance(v):
    r, g, b, _ = matplotlib.colormaps["Spectral"]((v + 1) / 2)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_paper_colors_sides_ranks_and_boundary():
    # converged: -sum(v) (more negative = slower = nearer the boundary);
    # diverged: +sum(1/v) (larger = slower divergence = nearer the boundary)
    values = np.array([-1000.0, -50.0, -3.0, 0.01, 7.0, 1e4])
    c = figures.paper_colors(values)
    assert (c[:3] >= 0.25).all() and (c[:3] <= 1).all()  # converged -> blue side (+)
    assert (c[3:] <= -0.25).all() and (c[3:] >= -1).all()  # diverged -> red side (-)
    np.testing.assert_allclose(c, [1.0, 0.625, 0.25, -0.25, -0.625, -1.0])  # by rank
    # ranks, not values: a monotone change of the values leaves the colours alone
    np.testing.assert_allclose(figures.paper_colors(np.sign(values) * np.abs(values) ** 0.3), c)
    # the darkest colours meet at the boundary
    assert luminance(c[0]) < luminance(c[2]) and luminance(c[5]) < luminance(c[3])
    assert np.isnan(figures.paper_colors(np.array([np.nan, -1.0]))[0])


def test_paper_image_and_summary(tmp_path):
    y, x = np.mgrid[0:32, 0:32]
    v = np.where(x + y < 30, -(x + y + 1.0), (x + y + 1.0))
    figures.save_image(v, (-3, 6, -3, 6), tmp_path / "a.png", "paraminit_vs_lr", "t [paper_repro]")
    panels = [
        dict(name="tanh", values=v, window=(-3, 6, -3, 6), axes="lr_vs_lr", dimension=1.4),
        dict(name="relu", values=None, window=(-3, 6, -3, 6), axes="lr_vs_lr", dimension=None),
    ]
    figures.summary_figure(panels, tmp_path / "s.png", "summary [maxout_speed]")
    for name in ("a.png", "s.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_zoom_figures(tmp_path):
    # a frame PNG has one pixel per pixel, row 0 (the smallest y) at the bottom
    y, x = np.mgrid[0:9, 0:9]
    v = np.where(y < 3, -1.0, 1.0)
    figures.save_frame_png(v, tmp_path / "f.png")
    img = matplotlib.image.imread(tmp_path / "f.png")
    assert img.shape[:2] == (9, 9)
    assert img[-1, 0, 2] > img[0, 0, 2]  # converged (blue) at the bottom row
    p = dict(experiment="tanh", path="paper", centre=[1.0, 2.0], frames=3)
    loaded = {k: (v * (k + 1), [0, 2.0**-k, 0, 2.0**-k]) for k in range(3)}
    stats = dict(dimension=1.3, spread_16_84=[1.2, 1.4], frame_dimensions={0: 1.1, 1: None})
    figures.frame_sheet(p, loaded, stats, tmp_path / "sheet.png", "t [paper_repro]")
    sheets = {"tanh/paper": (p, loaded, stats), "tanh/auto": ({**p, "path": "auto"}, {}, {})}
    figures.slopes_vs_depth(sheets, tmp_path / "depth.png")
    panels = [
        dict(name="tanh", values=v, window=[0, 1, 0, 1], panel=(1.1, 2.3, 7.7e-7, 23)),
        dict(name="relu", values=None, window=None, panel=(0.1, 0.2, 1e-6, 22)),
    ]
    figures.paper_panels(panels, tmp_path / "panels.png")
    for name in ("sheet.png", "depth.png", "panels.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_labels_on_synthetic_curves():
    falling = list(np.linspace(10, 1, 100))
    r = label_run(falling)
    assert r["stable"] and r["trainable"] and r["first_loss"] == 10.0
    assert math.isclose(r["ratio"], np.mean(falling[-20:]) / 10)
    # fewer steps than K: K becomes the number of steps
    r = label_run([4.0, 3.0, 2.0])
    assert r["trainable"] and math.isclose(r["last_k_mean"], 3.0)
    assert not label_run([4.0, 5.0, 6.0])["trainable"]  # rising: stable, not trainable
    assert label_run([4.0, 5.0, 6.0])["stable"]
    # NaN or inf at the end: unstable, not trainable
    for bad in (float("nan"), float("inf")):
        r = label_run([3.0, 2.0, bad])
        assert not r["stable"] and not r["trainable"]
    # a blow-up on the way, finite at the end: unstable (no recorded loss may be non-finite)
    r = label_run([3.0] + [2.0] * 10 + [float("inf")] + [1.0] * 5)
    assert not r["stable"] and not r["trainable"]
    # a NaN validation loss makes a run with finite train losses unstable
    r = label_run(falling, val_losses=[[50, 3.0], [100, float("nan")]])
    assert not r["stable"] and not r["trainable"]
    assert label_run(falling, val_losses=[[100, 0.5]])["trainable"]
    # result files store non-finite numbers as null: read back, they count as non-finite
    assert not label_run([3.0, None])["stable"]
    assert not label_run(falling, val_losses=[[100, None]])["stable"]
    # a huge but finite loss: stable (the arithmetic never broke), never trainable
    r = label_run([10.0, 1e20, 3.2e29])
    assert r["stable"] and not r["trainable"] and r["ratio"] > 1e28
    # an exception: unstable whatever the losses
    r = label_run(falling, error="RuntimeError: CUDA out of memory")
    assert not r["stable"] and not r["trainable"] and r["ratio"] is not None
    # nothing logged
    r = label_run([], error="crashed")
    assert r == dict(stable=False, trainable=False, first_loss=None, last_k_mean=None, ratio=None)
    assert not label_run(None)["stable"]
    # the threshold and window are parameters
    assert not label_run([2.0, 1.5], threshold=0.5)["trainable"]
    assert label_run([2.0, 0.1, 5.0], window=1, threshold=3.0)["trainable"]


@pytest.fixture
def shown(monkeypatch):
    """The figures saved, as matplotlib Figures drawn just before they are written."""
    figures_seen = {}
    real = matplotlib.figure.Figure.savefig

    def keep(fig, f, *a, **kw):
        fig.canvas.draw()
        figures_seen[len(figures_seen)] = fig
        return real(fig, f, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures_seen


def all_text(fig):
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def test_paper_images_carry_their_colour_key_and_no_jargon(tmp_path, shown):
    y, x = np.mgrid[0:32, 0:32]
    v = np.where(x + y < 30, -(x + y + 1.0), (x + y + 1.0))
    figures.save_image(v, (-3, 6, -3, 6), tmp_path / "a.png", "lr_vs_lr", "t\n32 x 32 networks")
    panel = dict(name="tanh", values=v, window=(-3, 6, -3, 6), axes="lr_vs_lr", dimension=1.4)
    figures.summary_figure([panel], tmp_path / "s.png", "summary")
    p = dict(experiment="tanh", path="paper", centre=[1.0, 2.0], frames=2)
    figures.frame_sheet(p, {0: (v, [0, 1, 0, 1])}, {}, tmp_path / "sheet.png", "t")
    for fig in shown.values():
        text = " ".join(all_text(fig))
        # a colour bar (an extra axes) saying what blue, red and the shades mean
        assert len(fig.axes) >= 2, text
        for key in ("converged slowly", "converged fast", "diverged fast", "diverged slowly"):
            assert key in text
        assert "frame" not in text  # zoom levels are "zoom k"; images say what they are
    img = matplotlib.image.imread(tmp_path / "a.png")[..., :3]
    key = shown[0].axes[1].get_position()  # the key's column holds the blue and the red end
    right = img[:, int(img.shape[1] * key.x0) : int(img.shape[1] * key.x1) + 1]
    assert (right[..., 2] - right[..., 0] > 0.2).any() and (
        right[..., 0] - right[..., 2] > 0.3
    ).any()


def test_box_counting_line_is_the_fit_not_pinned_to_the_first_point(tmp_path, shown):
    y, x = np.mgrid[0:128, 0:128]
    rough = np.sin(x / 9) + np.sin(y / 13) + np.random.default_rng(0).normal(0, 0.4, x.shape)
    v = np.where(rough > 0, -1.0, 1.0)  # a rough boundary: the local slopes differ
    estimate = dimension.plot_box_counting([v], tmp_path / "b.png", "t")
    ax = shown[0].axes[0]
    points, fit = ax.get_lines()[0], ax.get_lines()[-1]
    assert "fit" in fit.get_label() and f"{estimate:.3f}" in fit.get_label()
    s, n = np.log10(points.get_xdata()), np.log10(points.get_ydata())
    fs, fn = np.log10(fit.get_xdata()), np.log10(fit.get_ydata())
    np.testing.assert_allclose(np.diff(fn) / np.diff(fs), -estimate)  # its slope is -D
    residual = n - np.interp(s, fs, fn)
    assert abs(residual.mean()) < 1e-9  # least squares: the points lie on both sides of it
    assert (residual > 0).any() and (residual < 0).any()
