"""Adaptive refinement of a 2-D grid at its label boundary.

A refined grid of N = (n0 - 1) * 2^L + 1 points per axis (SWEEP_X_POINTS, with
L = SWEEP_REFINE_LEVELS) is computed level by level on nested lattices, so every coarse
point is also a fine point:

  level 0   every point whose indices are multiples of 2^L (the coarse grid) is computed;
  level k   the points new at stride s = 2^(L-k) are looked at one by one: the coarse
            cell around a point (the 2 x 2 points of the previous lattice, stride 2s, that
            enclose it) widened by SWEEP_REFINE_GUARD coarse cells on every side is its
            neighbourhood. If the neighbourhood holds one label only, the point is
            inferred to have it; otherwise it is computed.

A label is what the workload's label(result) returns (an LLM grid: stable and
trainable), so a map is refined wherever any label changes. The guard band is what
keeps small features: a boundary that wanders into a coarse cell without touching its
corners is still caught if it touches a corner within the band. SWEEP_REFINE_VERIFY
inferred points per level are computed anyway, at random, and the miss rate (how often
their computed label differs from the inferred one) is reported in the summary.

Everything here is a function of the planned cells and their results: nothing is
stored, the same results always give the same plan.
"""

import random

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
    """Points of the stride-s lattice that are not on the stride-2s lattice."""
    return [(i, j) for i in range(0, nx, s) for j in range(0, ny, s) if i % (2 * s) or j % (2 * s)]


def _neighbourhood(i, j, s, guard, nx, ny):
    """Points of the stride-2s lattice in the coarse cell around (i, j), widened by
    `guard` coarse cells on every side, clipped to the grid."""
    c = 2 * s
    i0, j0 = i // c * c, j // c * c
    xs = range(max(0, i0 - guard * c), min(nx - 1, i0 + (guard + 1) * c) + 1, c)
    ys = range(max(0, j0 - guard * c), min(ny - 1, j0 + (guard + 1) * c) + 1, c)
    return [(a, b) for a in xs for b in ys]


def derive(levels, guard, verify, nx, ny, label_of, seed=0):
    """Walk the levels of one grid. `label_of(i, j)` is the label of a computed point, or
    raises KeyError if it has none yet. Returns a dict:

      labels    {(i, j): label} of every point decided so far (computed or inferred)
      inferred  {(i, j): label} of the points decided without computing them
      verified  [(i, j, inferred label, computed label)] of the verification sample
      pending   points to compute next (the level under way), [] once the map is complete
      level     the level under way (levels + 1 when complete)
    """
    s0 = 2**levels
    out = dict(labels={}, inferred={}, verified=[], pending=[], level=0)
    first = [(i, j) for i in range(0, nx, s0) for j in range(0, ny, s0)]
    if not _take(first, label_of, out):
        return out
    rng = random.Random(seed)
    for k in range(1, levels + 1):
        s = s0 >> k
        out["level"] = k
        compute, infer = [], {}
        for i, j in _new_points(nx, ny, s):
            around = {out["labels"][q] for q in _neighbourhood(i, j, s, guard, nx, ny)}
            if len(around) == 1:
                infer[(i, j)] = next(iter(around))
            else:
                compute.append((i, j))
        sample = rng.sample(sorted(infer), min(verify, len(infer)))
        if not _take(compute + sample, label_of, out):
            return out
        for p, label in infer.items():
            if p in sample:
                out["verified"].append((*p, label, out["labels"][p]))
            else:
                out["labels"][p] = out["inferred"][p] = label
    out["level"] = levels + 1
    return out


def _take(points, label_of, out):
    """Record the labels of computed points; False (and `pending` set) if any is missing."""
    missing = []
    for p in points:
        try:
            out["labels"][p] = label_of(*p)
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
        out[key] = (first, derive(levels, guard, verify, nx, ny, label_of, seed=n))
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
        }
    return virtual, made, report


def later_cells(cfg, cells):
    """How many cells later stages may still add: a refined grid's points not planned yet
    (a workload's own stages are not known in advance: 0)."""
    if not enabled(cfg):
        return 0
    groups = {tuple(combination(c.point).items()) for c in cells}
    return len(groups) * cfg.sweep_x_points * cfg.sweep_y_points - len(cells)
