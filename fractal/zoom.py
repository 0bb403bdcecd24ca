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
a boundary point within the middle half of it, so the frames stay nested around the
final centre. The automatic path moves to the densest boundary that is not speckle
(isolated pixels: sign noise rather than structure); paths that start from a given
centre move to the nearest such point, which keeps the given frames as they were.
"""

import math

import numpy as np

from fractal.dimension import paper_edges

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

# Speckle: the fraction of pixels at least three of whose four neighbours have the other
# sign (isolated pixels and one-pixel spikes). Sign noise (every pixel a coin flip) has
# 5/16; a boundary resolved by the pixels has them only at its tips and corners. A descent
# candidate is rejected above SPECKLE_LOCAL in its neighbourhood; a frame is reported
# speckled above SPECKLE_FRAME.
SPECKLE_LOCAL = 0.05
SPECKLE_FRAME = 0.02


def ladder(anchor_width, outer=OUTER_WIDTH):
    """(width0, j): the widest frame's width, anchor_width * 2^j with j the smallest
    integer such that it is >= outer, so the anchor is frame j of the sequence."""
    j = math.ceil(math.log2(outer / anchor_width))
    while math.ldexp(anchor_width, j) < outer:  # guard the log's rounding
        j += 1
    while math.ldexp(anchor_width, j - 1) >= outer:
        j -= 1
    return math.ldexp(anchor_width, j), j


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
# what a frame looks like


def isolated(values):
    """Boolean [n, n]: pixels (not on the border) at least three of whose four neighbours
    have the other sign (> 0 against <= 0): isolated pixels and one-pixel spikes."""
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
    """What the summary reports of a frame: boundary (edge) and speckle fractions."""
    edges = paper_edges(values)
    iso = isolated(values)
    return {
        "edge_fraction": float(edges.mean()) if edges.size else 0.0,
        "isolated_fraction": float(iso.mean()) if iso.size else 0.0,
        "blank": not bool(edges.any()),
        "speckled": bool(iso.mean() > SPECKLE_FRAME) if iso.size else False,
    }


def _box_mean(a, b):
    """Mean of `a` over the b x b box around every pixel (clipped at the border)."""
    n0, n1 = a.shape
    c = np.zeros((n0 + 1, n1 + 1))
    c[1:, 1:] = np.cumsum(np.cumsum(a, axis=0), axis=1)
    r = b // 2
    lo0, hi0 = np.clip(np.arange(n0) - r, 0, n0), np.clip(np.arange(n0) + r + 1, 0, n0)
    lo1, hi1 = np.clip(np.arange(n1) - r, 0, n1), np.clip(np.arange(n1) + r + 1, 0, n1)
    s = c[hi0][:, hi1] - c[lo0][:, hi1] - c[hi0][:, lo1] + c[lo0][:, lo1]
    return s / np.outer(hi0 - lo0, hi1 - lo1)


def choose_point(values, prefer="dense"):
    """The next centre on an image [n, n] whose centre is the current one: (dx, dy) in
    pixels from the centre, and what was seen. Candidates are the edge cells (2x2 sign
    changes) within the middle half of the image, so the next, 2x narrower, window lies in
    this one; speckled neighbourhoods are avoided unless nothing else is left. "dense":
    the candidate with the most boundary around it (nearest on ties); "near": the nearest.
    """
    v = np.asarray(values)
    n = v.shape[0]
    h = (n - 1) / 2
    edges = paper_edges(v)
    iy, ix = np.nonzero(edges)
    info = {"edge_fraction": float(edges.mean()), "isolated_fraction": 0.0, "status": "ok"}
    if len(ix) == 0:
        info["status"] = "blank"
        return (0.0, 0.0), info
    dx, dy = ix + 0.5 - h, iy + 0.5 - h  # an edge cell sits between four pixel centres
    inside = (np.abs(dx) <= h / 2) & (np.abs(dy) <= h / 2)
    if not inside.any():  # boundary only near the border: step towards it, staying nested
        info["status"] = "outside"
        k = int(np.argmin(dx**2 + dy**2))
        return (float(np.clip(dx[k], -h / 2, h / 2)), float(np.clip(dy[k], -h / 2, h / 2))), info
    iy, ix, dx, dy = iy[inside], ix[inside], dx[inside], dy[inside]
    box = max(3, n // 8)
    density = _box_mean(edges.astype(float), box)[iy, ix]
    speckle = _box_mean(isolated(v)[:-1, :-1].astype(float), box)[iy, ix]
    ok = speckle <= SPECKLE_LOCAL
    if not ok.any():
        info["status"] = "speckled"
        ok = np.ones_like(ok)
    dist = dx**2 + dy**2
    if prefer == "dense":
        order = np.lexsort((dist, -density))  # most boundary first, then nearest
    else:
        order = np.argsort(dist, kind="stable")
    k = next(int(i) for i in order if ok[i])
    info.update(density=float(density[k]), isolated_fraction=float(speckle[k]))
    return (float(dx[k]), float(dy[k])), info


def descend(compute, centre, width, deepest, resolution, prefer="dense", log=None):
    """Follow the boundary from `centre` (log10 x, y) at `width` decades down to the
    centre of the frame `deepest` decades wide.

    compute(centre, width) returns the image [n, n] of the square window of that width
    around centre on the grid centre + (i - (n-1)/2) * width / (n-1) (n = resolution).
    Widths halve exactly from `width`; the last image examined is 2 * deepest wide (it
    chooses the deepest frame's centre). Pure given `compute`: the same inputs give the
    same centre. Returns {"centre": [x, y], "levels": [per image: width, centre, move,
    what choose_point saw]}.
    """
    c = (float(centre[0]), float(centre[1]))
    w = float(width)
    levels = []
    while w > 1.5 * deepest:
        values = compute(c, w)
        (mx, my), info = choose_point(values, prefer)
        step = w / (resolution - 1)
        nxt = (c[0] + mx * step, c[1] + my * step)
        levels.append({"width": w, "centre": list(c), "move_px": [mx, my], **info})
        if log and info["status"] != "ok":
            log(f"descent at width {w:.3g}: {info['status']}")
        c, w = nxt, w / 2
    return {"centre": list(c), "levels": levels}
