"""The X x Y grid of a sweep: its values, its cells and which grid a cell belongs to.

plan() makes a grid's first cells and kmatrix/refine.py its later levels, both through
grid_cell(); nothing here reads results.
"""

import math

import numpy as np

from kmatrix.cell import Cell, cell_id
from kmatrix.errors import ConfigError
from kmatrix.workloads import load_workload

GRID_AXES = ("i", "j", "x", "y")  # what a 2-D sweep adds to a cell's point


def sweep_values(cfg, axis):
    """The grid values along "x" or "y" (log10- or linearly spaced)."""
    sym = f"SWEEP_{axis.upper()}"
    low, high = cfg.get(f"sweep_{axis}_min"), cfg.get(f"sweep_{axis}_max")
    points = cfg.get(f"sweep_{axis}_points")
    spacing = cfg.get(f"sweep_{axis}_spacing", "log")
    if low is None or high is None:
        raise ConfigError(f"{sym}_MIN", "empty sweep bound", f"set {sym}_MIN and {sym}_MAX")
    if not points or points < 1:
        raise ConfigError(f"{sym}_POINTS", "empty sweep axis", f"set {sym}_POINTS >= 1")
    if low >= high and points > 1:
        raise ConfigError(
            f"{sym}_MIN", f"min {low:g} >= max {high:g}", f"make {sym}_MIN < {sym}_MAX"
        )
    if spacing == "log":
        if low <= 0 or high <= 0:
            raise ConfigError(
                f"{sym}_MIN",
                f"log spacing needs positive bounds, got {low:g} .. {high:g}",
                f"choose {sym}_SPACING_LINEAR or positive bounds",
            )
        values = np.logspace(math.log10(low), math.log10(high), points)
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # refused just below
            values = np.linspace(low, high, points)
    if not np.isfinite(values).all():  # e.g. a linear range wider than a float can span
        raise ConfigError(
            f"{sym}_MIN",
            f"{points} points from {low:g} to {high:g} include values that are not finite",
            f"a narrower {sym}_MIN..{sym}_MAX",
        )
    return [float(v) for v in values]


def grid_cell(cfg, module_path, base_point, base, i, j, xs, ys, index):
    """The cell at point (i, j) of the X x Y grid of one axis combination (`base_point`,
    whose parameters are `base`): the one place grid cells are made, for plan() and for
    the later levels of a refined grid. Its run seed is the combination's seed, shared by
    every point so that a map is a function of the swept hyperparameters alone, or
    seed + i*1000 + j per point (SWEEP_SEEDS_PER_POINT)."""
    point = {**base_point, "i": i, "j": j, "x": xs[i], "y": ys[j]}
    params = dict(base)
    apply_sweep(cfg, params, "x", xs[i])
    apply_sweep(cfg, params, "y", ys[j])
    params["grid_seeds"] = cfg.get("sweep_seeds") or "shared"
    seed = int(base_point.get("seed", (cfg.get("seeds") or [0])[0]))
    if params["grid_seeds"] == "per_point":
        seed += i * 1000 + j
    counts = {"i": len(xs), "j": len(ys)}
    return Cell(cell_id(point, list(point)[:-2], counts), index, module_path, point, seed, params)


def combination(point):
    """A grid cell's point without the grid: which grid of the plan it belongs to."""
    return {k: v for k, v in point.items() if k not in GRID_AXES}


def grid_base(cfg, cell):
    """(axis point without the grid, parameters before the sweep) of a grid cell's
    combination: what grid_cell() needs to make its neighbours."""
    from kmatrix.variants import config_for

    base_point = combination(cell.point)
    wl = load_workload(cell.workload)
    return base_point, wl.cell_params(config_for(cfg, base_point), base_point)


def apply_sweep(cfg, params, axis, value):
    name = cfg.get(f"sweep_{axis}_param")
    current = params.get(name)
    if name not in params or isinstance(current, bool) or not isinstance(current, (int, float)):
        numeric = sorted(
            k for k, v in params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        raise ConfigError(
            f"SWEEP_{axis.upper()}_PARAM",
            f"{name!r} is not a numeric hyperparameter of this workload",
            "choose one of: " + ", ".join(numeric),
        )
    params[name] = int(round(value)) if isinstance(current, int) else value


def check_int_sweep(cfg, axis, params, values):
    """An integer knob swept over points that round to the same integer would run the
    same cell twice under two ids: refuse it."""
    name = cfg.get(f"sweep_{axis}_param")
    if isinstance(params.get(name), int) and not isinstance(params.get(name), bool):
        rounded = [int(round(v)) for v in values]
        if len(set(rounded)) != len(rounded):
            sym = f"SWEEP_{axis.upper()}"
            raise ConfigError(
                f"{sym}_POINTS",
                f"{name} is an integer, and {len(values)} points from {values[0]:g} to "
                f"{values[-1]:g} round to repeated values {' '.join(map(str, rounded[:12]))}",
                f"fewer points ({len(set(rounded))} at most) or a wider {sym}_MIN..{sym}_MAX",
            )


def axis_titles(cfg, names):
    """Column titles for a cell's axis names: x and y named after the swept knobs."""
    swept = {"x": cfg.get("sweep_x_param") or "x", "y": cfg.get("sweep_y_param") or "y"}
    return [swept.get(n, n) for n in names]
