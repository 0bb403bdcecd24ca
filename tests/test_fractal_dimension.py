"""Box counting on sign images of shapes whose dimension is known, at 1024 x 1024.

How each shape becomes a sign image (the estimator only sees where the sign changes):

- line, circle: a half-plane and a disc, +1 inside. The sign boundary is the curve.
- Sierpinski triangle: Pascal's triangle mod 2, +1 where binom(y, x) is odd (x & (y-x) == 0,
  x <= y). The odd entries form the gasket at pixel resolution, and since it has no
  interior at any scale the sign changes run along the whole set.
- Koch curve: the region below a Koch curve, +1 inside, sampled exactly at pixel centres
  (even-odd crossing count per column, not a polygon rasteriser, which rounds vertices).
  Centre sampling loses the curve's sub-pixel bumps, exactly as a trainability image
  does, which biases the smallest scales towards 1: the single-image estimate sits near
  1.21. The estimator's median over a zoom sequence is measured here, and box counting of
  the ideal curve's pixel set checks the counting itself.
"""

import numpy as np
import pytest

from fractal.dimension import (
    box_count,
    box_counts,
    box_sizes,
    edge_pixels,
    fractal_dimension,
    local_slopes,
    plot_box_counting,
)

N = 1024
KOCH = np.log(4) / np.log(3)  # 1.2619
SIERPINSKI = np.log(3) / np.log(2)  # 1.5850


def line_image():
    y, x = np.mgrid[0:N, 0:N]
    return np.where(y > 0.37 * x + 100, 1.0, -1.0)


def circle_image():
    y, x = np.mgrid[0:N, 0:N]
    return np.where((x - 511.3) ** 2 + (y - 498.7) ** 2 < 400**2, 1.0, -1.0)


def sierpinski_image():
    y, x = np.mgrid[0:N, 0:N]
    return np.where((x <= y) & ((x & (y - x)) == 0), 1.0, -1.0)


_ROT60 = np.array([[0.5, -np.sqrt(3) / 2], [np.sqrt(3) / 2, 0.5]])


def koch_points(depth):
    """Vertices of the Koch curve from (0, 0) to (1, 0), bumps towards +y."""
    pts = np.array([[0.0, 0.0], [1.0, 0.0]])
    for _ in range(depth):
        a, b = pts[:-1], pts[1:]
        d = (b - a) / 3
        p1, p3 = a + d, a + 2 * d
        p2 = p1 + d @ _ROT60.T
        pts = np.vstack([np.stack([a, p1, p2, p3], axis=1).reshape(-1, 2), pts[-1:]])
    return pts


def koch_image(x0, y0, width, depth=9):
    """+1 below the Koch curve, in the world window [x0, x0+width] x [y0, y0+width],
    sampled at pixel centres: a pixel is below if an odd number of curve segments cross
    the vertical ray above its centre."""
    p = (koch_points(depth) - [x0, y0]) / width * N  # pixel units, centre of pixel i at i+0.5
    a, b = p[:-1], p[1:]
    lo, hi = np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 0], b[:, 0])
    c0, c1 = np.ceil(lo - 0.5).astype(int), np.ceil(hi - 0.5).astype(int)
    n = c1 - c0  # columns whose centre lies in [lo, hi)
    seg = np.repeat(np.arange(len(a)), n)
    cols = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(c0, n)
    xa, ya, xb, yb = a[seg, 0], a[seg, 1], b[seg, 0], b[seg, 1]
    yc = ya + (cols + 0.5 - xa) * (yb - ya) / (xb - xa)
    keep = (cols >= 0) & (cols < N)
    rows = np.clip(np.ceil(yc[keep] - 0.5).astype(int), 0, N)
    hits = np.zeros((N + 1, N), dtype=int)
    np.add.at(hits, (rows, cols[keep]), 1)
    above = np.cumsum(hits[::-1], axis=0)[::-1][1:]  # crossings above each pixel centre
    return np.where(above % 2 == 1, 1.0, -1.0)


def koch_curve_pixels(depth=10, offset=(0.0, 0.3)):
    """The pixels the ideal Koch curve passes through (densely sampled)."""
    pts = koch_points(depth)
    t = np.linspace(0, 1, 4, endpoint=False)[None, :, None]
    dense = (pts[:-1, None, :] * (1 - t) + pts[1:, None, :] * t).reshape(-1, 2)
    idx = np.floor(dense * N * 0.999 + np.array(offset) * N).astype(int)
    img = np.zeros((N, N), dtype=bool)
    img[idx[:, 1], idx[:, 0]] = True
    return img


def test_edge_pixels_are_2x2_sign_changes():
    v = np.array([[-1, -1, 1], [-1, -1, 1], [-1, -1, -1.0]])
    e = edge_pixels(v)
    assert e.shape == (2, 2)
    assert e.tolist() == [[False, True], [False, True]]
    assert not edge_pixels(np.ones((5, 5))).any()


def test_box_counts_and_slopes():
    img = np.zeros((8, 8), dtype=bool)
    img[3, :] = True  # a line of 8 pixels
    sizes = box_sizes(img.shape, max_fraction=0.5)
    assert sizes == [1, 2, 4]
    counts = box_counts(img, sizes)
    assert counts.tolist() == [8, 4, 2]
    np.testing.assert_allclose(local_slopes(sizes, counts), [1.0, 1.0])


@pytest.mark.parametrize("image", [line_image, circle_image])
def test_smooth_curves_have_dimension_one(image):
    assert abs(fractal_dimension(image()) - 1.0) < 0.05


def test_sierpinski_triangle():
    assert abs(fractal_dimension(sierpinski_image()) - SIERPINSKI) < 0.05


def test_koch_curve_pixel_set():
    # the box counting itself, on the pixels the ideal curve passes through
    sizes = box_sizes((N, N))
    slopes = local_slopes(sizes, box_counts(koch_curve_pixels(), sizes))
    assert abs(np.median(slopes) - KOCH) < 0.05


def test_koch_curve_sign_image_zoom_sequence():
    # four frames zooming by 3**(1/4) towards the curve: the median over frames averages
    # out the lacunarity of a scale-3 fractal measured with power-of-two boxes
    frames = []
    for m in (1, 3**0.25, 3**0.5, 3**0.75):
        frames.append(koch_image((1 - 1 / m) / 2, -0.3 + (1 - 1 / m) * 0.3, 1 / m))
    estimate = fractal_dimension(frames)
    # sub-pixel bumps are invisible to centre sampling (see the module docstring): the
    # measured value is 1.20, so the tolerance here is wider than 0.05 on the low side
    assert KOCH - 0.07 < estimate < KOCH + 0.05


def test_no_boundary_is_nan():
    assert np.isnan(fractal_dimension(-np.ones((64, 64))))


def test_plot(tmp_path):
    d = plot_box_counting([circle_image()[:256, :256]], tmp_path / "bc.png")
    assert (tmp_path / "bc.png").stat().st_size > 0
    assert np.isfinite(d)
    assert box_count(line_image())["edge_pixels"] > N
