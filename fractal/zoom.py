"""Zoom sequences as the paper measures them: nested square frames sharing one centre.

Frame k of a sequence is `width0 / 2^k` decades wide on both axes, centred on the
sequence's centre; frame 0 is the first frame of the doubling ladder through an anchor
width (a panel's width, or the opening window's) at least `outer` decades wide (the
paper: 6). The pixel grid of a frame with n pixels per side is

    log10 coordinate = centre + (i - (n - 1) / 2) * step_k,   step_k = step_0 / 2^k,

so for odd n every other point of frame k + 1 is a point of frame k, bitwise: the inner
quarter of each frame is shared with the next deeper one (shared_pixels).

The centre is given (the paper's panels, PAPER_PANELS, or the user's) or found by
`descend`: at each depth a low-resolution image around the current centre, and a move to
a boundary point within the middle quarter of it, so the frames nest around the final
centre and each lies inside the image twice as wide. The automatic path moves to where
the boundary is most complex at the next frame's scale, avoiding only windows whose
structure the arithmetic made (noise_test: the window recomputed on a grid shifted by a
fraction of a pixel, and the float64 floor of the grid); paths from a given centre keep it
while it is known to better than a frame's pixel, then move to the boundary point nearest
the previous centre.
"""

import math

import numpy as np

from fractal.dimension import box_counts, box_sizes, local_slopes, paper_edges

OUTER_WIDTH = 6.0  # decades: the paper's zoom sequences end at the first frame this wide

# The panels of the paper's figure (its tick labels): log10 centre of x and y, the panel's
# width in decades, and its frame index counted from the widest frame (>= 6 decades).
# x is the input-layer lr (paraminit: the weight offset), y the output-layer lr (the lr).
PAPER_PANELS = {
    "tanh": (1.1238442669, 2.3018075671, 7.749e-7, 23),
    "relu": (-0.2383546474, 1.9108561363, 2.146e-6, 22),
    "identity": (2.2787786522, 0.6791983840, 4.023e-6, 21),
    "minibatch": (-0.5728404884, 2.2412214093, 5.058e-12, 41),
    "single_datapoint": (1.6839376040, 1.2602310346, 3.696e-6, 21),
    "paraminit": (-0.7076069516, 1.5913480399, 6.291e-10, 34),
}

# The panels' centres are known to about this fraction of the panel's width (their
# printed digits): frames whose pixel is larger see the printed centre as exact.
PANEL_PRECISION = 1e-4
ALTERNATIVES = 4


def ladder(anchor_width, outer=OUTER_WIDTH):
    """(width0, j): the widest frame's width, anchor_width * 2^j with j the smallest
    integer such that it is >= outer, so the anchor is frame j of the sequence."""
    j = math.ceil(math.log2(outer / anchor_width))
    while math.ldexp(anchor_width, j) < outer:  # guard the log's rounding
        j += 1
    while math.ldexp(anchor_width, j - 1) >= outer:
        j -= 1
    return math.ldexp(anchor_width, j), j


def known_width(width0, anchor_width, n, precision=PANEL_PRECISION):
    """The narrowest frame of the ladder from width0 whose pixel (width / (n - 1)) is
    still larger than the uncertainty of a centre known to `precision` of anchor_width:
    frames down to it stay on the centre; deeper ones follow the boundary from there."""
    u = precision * anchor_width
    k = 0
    while math.ldexp(width0, -(k + 1)) / (n - 1) > u:
        k += 1
    return math.ldexp(width0, -k)


def frame_step(width0, k, n):
    """The grid step of frame k (decades per pixel): step_0 / 2^k, exact halvings."""
    return math.ldexp(width0 / (n - 1), -k)


def frame_grid(centre, width0, k, n):
    """log10 coordinates (gx, gy) of the columns and rows of frame k, n pixels per side."""
    step = frame_step(width0, k, n)
    offsets = np.arange(n, dtype=np.float64) - (n - 1) / 2
    return centre[0] + offsets * step, centre[1] + offsets * step


def frame_window(centre, width0, k, n):
    """(x_min, x_max, y_min, y_max) of frame k's pixel centres."""
    gx, gy = frame_grid(centre, width0, k, n)
    return [float(gx[0]), float(gx[-1]), float(gy[0]), float(gy[-1])]


