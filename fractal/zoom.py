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
centre and each lies inside the image twice as wide. The automatic path moves to the
densest boundary whose next window is not speckle (isolated pixels: sign noise rather
than structure), and backs up a level where it finds none; paths that start from a given
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
# 5/16, a converged sea with a few percent of lone diverged pixels (the chaotic band of
# the lr planes) about as many percent; a boundary resolved by the pixels has them only
# at its tips and corners. A frame is reported speckled above SPECKLE_FRAME; a descent
# candidate is rejected when its next window has more than SPECKLE_AHEAD (half that:
# frames there are judged at another resolution and up to a quarter width off-centre).
SPECKLE_FRAME = 0.02
SPECKLE_AHEAD = SPECKLE_FRAME / 2
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


def speckle_ahead(values):
    """[n-1, n-1] over the edge cells: the largest isolated fraction of the windows 1/2,
    1/4 and 1/8 as wide as the image around each cell, the next three frames' windows
    if the path went on there, seen at this image's resolution."""
    iso = isolated(values)[:-1, :-1].astype(float)
    n = iso.shape[0] + 1
    return np.max([_box_mean(iso, max(3, n // d)) for d in (2, 4, 8)], axis=0)


def candidates(values, prefer="dense", reach=0.25):
    """The next centres to try on an image [n, n] whose centre is the current one, best
    first, and what was seen: a list of (dx, dy) in pixels from the centre, and info.

    Candidates are the edge cells (2x2 sign changes) within `reach` of the half-width
    from the centre, the middle quarter: the final centre then stays within a quarter
    width of this image's centre (the moves below halve), so every frame at most half
    this wide lies inside it and the
    windows n / 2, n / 4 and n / 8 pixels wide around a candidate are where the next three
    frames will be, give or take a quarter of their width. A candidate is acceptable when
    none of them is speckle (speckle_ahead at most SPECKLE_AHEAD): what the frames there
    will show, since sign noise is noise at every resolution, and the speckle the 257-pixel
    frames showed, the 65-pixel descent images showed as well (docs/fractal.md). "dense":
    the most boundary around the candidate first (an n / 8 box; nearest on ties); "near":
    the nearest first. Up to ALTERNATIVES acceptable ones are returned, n / 8 pixels apart,
    for the descent to back up to; none when the image is blank or only speckle is left.
    """
    found, info, _ = _candidates(values, prefer, reach)
    return found, info


def _candidates(values, prefer, reach):
    """candidates(), and the fallback choose_point() takes when there are none: the edge
    cell within reach with the least speckle ahead (nearest on ties), or None."""
    v = np.asarray(values)
    n = v.shape[0]
    h = (n - 1) / 2
    edges = paper_edges(v)
    iy, ix = np.nonzero(edges)
    info = {"edge_fraction": float(edges.mean()), "isolated_fraction": 0.0, "status": "ok"}
    info["image_isolated_fraction"] = float(isolated(v).mean())
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
    density = _box_mean(edges.astype(float), max(3, n // 8))[iy, ix]
    ahead = speckle_ahead(v)[iy, ix]
    dist = dx**2 + dy**2
    if prefer == "dense":  # no speckle at all ahead first, then most boundary, nearest
        order = np.lexsort((dist, -density, ahead > 0))
    else:
        order = np.argsort(dist, kind="stable")
    ok = ahead <= SPECKLE_AHEAD
    info["least_isolated_ahead"] = float(ahead.min())
    picked = []
    apart = max(1.0, n / 8)
    for i in order:
        if not ok[i] or any(
            abs(dx[i] - dx[j]) < apart and abs(dy[i] - dy[j]) < apart for j in picked
        ):
            continue
        picked.append(int(i))
        if len(picked) == ALTERNATIVES:
            break
    if not picked:
        info["status"] = "speckled"
        k = int(np.lexsort((dist, ahead))[0])
        return [], info, ((float(dx[k]), float(dy[k])), float(ahead[k]))
    k = picked[0]
    info.update(density=float(density[k]), isolated_fraction=float(ahead[k]))
    return [(float(dx[i]), float(dy[i])) for i in picked], info, None


def choose_point(values, prefer="dense", reach=0.25):
    """The best next centre on an image (candidates()' first), or where a lost path goes
    on: the image's centre when blank, else the edge cell within the middle quarter with
    the least speckle ahead (nearest on ties)."""
    found, info, fallback = _candidates(values, prefer, reach)
    return (found[0] if found else _lost(info, fallback)), info


def _lost(info, fallback):
    """Where a path with no acceptable candidate goes on: the least speckled edge cell
    (recording its speckle in `info`), or straight on when the image is blank."""
    if fallback is None:
        return (0.0, 0.0)
    move, info["isolated_fraction"] = fallback
    return move


def descend(compute, centre, width, deepest, resolution, prefer="dense", log=None):
    """Follow the boundary from `centre` (log10 x, y) at `width` decades down to the
    centre of the frame `deepest` decades wide.

    compute(centre, width) returns the image [n, n] of the square window of that width
    around centre on the grid centre + (i - (n-1)/2) * width / (n-1) (n = resolution).
    Widths halve exactly from `width`; the last image examined is 2 * deepest wide (it
    chooses the deepest frame's centre). At each depth the best acceptable candidate
    (candidates()). Where an image has none (blank, or speckle wherever the path could go
    on), the descent backs up to the deepest level with an untried alternative and goes on
    from there, as long as the images stay within twice those of a straight descent; past
    that it goes on through the least speckled point (choose_point). Pure given `compute`:
    the same inputs give the same centre. Returns {"centre": [x, y], "levels": [per level
    of the path: width, centre, move, the alternative taken (rank), what candidates()
    saw], "images": images computed, "backtracks": times it backed up}.
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
        reach = 0.5 if not path else 0.25  # the first move: anywhere a half-width window fits
        found, info, fallback = _candidates(values, prefer, reach)
        if not found:
            j = len(path) - 1
            while j >= 0 and path[j]["rank"] + 1 >= len(path[j]["found"]):
                j -= 1
            if j >= 0 and images + depth - (j + 1) <= limit:  # room to reach the bottom
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
