"""What refinement can and cannot see, on 129 x 129 synthetic maps of known structure
(4 levels from the 9 x 9 grid, guard 1, the settings of the 129 x 129 LLM map): a smooth
curve, one-pixel islands on it, islands of the detection limit's size, one-pixel
filaments, and a known fractal (a Mandelbrot window); the stratified verification and
the band."""

import numpy as np
import pytest

from fractal.dimension import fractal_dimension
from kmatrix import refine

N, LEVELS = 129, 4


def refined(truth, levels=LEVELS, guard=1, verify=20, band=0):
    """derive() driven to the end by an oracle: (labels as an array, walk dict, computed)."""
    labels, out, computed = refine.replay(truth.astype(bool), levels, guard, verify, band)
    assert len(out["labels"]) == truth.size
    return labels, out, computed


J, I = np.mgrid[0:N, 0:N]
CURVE = J < 60 + 20 * np.sin(I / 20)


def islands(size, count, far=6, seed=0):
    """The curve with `count` square islands of the other label, `far` px from it."""
    rng = np.random.default_rng(seed)
    truth, corners = CURVE.copy(), []
    while len(corners) < count:
        a, b = rng.integers(1, N - size - 1, 2)
        if abs(b + size / 2 - (60 + 20 * np.sin((a + size / 2) / 20))) > far + size:
            corners.append((a, b))
            truth[b : b + size, a : a + size] = ~CURVE[b : b + size, a : a + size]
    return truth, corners


def test_a_smooth_curve_is_exact_and_verification_looks_near_it():
    labels, out, computed = refined(CURVE, verify=40)
    assert (labels == CURVE).all() and len(computed) < 0.15 * N * N
    report = refine.verification_report(out)
    assert sum(r["misses"] for r in report) == 0
    near = sum(r["verified"] for r in report[:2])  # within 8 points of a change
    assert near >= 0.6 * sum(r["verified"] for r in report)
    for r in report:  # every stratum with a sample has a bound, and it shrinks with n
        if r["verified"]:
            assert 0 < r["miss_rate_upper_95"] <= 1 - 0.05 ** (1 / r["verified"]) + 1e-9


@pytest.mark.parametrize("band", [0, 1])
def test_one_pixel_islands_are_lost_and_verification_cannot_tell(band):
    truth, corners = islands(1, 40)
    labels, out, _ = refined(truth, band=band)
    found = sum(labels[b, a] == truth[b, a] for a, b in corners)
    assert found <= 8  # measured 4 of 40: below the detection limit
    assert sum(v[2] != v[3] for v in out["verified"]) == 0  # 70 samples, no miss seen


def test_islands_of_the_detection_limit_are_all_found():
    limit = refine.detection_limit(LEVELS, 1, 0)["certain_feature_points"]
    assert limit == 16
    truth, corners = islands(limit, 12, far=20, seed=1)
    labels, _, _ = refined(truth, band=1)
    assert (labels == truth).all()  # with the band: every point right
    labels, _, _ = refined(truth, band=0)
    for a, b in corners:  # without: each one found, its edge up to a few pixels off
        assert (
            labels[b : b + limit, a : a + limit] == truth[b : b + limit, a : a + limit]
        ).mean() > 0.95


def test_filaments_are_lost_unless_seen_and_the_band_follows_one_once_seen():
    truth = CURVE.copy()
    rows = (21, 37, 99, 115)  # odd rows: new only at the last level
    for r in rows:
        truth[r, 10:118] = ~truth[r, 10:118]
    labels0, _, computed0 = refined(truth, band=0, verify=300)
    lost0 = (labels0 != truth).sum()
    assert lost0 > 0.9 * 4 * 108  # measured 418 of 432: hits are single points
    labels1, _, computed1 = refined(truth, band=1, verify=300)
    seen = [r for r in rows if any(j == r for _, j in computed1)]
    assert len(seen) >= 2  # measured 3 of 4
    for r in rows:
        right = (labels1[r] == truth[r]).all()
        assert right == (r in seen)  # a filament seen once is followed to its ends


@pytest.mark.parametrize("band", [1, 2])
def test_no_inferred_point_lies_within_the_band_of_a_change(band):
    """The band follows changes found at the last level back into points inferred at an
    earlier one: in the finished grid every point within `band` of a label change (a
    4-neighbour of another label) was computed. A Mandelbrot window, whose boundary
    keeps finding changes next to points inferred on coarser lattices."""
    truth = mandelbrot(N)
    labels, out, computed = refined(truth, band=band)
    change = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        d = np.diff(labels.astype(int), axis=axis) != 0
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        change[tuple(lo)] |= d
        change[tuple(hi)] |= d
    near = refine._dilate(change, band)
    inferred = [(i, j) for i, j in out["inferred"] if near[j, i]]
    assert inferred == []
    assert set(out["inferred"]).isdisjoint(computed)


