"""Zoom sequences: nested windows towards a point on the trainability boundary.

Frame 0 is the opening window; each next frame is `factor` times narrower on both axes,
centred on the zoom point and shifted, if needed, to stay inside the previous frame (so
the frames are nested). The point is either given (log10 x, y) or found on the boundary
of the previous frame: the edge pixel nearest that frame's centre, which keeps the
boundary in view however far the sequence zooms.
"""

import numpy as np

from fractal.dimension import edge_pixels


def next_window(window, point, factor):
    """The window `factor` times narrower than `window`, centred on `point` (log10 x, y)
    and shifted to lie inside `window`."""
    x0, x1, y0, y1 = window
    hw, hh = (x1 - x0) / factor / 2, (y1 - y0) / factor / 2
    cx = min(max(point[0], x0 + hw), x1 - hw)
    cy = min(max(point[1], y0 + hh), y1 - hh)
    return (cx - hw, cx + hw, cy - hh, cy + hh)


def boundary_point(values, window):
    """The boundary point nearest the window's centre, in log10 (x, y), or None if the
    image has no boundary. An edge pixel is the 2x2 neighbourhood between four pixel
    centres, so its position is the midpoint of those centres."""
    edges = edge_pixels(values)
    iy, ix = np.nonzero(edges)
    if len(ix) == 0:
        return None
    ny, nx = np.shape(values)
    x0, x1, y0, y1 = window
    xs = x0 + (ix + 0.5) * (x1 - x0) / (nx - 1)
    ys = y0 + (iy + 0.5) * (y1 - y0) / (ny - 1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # distance in units of the window, so x and y count the same whatever their ranges
    d = ((xs - cx) / (x1 - x0)) ** 2 + ((ys - cy) / (y1 - y0)) ** 2
    k = int(np.argmin(d))
    return (float(xs[k]), float(ys[k]))


def zoom_sequence(compute, window, frames, factor, point=None, log=print):
    """Compute `frames` nested images; `compute(window)` returns a dict with "values"
    (e.g. a partial of fractal.engine.compute_image).

    Returns a list of dicts: index, window, point (the point the NEXT frame zooms to,
    None for the last frame), and the compute result under "result".
    """
    out = []
    window = tuple(float(w) for w in window)
    for k in range(frames):
        res = compute(window)
        target = None
        if k + 1 < frames:
            target = tuple(point) if point is not None else boundary_point(res["values"], window)
            if target is None:
                # no boundary in view: keep zooming on the centre rather than stop
                target = ((window[0] + window[1]) / 2, (window[2] + window[3]) / 2)
                if log:
                    log(f"zoom frame {k}: no boundary in view, zooming on the centre")
        out.append({"index": k, "window": list(window), "point": target, "result": res})
        if target is not None:
            window = next_window(window, target, factor)
    return out
