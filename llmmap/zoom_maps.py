"""Zoom sequences of a map: square frames, each 2x narrower around a boundary point.

Frame k has n x n points (n odd) on an integer lattice shared by all frames: position
(u, v) <-> anchor + (u, v) * unit (axis units, log10 of a log-spaced knob), unit =
width / (n - 1) / 2^(F - 1), so the deepest frame's step is one unit. Frame k's points
are its centre C_k + (a, b) * 2^(F - 1 - k), a, b in [-(n - 1)/2, (n - 1)/2]:

    frame 0     centred on the anchor (a boundary point, given or found on the map);
    frame k+1   half as wide, centred on the point of frame k at the boundary (a 2x2
                neighbourhood of two labels) nearest frame k's centre. Its points at even
                offsets are frame k's points (the quarter of frame k around that centre):
                computed once.

Each frame is a refined grid (kmatrix.refine.derive, with the map's guard, band and
verification; levels 0: every point computed), whose already known points (shared with
the frame before) are not computed again. The per-frame and pooled box-counting
dimension use the paper protocol's estimator (fractal.dimension).
"""

import math

from kmatrix import refine


def frame_position(centre, k, frames, n, i, j):
    """Lattice position of frame k's point (i, j) (0 <= i, j < n)."""
    stride = 2 ** (frames - 1 - k)
    h = (n - 1) // 2
    return centre[0] + (i - h) * stride, centre[1] + (j - h) * stride


def nearest_edge(labels, n):
    """The frame point (i, j) at the boundary nearest the centre: of the 2x2
    neighbourhoods holding two labels, the one nearest the centre, and of its four points
    the one nearest the centre. None for a blank frame."""
    h = (n - 1) / 2
    best = None
    for i in range(n - 1):
        for j in range(n - 1):
            quad = {labels[(i, j)], labels[(i + 1, j)], labels[(i, j + 1)], labels[(i + 1, j + 1)]}
            if len(quad) > 1:
                d = max(abs(i + 0.5 - h), abs(j + 0.5 - h)), abs(i + 0.5 - h) + abs(j + 0.5 - h)
                if best is None or d < best[0]:
                    best = (d, i, j)
    if best is None:
        return None
    _, i, j = best
    corners = [(i, j), (i + 1, j), (i, j + 1), (i + 1, j + 1)]
    return min(corners, key=lambda p: (max(abs(p[0] - h), abs(p[1] - h)), p))


def walk(frames, n, label_of, levels=0, guard=1, verify=0, band=0):
    """Frame after frame. `label_of(u, v)` is the label of a computed lattice point or
    raises KeyError. Returns {"frames": [{"frame", "centre", "labels" {(i, j): label},
    "inferred" {(i, j)}, "verified", "status"}], "pending": [(u, v)]}; a blank frame
    (no boundary) ends the sequence."""
    out = {"frames": [], "pending": []}
    centre = (0, 0)
    for k in range(frames):

        def at(i, j, k=k, centre=centre):
            return label_of(*frame_position(centre, k, frames, n, i, j))

        walked = refine.derive(levels, guard, verify, n, n, at, seed=k, band=band)
        if walked["pending"]:
            out["pending"] = [
                frame_position(centre, k, frames, n, i, j) for i, j in walked["pending"]
            ]
            return out
        edge = nearest_edge(walked["labels"], n)
        out["frames"].append(
            {
                "frame": k,
                "centre": centre,
                "labels": walked["labels"],
                "inferred": set(walked["inferred"]),
                "walked": walked,
                "status": "ok" if edge else "blank",
            }
        )
        if edge is None:
            return out
        centre = frame_position(centre, k, frames, n, *edge)
    return out


def unit(width, n, frames):
    """The lattice unit (axis units): the deepest frame's step."""
    return math.ldexp(width / (n - 1), -(frames - 1))