def mandelbrot(n, window=(-0.75, -0.70, 0.10, 0.15), iters=200):
    x = np.linspace(window[0], window[1], n)
    y = np.linspace(window[2], window[3], n)
    c = x[None, :] + 1j * y[:, None]
    z = np.zeros_like(c)
    inside = np.ones(c.shape, dtype=bool)
    for _ in range(iters):
        z = np.where(inside, z * z + c, z)
        inside &= np.abs(z) <= 2
    return inside


def test_a_known_fractal_is_followed():
    truth = mandelbrot(N)
    assert 0.05 < truth.mean() < 0.95
    labels, _, computed = refined(truth, band=1)
    full = fractal_dimension(truth.astype(float) - 0.5)
    got = fractal_dimension(labels.astype(float) - 0.5)
    assert full > 1.2  # a boundary of structure at every scale of the window
    assert abs(got - full) < 0.05, (got, full)
    assert len(computed) < 0.8 * N * N


def test_compare_maps_checks_every_shared_point():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "compare_maps.py"
    spec = importlib.util.spec_from_file_location("compare_maps", path)
    cm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cm)
    truth, _ = islands(1, 40)
    labels, out, _ = refined(truth)
    xs = np.logspace(-3, 2, N)
    inferred = np.zeros((N, N), dtype=bool)
    for i, j in out["inferred"]:
        inferred[j, i] = True
    f = lambda a: a.astype(float)  # noqa: E731
    fine = dict(xs=xs, ys=xs, trainable=f(labels), stable=f(labels), loss=f(labels))
    fine["inferred"] = inferred
    full = dict(xs=xs, ys=xs, trainable=f(truth), stable=f(truth), loss=f(truth))
    report = cm.compare(fine, full)
    assert report["shared_points"] == N * N  # the last level's points too
    assert report["inferred_trainable_wrong"] == int((labels != truth).sum()) > 0
    assert report["labels_equal_where_both_computed"]
    coarse = {k: v[::2, ::2] for k, v in full.items() if k not in ("xs", "ys")}
    report = cm.compare(fine, dict(coarse, xs=xs[::2], ys=xs[::2]))
    assert report["shared_points"] == 65 * 65


def test_framecheck_finds_each_lost_island_and_its_stratum():
    """bench/llmmap_framecheck.py's check on a frame of known structure: a smooth curve
    with one-pixel islands far from it. Refinement loses the islands; the check counts
    each as wrong at distance 0 of a change (inside the band), none outside, and puts
    every inferred point in one verification stratum."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "llmmap_framecheck.py"
    spec = importlib.util.spec_from_file_location("llmmap_framecheck", path)
    fc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fc)
    n = 65
    j, i = np.mgrid[0:n, 0:n]
    truth = (j < 20 + 6 * np.sin(i / 9)).astype(float)
    spots = [(45, 13), (50, 51), (57, 30)]  # (row, column), far from the curve
    for y, x in spots:
        truth[y, x] = 1.0
    xs = np.logspace(-3, 2, n)
    full = dict(xs=xs, ys=xs, trainable=truth, stable=np.ones_like(truth), loss=truth)
    full["ratio"] = truth
    report = fc.replay(full, levels=3, guard=1, band=1, verify=0)
    assert report["inferred_trainable_wrong"] == len(spots)  # every island lost
    assert report["wrong_within_band"] == len(spots) and report["wrong_outside_band"] == 0
    assert report["wrong_distance_to_change"] == [0.0] * len(spots)
    assert report["wrong_within_band_of_its_own_changes"] == 0  # islands it never saw
    strata = report["wrong_by_level_and_stratum"]
    assert sum(r["inferred"] for r in strata) == report["shared_points_inferred"]
    assert sum(r["wrong"] for r in strata) == len(spots)
    # the islands are counted as such, and a refined frame made from the walk shows them
    refined = dict(full, inferred=np.zeros((n, n), dtype=bool), trainable=truth.copy())
    for y, x in spots:
        refined["trainable"][y, x], refined["inferred"][y, x] = 0.0, True
    found = fc.islands(full, refined)
    assert found["one_pixel_islands"] == len(spots)
    assert found["inferred_wrong_one_pixel_islands_in_full"] == len(spots)
    assert found["computed_labels_differ"] == []
    assert found["inferred_wrong_within_band_of_its_own_changes"] == 0
    # each lost island is a feature missed whole; the region beyond the curve is kept
    assert found["features_trainable"] == 1 + len(spots)
    assert found["features_trainable_missed_sizes"] == [1] * len(spots)
    assert found["features_not_trainable_missed_sizes"] == []
