"""Transects: 1-D lines of points through a map's boundary, each depth 2x narrower.

The cheap first look at whether a boundary has structure below a map's resolution. A
line starts at an anchor (a point on the boundary) in a direction across it; its
points sit on an integer lattice along the line, position u <-> anchor + u * unit *
direction (axis units: log10 of a log-spaced knob), unit = width / (P - 1) / 2^(D - 1),
so the deepest depth's step is one unit. Depth d has P points (odd) at stride
2^(D - 1 - d) units around its centre c_d:

    depth 0   centred on the anchor (c_0 = 0), `width` wide;
    depth d+1 half as wide, centred on the point of depth d beside the label change
              nearest c_d. Every other point of depth d+1 is then a point of depth d:
              the shared half is computed once (same lattice position, same cell).

Counting label changes per depth is the answer: one change at every depth is a boundary
that stays a single crossing (smooth) down to that depth's step; a count that grows with
depth is structure. A line whose depth has no change has lost the boundary (stops).

Everything is a function of the labels known so far; nothing is stored.
"""

import math


def depth_points(centre, depth, points, depths):
    """Lattice positions of one depth's points, in order along the line."""
    stride = 2 ** (depths - 1 - depth)
    half = (points - 1) // 2
    return [centre + m * stride for m in range(-half, half + 1)]


def changes(labels):
    """Indices m where labels[m] != labels[m + 1] (neighbours along a line)."""
    return [m for m in range(len(labels) - 1) if labels[m] != labels[m + 1]]


def walk(lines, points, depths, label_of):
    """Follow every line depth by depth. `label_of(line, u)` is the label of a computed
    point or raises KeyError. Returns a dict:

      lines    per line, its depths so far: [{"depth", "centre", "positions", "labels",
               "changes", "status"}] (status "ok" or "lost": no change, the line stops)
      pending  (line, u) to compute next (every line's depth under way); [] when done
    """
    out = {"lines": [[] for _ in range(lines)], "pending": []}
    centres = [0] * lines
    for depth in range(depths):
        pending = []
        for n in range(lines):
            if centres[n] is None:
                continue
            us = depth_points(centres[n], depth, points, depths)
            labels = []
            for u in us:
                try:
                    labels.append(label_of(n, u))
                except KeyError:
                    pending.append((n, u))
            if len(labels) < len(us):
                continue
            found = changes(labels)
            record = {"depth": depth, "centre": centres[n], "positions": us}
            record.update(labels=labels, changes=found, status="ok" if found else "lost")
            out["lines"][n].append(record)
            if not found:
                centres[n] = None
                continue
            # the change nearest the centre; the next centre is its point nearer the centre
            mid = (points - 1) / 2
            m = min(found, key=lambda k: (abs(k + 0.5 - mid), k))
            centres[n] = us[m] if abs(m - mid) <= abs(m + 1 - mid) else us[m + 1]
        if pending:
            out["pending"] = pending
            return out
    return out


def unit(width, points, depths):
    """The lattice unit (axis units): the deepest depth's step."""
    return math.ldexp(width / (points - 1), -(depths - 1))
