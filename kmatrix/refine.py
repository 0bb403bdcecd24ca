"""Adaptive refinement of a 2-D grid at its label boundary.

A refined grid of N = (n0 - 1) * 2^L + 1 points per axis (SWEEP_X_POINTS, with
L = SWEEP_REFINE_LEVELS) is computed level by level on nested lattices, so every coarse
point is also a fine point:

  level 0   every point whose indices are multiples of 2^L (the coarse grid) is computed;
  level k   each point new at stride s = 2^(L-k) is looked at: the coarse cell around
            it (the 2 x 2 points of the previous lattice, stride 2s, that enclose it)
            widened by SWEEP_REFINE_GUARD coarse cells on every side is its
            neighbourhood. If the neighbourhood holds one label only, the point is
            inferred to have it; otherwise it is computed.

A label is what the workload's label(result) returns (an LLM grid: stable and
trainable), so a map is refined wherever any label changes. The guard band is what
keeps small features: a boundary that wanders into a coarse cell without touching its
corners is still caught if it touches a corner within the band.

SWEEP_REFINE_BAND = w > 0 also computes, at every level, each point within w points (of
that level's lattice) of a label change seen there, again and again until no new change
appears: once any point of a feature is computed, its boundary is followed. That holds
for points inferred at an earlier level too, so in the finished grid no inferred point
lies within w points of a label change.

SWEEP_REFINE_VERIFY inferred points per level are computed anyway, at random, stratified
by their distance to the nearest label change of the previous lattice (STRATA: most
samples near the boundary, where a miss would be): the summary reports each stratum's
misses and a 95% upper bound on its miss rate and on its wrong points.

What it cannot see (detection_limit): a feature is certain to be found only if it
contains a square of 2^L x 2^L grid points, which then holds a coarse point. A smaller
one is found only where it lies within the guard band of a change found at a coarser
level, or where a verification point lands on it.

Everything here is a function of the planned cells and their results: nothing is
stored, the same results always give the same plan.
"""

import math
import random

import numpy as np

from kmatrix.errors import ConfigError
from kmatrix.grid import combination, grid_base, grid_cell, sweep_values
from kmatrix.workloads import load_workload


def enabled(cfg):
    return bool(cfg.get("sweep") and cfg.get("sweep_refine"))