def shared_pixels(n):
    """(inner, deeper): the indices along one axis of frame k's pixels that are also
    pixels of frame k + 1, and their indices there (odd n; empty for even n). Offset o
    from the centre in frame k is offset 2 o in frame k + 1."""
    if n % 2 == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    h = (n - 1) // 2
    inner = np.arange(h - h // 2, h + h // 2 + 1)
    return inner, 2 * inner - h


def known_from_deeper(deeper_values):
    """(mask, values) for compute_image's `known`: frame k's pixels copied from frame
    k + 1's values ([n, n], the same centre)."""
    n = deeper_values.shape[0]
    inner, deeper = shared_pixels(n)
    mask = np.zeros((n, n), dtype=bool)
    values = np.zeros((n, n))
    mask[np.ix_(inner, inner)] = True
    values[np.ix_(inner, inner)] = deeper_values[np.ix_(deeper, deeper)]
    return mask, values


# ----------------------------------------------------------------------------------------
# what the arithmetic makes: the float64 floor of the grid, and a shifted recomputation

# A frame's log10 coordinates are float64 numbers near the centre (|x| up to ~3) and its
# learning rates 10**x: rounding moves a pixel by half an ulp of x, and 10**x by half an
# ulp of the rate, which is a pixel's share of the rate's change across a step. Past a
# quarter of a pixel the grid no longer holds the pixel positions it claims: the frame is
# below the float64 floor, whatever the training does.
GRID_JITTER = 0.25

# The noise test. Recompute a window on its grid shifted by NOISE_SHIFT of a pixel along
# the diagonal and count the pixels whose sign changed, against the pixels whose sign
# differs from their diagonal neighbour one pixel away. Where the sign is a function of
# position, the pixels that flip under a shift s lie within s of the boundary: a fraction
# proportional to s^(2 - D) for a boundary of box-counting dimension D (s for a line, about
# 0.35 for D = 1.5 at s = 1/8, 0.75 for D = 1.86). Where the sign is rounding noise (the
# rate's last bits decide it), any shift redraws it: the ratio is 1. Above NOISE_RATIO
# (D > 1.95 at s = 1/8) the window's structure is called arithmetic.
NOISE_SHIFT = 0.125
NOISE_RATIO = 0.9
# The descent judges the next frame's window before it exists, on a coarser image, up to
# a quarter of a width off-centre, and a window half noise and half structure reads in
# between: it accepts a window only well below the frames' threshold, so that a path
# along the edge of a noisy band does not sit just under it.
NOISE_AHEAD = 0.8
# Rows or columns that are bitwise equal to their neighbour: two grid lines that became
# one float64 rate. Counted among the lines the boundary crosses.
IDENTICAL_LINES = 0.05
# The noise test's causes that are the grid's own rounding (the others, "redrawn" and
# "flat", are signs that sub-pixel shifts redraw on a grid above its floor)
GRID_CAUSES = ("merged_lines", "grid_floor")
# The fall test (FRACTAL_NOISE_FALL): the ratio above cannot tell a boundary of dimension
# near 2 from noise, and a window that is partly noise can pass it. So the window is also
# recomputed on the grid shifted by DEEP_SHIFT of a pixel (never below DEEP_ULPS
# half-ulps of the grid: grid_jitter). Where the learning rates set the sign, the pixels
# that flip fall as s^(2 - D) from NOISE_SHIFT down to there (2^17 times less shift: by
# 2.3x for D = 1.93, 362x for D = 1.5); where rounding amplified by training sets it, any
# move above the float64 floor redraws them as often. Flips falling by less than
# FALL_RATIO (D above about 1.97 over that lever) call the window's structure the
# arithmetic's ("flat"); the descent asks for FALL_AHEAD. With less than MIN_LEVER
# between the two shifts (a grid near its floor) the fall test has no verdict and the
# ratio decides.
DEEP_SHIFT = 2.0**-20
DEEP_ULPS = 128
FALL_RATIO = 1.5
FALL_AHEAD = 2.0
MIN_LEVER = 2.0**4


def deep_shift(jitter):
    """The fall test's small shift, in pixels, for a grid whose rounding is `jitter`
    pixels (grid_jitter), or None where it would leave less than MIN_LEVER."""
    shift = max(DEEP_SHIFT, DEEP_ULPS * float(jitter))
    return shift if NOISE_SHIFT / shift >= MIN_LEVER else None


def grid_jitter(g):
    """The largest rounding of a grid's pixel positions, in pixels: half an ulp of the
    log10 coordinate, or of the rate 10**x as a share of its change per pixel, whichever
    is larger (g: the log10 coordinates of one axis, evenly spaced)."""
    g = np.asarray(g, dtype=np.float64)
    step = (float(g[-1]) - float(g[0])) / (len(g) - 1)
    if not step > 0:
        return math.inf
    x = float(np.max(np.abs(g)))
    rate = 2.0**-53 / (step * math.log(10))  # relative half-ulp over the rate's change
    return max(float(np.spacing(x)) / 2 / step, rate)


def shifted_grid(gx, gy, shift=NOISE_SHIFT):
    """The grid (gx, gy) moved by `shift` of a pixel along both axes."""
    sx = (gx[-1] - gx[0]) / (len(gx) - 1) * shift
    sy = (gy[-1] - gy[0]) / (len(gy) - 1) * shift
    return np.asarray(gx) + sx, np.asarray(gy) + sy


def _flip_maps(values, shifted):
    """[n-1, n-1] maps: 1 where a pixel's sign differs from its diagonal neighbour, and
    where it differs from the pixel on the shifted grid."""
    pos, spos = np.asarray(values) > 0, np.asarray(shifted) > 0
    near = (pos[:-1, :-1] != pos[1:, 1:]).astype(float)
    moved = (pos != spos)[:-1, :-1].astype(float)
    return near, moved


def identical_lines(values):
    """The fraction of the rows and columns crossed by the boundary that are bitwise equal
    to the next one (0 when the boundary crosses none)."""
    v = np.asarray(values)
    pos = v > 0
    same, crossed = 0, 0
    for a, p in ((v, pos), (v.T, pos.T)):
        mixed = p.any(axis=1) & ~p.all(axis=1)
        pair = mixed[:-1] | mixed[1:]
        crossed += int(pair.sum())
        same += int((np.all(a[:-1] == a[1:], axis=1) & pair).sum())
    return same / crossed if crossed else 0.0


def noise_test(values, shifted, jitter=0.0, deep=None, deep_px=None):
    """Numerical noise or structure? values: an image; shifted: the same window recomputed
    on the grid moved by NOISE_SHIFT of a pixel (shifted_grid); jitter: grid_jitter() of
    the grid; deep: the window on the grid moved by deep_px = deep_shift(jitter) of a
    pixel (the fall test; None: the ratio test alone). Returns the flip fractions, their
    ratio (None without boundary), the identical lines, the fall (flips at NOISE_SHIFT
    over those at deep_px) and "arithmetic": lines that merged, a grid below the float64
    floor, or, by the fall test where it has a verdict and else by the ratio, a window
    whose signs every shift redraws; the causes that hold under "causes"."""
    near, moved = _flip_maps(values, shifted)
    ratio = float(moved.mean() / near.mean()) if near.any() else None
    same = identical_lines(values)
    fall, flat = None, None
    if deep is not None:
        _, moved_deep = _flip_maps(values, deep)
        if moved_deep.any():
            fall = float(moved.mean() / moved_deep.mean())
            flat = fall < FALL_RATIO
        elif moved.any():
            flat = False  # flips at NOISE_SHIFT, none below: falling
    redrawn = ratio is not None and ratio > NOISE_RATIO
    causes = [
        cause
        for cause, hit in (
            ("redrawn", redrawn),
            ("flat", bool(flat)),
            ("merged_lines", same > IDENTICAL_LINES),
            ("grid_floor", jitter > GRID_JITTER),
        )
        if hit
    ]
    decides = ("flat",) if flat is not None else ("redrawn",)
    return {
        "flips_neighbour": float(near.mean()),
        "flips_shifted": float(moved.mean()),
        "noise_ratio": ratio,
        "identical_lines": same,
        "grid_jitter": float(jitter),
        "deep_shift_px": deep_px if deep is not None else None,
        "fall": fall,
        "arithmetic": bool(set(causes) & {*GRID_CAUSES, *decides}),
        # "redrawn": a grid above its float64 floor whose signs a shift of 1/8 pixel
        # redraws (rounding amplified by training, or a boundary of dimension above about
        # 1.95 that the frame does not resolve); "flat": flips that do not fall from 1/8
        # of a pixel down to deep_shift_px (the fall test, deciding where it ran);
        # "merged_lines" or "grid_floor": the grid's own rounding
        "causes": causes,
    }


# ----------------------------------------------------------------------------------------
# what a frame looks like


def isolated(values):
    """Boolean [n, n]: pixels (not on the border) at least three of whose four neighbours
    have the other sign (> 0 against <= 0): isolated pixels and one-pixel spikes. Reported,
    not avoided: a tangled boundary at finite resolution looks like this too."""
    pos = np.asarray(values) > 0
    out = np.zeros(pos.shape, dtype=bool)
    c = pos[1:-1, 1:-1]
    differ = (
        (pos[:-2, 1:-1] != c).astype(np.int8)
        + (pos[2:, 1:-1] != c)
        + (pos[1:-1, :-2] != c)
        + (pos[1:-1, 2:] != c)
    )
    out[1:-1, 1:-1] = differ >= 3
    return out


def frame_stats(values):
    """What the summary reports of a frame: boundary (edge) and isolated-pixel fractions,
    and whether it is blank."""
    edges = paper_edges(values)
    iso = isolated(values)
    return {
        "edge_fraction": float(edges.mean()) if edges.size else 0.0,
        "isolated_fraction": float(iso.mean()) if iso.size else 0.0,
        "blank": not bool(edges.any()),
    }


def _box_sum(a, b):
    """Sum of `a` over the b x b box around every pixel (clipped at the border)."""
    n0, n1 = a.shape
    c = np.zeros((n0 + 1, n1 + 1))
    c[1:, 1:] = np.cumsum(np.cumsum(a, axis=0), axis=1)
    r = b // 2
    lo0, hi0 = np.clip(np.arange(n0) - r, 0, n0), np.clip(np.arange(n0) + r + 1, 0, n0)
    lo1, hi1 = np.clip(np.arange(n1) - r, 0, n1), np.clip(np.arange(n1) + r + 1, 0, n1)
    return c[hi0][:, hi1] - c[lo0][:, hi1] - c[hi0][:, lo1] + c[lo0][:, lo1]


def window_slope(edges, iy, ix, b):
    """The box-counting slope of the boundary in the b x b window around edge cell
    (iy, ix): the median of the local slopes over boxes of 1, 2, 4, ... pixels up to a
    quarter of the window (pow2 counting). Returns (slope or nan, boundary cells)."""
    r = b // 2
    w = edges[max(0, iy - r) : iy + r + 1, max(0, ix - r) : ix + r + 1]
    sizes = box_sizes(w.shape)
    slopes = local_slopes(sizes, box_counts(w, sizes))
    return (float(np.median(slopes)) if len(slopes) else math.nan), int(w.sum())


def candidates(values, prefer="structure", reach=0.25, shifted=None, jitter=0.0, deep=None):
    """The next centres to try on an image [n, n] whose centre is the current one, best
    first, and what was seen: a list of (dx, dy) in pixels from the centre, and info.

    Candidates are the edge cells (2x2 sign changes) within `reach` of the half-width
    from the centre, the middle quarter: the final centre then stays within a quarter
    width of this image's centre (the moves below halve), so every frame at most half
    this wide lies inside it, and the window n / 2 pixels wide around a candidate is
    where the next frame will be, give or take a quarter of its width.

    "structure" (the automatic path): the most complex boundary at the next frame's scale
    first: the highest box-counting slope in that window (to 0.05), then the most boundary
    cells in it, then the nearest. A candidate is acceptable unless the noise test calls
    its window arithmetic (`shifted`: the image recomputed on the grid moved by
    NOISE_SHIFT of a pixel: acceptable up to NOISE_AHEAD; `jitter`: the grid's float64
    rounding, grid_jitter(); `deep`: the image on the grid moved by deep_shift(jitter) of a
    pixel, the fall test: then a window is noise where its flips fall by less than
    FALL_AHEAD, and the ratio is only recorded); nothing else is avoided. "near" (the
    paper's and given paths): the nearest boundary point first,
    as a person zooming by hand would; every candidate is acceptable. Up to ALTERNATIVES
    acceptable ones are returned, n / 8 pixels apart, for the descent to back up to; none
    when the image is blank or the arithmetic made all of it.
    """
    found, info, _ = _candidates(values, prefer, reach, shifted, jitter, deep)
    return found, info


def _candidates(values, prefer, reach, shifted=None, jitter=0.0, deep=None):
    """candidates(), and the fallback choose_point() takes when there are none: the edge
    cell within reach whose window is least noise-like (nearest on ties), or None."""
    if prefer not in ("structure", "near"):
        raise ValueError(f"prefer={prefer!r}; expected 'structure' or 'near'")
    v = np.asarray(values)
    n = v.shape[0]
    h = (n - 1) / 2
    edges = paper_edges(v)
    iy, ix = np.nonzero(edges)
    info = {"edge_fraction": float(edges.mean()), "status": "ok", "grid_jitter": float(jitter)}
    if len(ix) == 0:
        info["status"] = "blank"
        return [], info, None
    dx, dy = ix + 0.5 - h, iy + 0.5 - h  # an edge cell sits between four pixel centres
    reach = h * reach
    inside = (np.abs(dx) <= reach) & (np.abs(dy) <= reach)
    if not inside.any():  # boundary only further out: step towards it, staying nested
        info["status"] = "outside"
        k = int(np.argmin(dx**2 + dy**2))
        move = (float(np.clip(dx[k], -reach, reach)), float(np.clip(dy[k], -reach, reach)))
        return [move], info, None
    iy, ix, dx, dy = iy[inside], ix[inside], dx[inside], dy[inside]
    dist = dx**2 + dy**2
    b = max(3, n // 2)  # the next frame's window at this image's resolution
    sn = sm = np.zeros(len(ix))
    sd = None
    if shifted is not None:
        near, moved = _flip_maps(v, shifted)
        sn, sm = _box_sum(near, b)[iy, ix], _box_sum(moved, b)[iy, ix]
        info["image_noise_ratio"] = float(moved.mean() / near.mean()) if near.any() else None
        if deep is not None:
            _, moved_deep = _flip_maps(v, deep)
            sd = _box_sum(moved_deep, b)[iy, ix]
            info["image_fall"] = (
                float(moved.mean() / moved_deep.mean()) if moved_deep.any() else None
            )
    noisy, ratio = _noise_ahead(sn, sm, sd, jitter)
    noise_like = ratio  # the fallback: least noise-like first
    if sd is not None:  # by the least fall
        noise_like = -np.where(sd > 0, sm / np.maximum(sd, 1), np.inf)
    if prefer == "structure":
        scored = [window_slope(edges, a, c, b) for a, c in zip(iy, ix)]
        slope = np.array([s for s, _ in scored])
        cells = np.array([c for _, c in scored])
        key = -np.round(np.nan_to_num(slope, nan=0.0) / 0.05)
        order = np.lexsort((dist, -cells, key))
    else:
        slope = cells = None
        noisy[:] = False  # the nearest point, whatever it looks like
        order = np.argsort(dist, kind="stable")
    picked = []
    apart = max(1.0, n / 8)
    for i in order:
        if noisy[i] or any(
            abs(dx[i] - dx[j]) < apart and abs(dy[i] - dy[j]) < apart for j in picked
        ):
            continue
        picked.append(int(i))
        if len(picked) == ALTERNATIVES:
            break
    if not picked:
        info["status"] = "arithmetic"
        k = int(np.lexsort((dist, noise_like))[0])
        return [], info, ((float(dx[k]), float(dy[k])), float(ratio[k]))
    k = picked[0]
    if shifted is not None:
        info["noise_ratio"] = float(ratio[k])
    if slope is not None:
        info.update(window_slope=_num(slope[k]), window_cells=int(cells[k]))
    return [(float(dx[i]), float(dy[i])) for i in picked], info, None


def _noise_ahead(near, moved, deep, jitter):
    """The descent's verdict on windows (arrays, or sums over one image): `near` flips
    between neighbours, `moved` flips on the grid shifted by NOISE_SHIFT, `deep` (the fall
    test, or None) flips on the grid shifted by deep_shift(). Noise where the ratio
    moved / near is above NOISE_AHEAD, or with the fall test where the flips fall by less
    than FALL_AHEAD (the ratio is then only recorded), or where the grid is below its
    float64 floor (jitter above GRID_JITTER). Returns (noise?, ratio; 0 without flips)."""
    near, moved = np.asarray(near, dtype=float), np.asarray(moved, dtype=float)
    ratio = np.where(near > 0, moved / np.maximum(near, 1), 0.0)
    noisy = ratio > NOISE_AHEAD
    if deep is not None:
        noisy = (deep > 0) & (moved < FALL_AHEAD * np.asarray(deep))
    return noisy | (jitter > GRID_JITTER), ratio


def _num(x):
    return float(x) if np.isfinite(x) else None


def choose_point(values, prefer="structure", reach=0.25, shifted=None, jitter=0.0, deep=None):
    """The best next centre on an image (candidates()' first), or where a lost path goes
    on: the image's centre when blank, else the edge cell within the middle quarter whose
    window is least noise-like (nearest on ties)."""
    found, info, fallback = _candidates(values, prefer, reach, shifted, jitter, deep)
    return (found[0] if found else _lost(info, fallback)), info


def _lost(info, fallback):
    """Where a path with no acceptable candidate goes on: the least noise-like edge cell
    (recording its ratio in `info`), or straight on when the image is blank."""
    if fallback is None:
        return (0.0, 0.0)
    move, info["noise_ratio"] = fallback
    return move


# The lookahead (FRACTAL_DESCENT_LOOKAHEAD): candidates() judges a window at the next
# frame's scale only, and a boundary complex there can be a smooth arc a few levels down:
# the path then ends on it and every deeper frame reads 1. With L levels of lookahead the
# descent also computes, around each acceptable candidate, the image 2^L times narrower
# (and on its grid shifted as for the noise test) and takes first the candidate whose
# deep image has the most complex boundary: not called arithmetic, then the highest
# box-counting slope of the whole image (to 0.05), then the most boundary cells, then
# candidates()' order.
def look_ahead(compute, found, centre, width, levels, resolution, fall=False):
    """Ranks the candidates `found` (moves in pixels of the image `width` wide around
    `centre`) by the boundary on the image 2^levels times narrower around each. Returns
    (the candidates reordered, what each deep image showed in that order with the
    candidate's rank in `found` (`greedy_rank`), images computed)."""
    step = width / (resolution - 1)
    wa = math.ldexp(width, -levels)
    pixel = wa / (resolution - 1)
    seen, images = [], 0
    for rank, (mx, my) in enumerate(found):
        c = (centre[0] + mx * step, centre[1] + my * step)
        values = compute(c, wa)
        s = NOISE_SHIFT * pixel
        near, moved = _flip_maps(values, compute((c[0] + s, c[1] + s), wa))
        images += 2
        gx, gy = frame_grid(c, wa, 0, resolution)
        jitter = max(grid_jitter(gx), grid_jitter(gy))
        px = deep_shift(jitter) if fall else None
        deep = None
        if px is not None:  # the fall test decides, as in candidates()
            d = px * pixel
            _, deep = _flip_maps(values, compute((c[0] + d, c[1] + d), wa))
            deep = deep.sum()
            images += 1
        noisy, ratio = _noise_ahead(near.sum(), moved.sum(), deep, jitter)
        edges = paper_edges(values)
        h = edges.shape[0] // 2
        slope, cells = window_slope(edges, h, h, 2 * resolution)  # the whole image
        seen.append(
            {"move_px": [mx, my], "greedy_rank": rank, "slope": _num(slope), "cells": cells,
             "noise_ratio": float(ratio) if near.any() else None, "arithmetic": bool(noisy)}
        )  # fmt: skip
    order = sorted(
        range(len(found)),
        key=lambda i: (
            seen[i]["arithmetic"],
            -round((seen[i]["slope"] or 0.0) / 0.05),
            -seen[i]["cells"],
            i,
        ),
    )
    return [found[i] for i in order], [seen[i] for i in order], images


def descend(
    compute,
    centre,
    width,
    deepest,
    resolution,
    prefer="structure",
    log=None,
    fall=False,
    lookahead=0,
):
    """Follow the boundary from `centre` (log10 x, y) at `width` decades down to the
    centre of the frame `deepest` decades wide.

    compute(centre, width) returns the image [n, n] of the square window of that width
    around centre on the grid centre + (i - (n-1)/2) * width / (n-1) (n = resolution).
    Widths halve exactly from `width`; the last image examined is 2 * deepest wide (it
    chooses the deepest frame's centre). At each depth the best acceptable candidate
    (candidates()); for "structure" each image is also computed on its grid shifted by
    NOISE_SHIFT of a pixel (the centre moved by that much), for the noise test, and with
    `fall` once more by deep_shift() of a pixel, for the fall test; with `lookahead`
    (levels) the candidates are ranked by look_ahead() (not deeper than the last image).
    Where an image has none (blank, or the arithmetic's wherever the path could go on), the
    descent backs up to the deepest level with an untried alternative and goes on from
    there, as long as the images stay within twice those of a straight descent; past that
    it goes on through the least noise-like point (choose_point). Pure given `compute`:
    the same inputs give the same centre. Returns {"centre": [x, y], "levels": [per level
    of the path: width, centre, move, the alternative taken (rank), what candidates()
    saw], "images": images computed (shifted ones included), "backtracks": times it backed
    up}.
    """
    w0 = float(width)
    depth = 0
    while math.ldexp(w0, -depth) > 1.5 * deepest:
        depth += 1
    limit = 2 * depth
    path = []  # per level: centre, width, alternatives found, the one taken, info
    c = (float(centre[0]), float(centre[1]))
    images = backtracks = 0
    while len(path) < depth:
        w = math.ldexp(w0, -len(path))
        values = compute(c, w)
        images += 1
        shifted, jitter, deep = None, 0.0, None
        if prefer == "structure":
            gx, gy = frame_grid(c, w, 0, resolution)
            jitter = max(grid_jitter(gx), grid_jitter(gy))
            s = NOISE_SHIFT * w / (resolution - 1)
            shifted = compute((c[0] + s, c[1] + s), w)
            images += 1
            px = deep_shift(jitter) if fall else None
            if px is not None:
                sd = px * w / (resolution - 1)
                deep = compute((c[0] + sd, c[1] + sd), w)
                images += 1
        reach = 0.5 if not path else 0.25  # the first move: anywhere a half-width window fits
        found, info, fallback = _candidates(values, prefer, reach, shifted, jitter, deep)
        levels = min(lookahead, depth - 1 - len(path))
        if prefer == "structure" and levels > 0 and len(found) > 1:
            found, info["lookahead"], used = look_ahead(
                compute, found, c, w, levels, resolution, fall
            )
            images += used
        if not found:
            j = len(path) - 1
            while j >= 0 and path[j]["rank"] + 1 >= len(path[j]["found"]):
                j -= 1
            per_image = 1 + (shifted is not None) + (deep is not None)
            per_image *= 1 + (ALTERNATIVES if lookahead and prefer == "structure" else 0)
            if j >= 0 and images + per_image * (depth - (j + 1)) <= per_image * limit:
                if log:
                    log(
                        f"descent at width {w:.3g}: {info['status']}, back to {path[j]['width']:.3g}"
                    )
                del path[j + 1 :]
                path[j]["rank"] += 1
                backtracks += 1
                c = _moved(path[j], resolution)
                continue
            found = [_lost(info, fallback)]
            if log:
                log(f"descent at width {w:.3g}: {info['status']}")
        path.append({"centre": c, "width": w, "found": found, "rank": 0, "info": info})
        c = _moved(path[-1], resolution)
    levels = [
        {"width": lv["width"], "centre": list(lv["centre"]), "move_px": list(lv["found"][lv["rank"]]),
         "rank": lv["rank"], **lv["info"]}
        for lv in path
    ]  # fmt: skip
    return {"centre": list(c), "levels": levels, "images": images, "backtracks": backtracks}


def _moved(level, resolution):
    mx, my = level["found"][level["rank"]]
    step = level["width"] / (resolution - 1)
    return (level["centre"][0] + mx * step, level["centre"][1] + my * step)