def check(cfg):
    """The grid must be nested: (points - 1) divisible by 2^levels on both axes."""
    s0 = 2**cfg.sweep_refine_levels
    for axis in ("x", "y"):
        n = cfg.get(f"sweep_{axis}_points")
        if (n - 1) % s0 or n < s0 + 1:
            m = max(1, (n - 1) // s0)
            raise ConfigError(
                f"SWEEP_{axis.upper()}_POINTS",
                f"{n} points cannot be refined {cfg.sweep_refine_levels} times "
                f"(nested grids need (points - 1) divisible by 2^{cfg.sweep_refine_levels})",
                f"use {m * s0 + 1} or {(m + 1) * s0 + 1} points, or other SWEEP_REFINE_LEVELS",
            )


def level0(cfg, nx, ny):
    """The (i, j) of the coarse grid."""
    s0 = 2**cfg.sweep_refine_levels
    return [(i, j) for i in range(0, nx, s0) for j in range(0, ny, s0)]


def _new_points(nx, ny, s):
    """(i, j) arrays of the stride-s lattice points that are not on the stride-2s
    lattice, ordered by i, then j."""
    i, j = np.arange(0, nx, s), np.arange(0, ny, s)
    a, b = np.nonzero((i % (2 * s) != 0)[:, None] | (j % (2 * s) != 0)[None, :])
    return i[a], j[b]


def _neighbourhoods(code, i, j, s, guard):
    """For the points (i, j) new at stride s, their neighbourhoods: the points of the
    stride-2s lattice in the coarse cell around (i, j), widened by `guard` coarse cells
    on every side, clipped to the grid (`code`: the decided labels' codes). Returns
    whether each holds one label, and the (i, j) arrays of each one's first point
    (smallest i, then j)."""
    c = 2 * s
    lattice = code[::c, ::c]
    lo, hi = _window(lattice, guard, np.minimum), _window(lattice, guard, np.maximum)
    a, b = i // c, j // c
    return lo[a, b] == hi[a, b], np.maximum(a - guard, 0) * c, np.maximum(b - guard, 0) * c


def _window(a, guard, reduce):
    """`reduce` (np.minimum or np.maximum) of a 2-D array over each entry's window: from
    `guard` entries before it to guard + 1 after it on both axes, clipped to the array."""
    for axis in (0, 1):
        n = a.shape[axis]
        shifted = [
            a.take(np.clip(np.arange(n) + d, 0, n - 1), axis) for d in range(-guard, guard + 2)
        ]
        a = reduce.reduce(shifted)
    return a


def _points(i, j):
    """[(i, j)] of two index arrays, as Python ints."""
    return list(zip(i.tolist(), j.tolist()))


# Verification strata: the distance of an inferred point to the nearest label change of
# the previous lattice, in points of the level's lattice (Chebyshev), and the share of the
# sample each gets; a stratum with fewer points passes its share on to the next one.
STRATA = ((1, 4), (5, 8), (9, 16), (17, 32), (33, None))
STRATA_SHARE = (0.4, 0.3, 0.15, 0.1, 0.05)


def drive(walk, truth):
    """Run a staged walk to its end with every label known in advance: walk(label_of)
    returns a dict whose "pending" lists the points to compute next (derive(), and the
    llmmap probes' walks); truth(*point) labels one. Returns (the last dict, {point:
    label} of the points computed). Tests and benchmarks use it on known boundaries."""
    known = {}

    def label_of(*point):
        if point not in known:
            raise KeyError(point)
        return known[point]

    while True:
        out = walk(label_of)
        if not out["pending"]:
            return out, known
        for point in out["pending"]:
            known[point] = truth(*point)


def replay(truth, levels, guard=1, verify=0, band=0, seed=0):
    """derive() over a label image whose every point is known, truth[j, i] (a synthetic
    boundary, or a map computed in full): what a refined grid of it would compute and
    infer, without training anything. Returns (the derived labels as an array like
    truth, derive's dict, the set of computed points)."""
    ny, nx = truth.shape
    out, known = drive(
        lambda label_of: derive(levels, guard, verify, nx, ny, label_of, seed=seed, band=band),
        lambda i, j: truth[j, i].item(),
    )
    labels = np.zeros_like(truth)
    for (i, j), value in out["labels"].items():
        labels[j, i] = value
    return labels, out, set(known)


def derive(levels, guard, verify, nx, ny, label_of, seed=0, band=0):
    """Walk the levels of one grid. `label_of(i, j)` is the label of a computed point, or
    raises KeyError if it has none yet. Returns a dict:

      labels    {(i, j): label} of every point decided so far (computed or inferred)
      inferred  {(i, j): label} of the points decided without computing them
      verified  [(i, j, inferred label, computed label, level, stratum)] of the
                verification sample
      strata    {(level, stratum): inferred points there when the sample was drawn}
      pending   points to compute next (the level under way), [] once the map is complete
      level     the level under way (levels + 1 when complete)
    """
    s0 = 2**levels
    out = dict(labels={}, inferred={}, verified=[], strata={}, pending=[], level=0)
    labels = out["labels"]
    first = [(i, j) for i in range(0, nx, s0) for j in range(0, ny, s0)]
    if not _take(first, label_of, out):
        return out
    grid = _Grid(nx, ny)
    grid.computed(first, labels)
    rng = random.Random(seed)
    for k in range(1, levels + 1):
        s = s0 >> k
        out["level"] = k
        i, j = _new_points(nx, ny, s)
        one, first_i, first_j = _neighbourhoods(grid.code, i, j, s, guard)
        compute = _points(i[~one], j[~one])
        i, j = i[one], j[one]  # inferred: the label of their neighbourhood's first point
        infer = dict(zip(_points(i, j), grid.inferred(i, j, first_i[one], first_j[one])))
        where = _stratum_grid(grid.code[:: 2 * s, :: 2 * s], grid.code[::s, ::s].shape)
        stratum = where[i // s, j // s]
        counts = np.bincount(stratum, minlength=len(STRATA))
        for n in range(len(STRATA)):
            out["strata"][(k, n)] = int(counts[n])
        sample = _stratified_sample(rng, list(infer), stratum, verify)
        if not _take(compute + sample, label_of, out):
            return out
        grid.computed(compute + sample, labels)
        for p in sample:
            n = int(where[p[0] // s, p[1] // s])
            out["verified"].append((*p, infer.pop(p), labels[p], k, n))
        while band:  # follow every change seen on this lattice until no new one appears
            extra = _in_band(grid, s, band)
            if not extra:
                break
            for p in extra:  # new at this level, or inferred at an earlier one
                infer.pop(p, None)
                out["inferred"].pop(p, None)
            if not _take(extra, label_of, out):
                return out
            grid.computed(extra, labels)
        labels.update(infer)
        out["inferred"].update(infer)
    out["level"] = levels + 1
    return out


class _Grid:
    """The labels decided so far as [i, j] arrays, so that neighbourhoods, changes and
    bands are array operations: `code` an int per label (-1: undecided; labels are only
    compared for equality, through the dict `codes`), `label` the label itself,
    `guessed` whether it was inferred."""

    def __init__(self, nx, ny):
        self.codes = {}
        self.code = np.full((nx, ny), -1, dtype=np.int64)
        self.label = np.empty((nx, ny), dtype=object)
        self.guessed = np.zeros((nx, ny), dtype=bool)

    def computed(self, points, labels):
        """Enter computed points, their labels from `labels`."""
        if not points:
            return
        got = [labels[p] for p in points]
        i, j = (np.fromiter(x, dtype=np.int64, count=len(points)) for x in zip(*points))
        self.code[i, j] = [self.codes.setdefault(label, len(self.codes)) for label in got]
        self.label[i, j] = np.fromiter(got, dtype=object, count=len(got))
        self.guessed[i, j] = False

    def inferred(self, i, j, from_i, from_j):
        """Enter inferred points (i, j) with the labels of points (from_i, from_j); returns
        those labels, as a list."""
        self.code[i, j] = self.code[from_i, from_j]
        self.label[i, j] = self.label[from_i, from_j]
        self.guessed[i, j] = True
        return self.label[i, j].tolist()


def _lattice(labels, s, nx, ny, codes):
    """[a, b] int array of the stride-s lattice: a code per label, -1 where unknown."""
    a = np.full(((nx - 1) // s + 1, (ny - 1) // s + 1), -1, dtype=np.int64)
    for (i, j), label in labels.items():
        if i % s == 0 and j % s == 0:
            a[i // s, j // s] = codes.setdefault(label, len(codes))
    return a


def _changes(a):
    """Points of a lattice array with a known 4-neighbour of another known label."""
    out = np.zeros(a.shape, dtype=bool)
    for axis in (0, 1):
        lo, hi = np.swapaxes(a, 0, axis)[:-1], np.swapaxes(a, 0, axis)[1:]
        d = (lo != hi) & (lo >= 0) & (hi >= 0)
        o = np.swapaxes(out, 0, axis)
        o[:-1] |= d
        o[1:] |= d
    return out


def _dilate(mask, r):
    """Points within Chebyshev distance r of a True point (a box filter, one axis at a
    time: differences of cumulative sums)."""
    m = np.asarray(mask, dtype=bool)
    for axis in (0, 1):
        m = np.swapaxes(m, 0, axis)
        n = len(m)
        c = np.zeros((n + 1, *m.shape[1:]), dtype=np.int64)
        np.cumsum(m, axis=0, out=c[1:])
        lo, hi = np.maximum(np.arange(n) - r, 0), np.minimum(np.arange(n) + r + 1, n)
        m = np.swapaxes(c[hi] > c[lo], 0, axis)
    return m


def _stratum_grid(prev, shape):
    """Stratum index of every point of a lattice of this shape (stride s), by its
    distance in stride-s points to the nearest label change of `prev`, the code array of
    the stride-2s lattice."""
    near = np.zeros(shape, dtype=bool)
    near[::2, ::2] = _changes(prev)
    # the strata's distances grow: a point's stratum is how many of them it lies beyond
    return sum((~_dilate(near, hi)).astype(np.int64) for _, hi in STRATA[:-1])


def _strata(labels, infer, s, nx, ny):
    """{inferred point: stratum index} by its distance, in stride-s points, to the nearest
    label change of the previous (stride 2s) lattice."""
    if not infer:
        return {}
    prev = _lattice(labels, 2 * s, nx, ny, {})
    where = _stratum_grid(prev, ((nx - 1) // s + 1, (ny - 1) // s + 1))
    return {(i, j): int(where[i // s, j // s]) for i, j in infer}


def _stratified_sample(rng, points, stratum, verify):
    """Up to `verify` of the inferred points (sorted), drawn per stratum (stratum: an
    array of their stratum indices) by STRATA_SHARE, nearest first."""
    sizes = np.bincount(stratum, minlength=len(STRATA))
    sample, left = [], min(verify, len(points))
    for n in range(len(STRATA)):
        share = STRATA_SHARE[n] / sum(STRATA_SHARE[n:])
        take = min(int(sizes[n]), left if n == len(STRATA) - 1 else math.ceil(left * share))
        if take:  # (drawing none takes no random numbers)
            pool = [points[m] for m in np.flatnonzero(stratum == n).tolist()]
            sample += rng.sample(pool, take)
        left -= take
    return sample


def _in_band(grid, s, band):
    """Inferred points within `band` stride-s points of a label change on the stride-s
    lattice (computed and inferred labels together, all decided there), sorted: this
    level's and those of earlier levels (on coarser lattices, so on this one too)."""
    near = _dilate(_changes(grid.code[::s, ::s]), band) & grid.guessed[::s, ::s]
    a, b = np.nonzero(near)
    return _points(a * s, b * s)


def miss_bound(misses, n, confidence=0.95):
    """One-sided upper bound on a miss rate from `misses` of `n` (Clopper-Pearson): the
    rate at which seeing this few misses has probability 1 - confidence. None if n = 0."""
    if n == 0:
        return None
    if misses >= n:
        return 1.0
    alpha = 1 - confidence

    def cdf(p):  # P(X <= misses) for X ~ Binomial(n, p)
        return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(misses + 1))

    lo, hi = misses / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > alpha else (lo, mid)
    return hi


def verification_report(walked):
    """Per stratum, over all levels: inferred points, verified, misses, and 95% upper
    bounds on the miss rate and on the wrong points among the inferred ones."""
    rows = []
    for n, (lo, hi) in enumerate(STRATA):
        population = sum(v for (_, m), v in walked["strata"].items() if m == n)
        checked = [v for v in walked["verified"] if v[5] == n]
        misses = sum(1 for v in checked if v[2] != v[3])
        bound = miss_bound(misses, len(checked))
        rows.append(
            {
                "distance_points": [lo, hi],
                "inferred": population,
                "verified": len(checked),
                "misses": misses,
                "miss_rate_upper_95": bound,
                "wrong_points_upper_95": (
                    None if bound is None else math.ceil(bound * (population - len(checked)))
                ),
            }
        )
    return rows


def detection_limit(levels, guard, band, step_x=None, step_y=None):
    """What refinement at these settings is certain to see, and what it may miss."""
    s0 = 2**levels
    out = {
        "certain_feature_points": s0,
        "text": (
            f"a feature (a region of another label) is certain to be found if it contains "
            f"{s0} x {s0} grid points (it then holds a coarse point); smaller ones only "
            f"within {guard} coarse cell(s) of a change found at a coarser level, or where a "
            f"verification point lands"
            + (f"; once found, its boundary is followed within {band} point(s)" if band else "")
        ),
    }
    if step_x is not None:
        out["certain_feature_x"] = s0 * step_x
        out["certain_feature_y"] = s0 * step_y
    return out


def _take(points, label_of, out):
    """Record the labels of computed points; False (and `pending` set) if any is missing."""
    labels, missing = out["labels"], []
    for p in points:
        try:
            labels[p] = label_of(*p)
        except KeyError:
            missing.append(p)
    out["pending"] = missing
    return not missing


def _groups(cells):
    """Grid cells by their axis combination: {key: (the first cell, {(i, j): cell})}."""
    groups = {}
    for cell in cells:
        key = tuple(combination(cell.point).items())
        first, at = groups.setdefault(key, (cell, {}))
        at[(cell.point["i"], cell.point["j"])] = cell
    return groups


def walk(cfg, cells, found):
    """derive() for every grid of the plan: {key: (first cell, derive's dict)}."""
    label = getattr(load_workload(cells[0].workload), "label", lambda result: result["status"])
    nx, ny = cfg.sweep_x_points, cfg.sweep_y_points
    out = {}
    for n, (key, (first, at)) in enumerate(_groups(cells).items()):

        def label_of(i, j, at=at):
            cell = at.get((i, j))
            result = found.get(cell.id) if cell else None
            if result is None or result.get("status") == "failed":
                raise KeyError((i, j))
            return _hashable(label(result))

        levels, guard = cfg.sweep_refine_levels, cfg.sweep_refine_guard
        verify = cfg.get("sweep_refine_verify") or 0
        band = cfg.get("sweep_refine_band") or 0
        out[key] = (first, derive(levels, guard, verify, nx, ny, label_of, seed=n, band=band))
    return out


def _hashable(label):
    return tuple(sorted(label.items())) if isinstance(label, dict) else label


def next_level(cfg, cells, found):
    """The cells the refinement needs next (kmatrix.stages), [] when every grid is done."""
    xs, ys = sweep_values(cfg, "x"), sweep_values(cfg, "y")
    planned = {c.id for c in cells}
    new = []
    for first, walked in walk(cfg, cells, found).values():
        base_point, base = grid_base(cfg, first)
        for i, j in walked["pending"]:
            cell = grid_cell(cfg, first.workload, base_point, base, i, j, xs, ys, 0)
            if cell.id not in planned:
                new.append(cell)
    for index, cell in enumerate(new, start=len(cells)):
        cell.index = index
    return new


def inferred_cells(cfg, cells, found):
    """The points decided without computing them, as cells with a result of status
    "inferred" whose metrics are the label; and per grid the verification records.
    Returns (cells, {id: result}, {group name: summary dict})."""
    xs, ys = sweep_values(cfg, "x"), sweep_values(cfg, "y")
    virtual, made, report = [], {}, {}
    for key, (first, walked) in walk(cfg, cells, found).items():
        base_point, base = grid_base(cfg, first)
        for (i, j), label in sorted(walked["inferred"].items()):
            cell = grid_cell(cfg, first.workload, base_point, base, i, j, xs, ys, -1)
            virtual.append(cell)
            made[cell.id] = {"id": cell.id, "status": "inferred", "metrics": dict(label)}
        misses = [v for v in walked["verified"] if v[2] != v[3]]
        report["-".join(str(v) for _, v in key) or "grid"] = {
            "levels": cfg.sweep_refine_levels,
            "guard": cfg.sweep_refine_guard,
            "level_reached": min(walked["level"], cfg.sweep_refine_levels),
            "complete": not walked["pending"] and walked["level"] > cfg.sweep_refine_levels,
            "computed": len(walked["labels"]) - len(walked["inferred"]),
            "inferred": len(walked["inferred"]),
            "points": len(xs) * len(ys),
            "verified": len(walked["verified"]),
            "verify_misses": len(misses),
            "miss_rate": len(misses) / len(walked["verified"]) if walked["verified"] else None,
            "band": cfg.get("sweep_refine_band") or 0,
            "verification_strata": verification_report(walked),
            "detection_limit": detection_limit(
                cfg.sweep_refine_levels,
                cfg.sweep_refine_guard,
                cfg.get("sweep_refine_band") or 0,
                *(_step(cfg, axis) for axis in ("x", "y")),
            ),
        }
    return virtual, made, report


def _step(cfg, axis):
    """One grid step along an axis: decades for a log axis, the knob's unit for a linear one."""
    lo, hi, n = (cfg.get(f"sweep_{axis}_{k}") for k in ("min", "max", "points"))
    if (cfg.get(f"sweep_{axis}_spacing") or "log") == "log":
        lo, hi = math.log10(lo), math.log10(hi)
    return (hi - lo) / max(1, n - 1)


def later_cells(cfg, cells):
    """How many cells later stages may still add: a refined grid's points not planned yet
    (a workload's own stages are not known in advance: 0)."""
    if not enabled(cfg):
        return 0
    groups = {tuple(combination(c.point).items()) for c in cells}
    return len(groups) * cfg.sweep_x_points * cfg.sweep_y_points - len(cells)
