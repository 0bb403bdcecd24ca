"""Planning: the typed configuration -> the list of cells, each fully resolved."""

import importlib
import itertools
import json
import math
from pathlib import Path

import numpy as np

from kmatrix.cell import Cell, cell_id
from kmatrix.errors import ConfigError

# Workload name (the WORKLOAD choice) -> the module implementing docs/workload-interface.md,
# or a package whose workload_module(cfg) names it (fractal holds two workloads).
WORKLOADS = {"gpt2": "gpt2.workload", "fractal": "fractal"}


def workload_module(cfg):
    """The workload's module path: a WORKLOADS name, or a dotted path (tests)."""
    name = WORKLOADS.get(cfg.workload, cfg.workload)
    chooser = getattr(load_workload(name), "workload_module", None)
    return chooser(cfg) if chooser else name


def load_workload(module_path):
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as e:
        if e.name and module_path.startswith(e.name):
            raise ConfigError("WORKLOAD", f"no workload module {module_path!r}") from None
        raise


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


GRID_AXES = ("i", "j", "x", "y")  # what a 2-D sweep adds to a cell's point


def plan(cfg, module_path=None):
    """Expand the configuration into cells: workload axes x (X x Y grid when swept). A
    refined grid (SWEEP_REFINE) starts with its coarse points; kmatrix/stages.py plans
    the rest from their results."""
    module_path = module_path or workload_module(cfg)
    wl = load_workload(module_path)
    wl.validate(cfg)
    axes = [(a[0], a[1]) for a in wl.axes(cfg)]
    for axis in wl.axes(cfg):  # (name, values) or (name, values, the Kconfig symbol behind it)
        if not axis[1]:
            symbol = axis[2] if len(axis) > 2 else axis[0].upper()
            raise ConfigError(symbol, f"the {axis[0]} axis is empty", "select at least one value")
    grid = bool(cfg.get("sweep"))
    if grid:
        xs, ys = sweep_values(cfg, "x"), sweep_values(cfg, "y")
        points = list(itertools.product(range(len(xs)), range(len(ys))))
        if cfg.get("sweep_refine"):
            from kmatrix import refine

            refine.check(cfg)
            points = refine.level0(cfg, len(xs), len(ys))
    cells = []
    for combo in itertools.product(*(values for _, values in axes)):
        base_point = dict(zip((name for name, _ in axes), combo))
        base = wl.cell_params(cfg, base_point)  # once per combination, not per grid point
        if not grid:
            seed = int(base_point.get("seed", (cfg.get("seeds") or [0])[0]))
            names = list(base_point)
            cells.append(
                Cell(cell_id(base_point, names), len(cells), module_path, base_point, seed, base)
            )
            continue
        _check_int_sweep(cfg, "x", base, xs)
        _check_int_sweep(cfg, "y", base, ys)
        _check_sweep_domain(cfg, wl, base_point, "x", xs)
        _check_sweep_domain(cfg, wl, base_point, "y", ys)
        for i, j in points:
            cells.append(grid_cell(cfg, module_path, base_point, base, i, j, xs, ys, len(cells)))
    seen = set()
    for cell in cells:
        if cell.id in seen:
            raise ConfigError(
                "WORKLOAD", f"two cells share the id {cell.id!r}", "axis values must differ"
            )
        seen.add(cell.id)
    return cells


def grid_cell(cfg, module_path, base_point, base, i, j, xs, ys, index):
    """The cell at point (i, j) of the X x Y grid of one axis combination (`base_point`,
    whose parameters are `base`): the one place grid cells are made, for plan() and for
    the later levels of a refined grid. Its run seed is the combination's seed, shared by
    every point so that a map is a function of the swept hyperparameters alone, or
    seed + i*1000 + j per point (SWEEP_SEEDS_PER_POINT)."""
    point = {**base_point, "i": i, "j": j, "x": xs[i], "y": ys[j]}
    params = dict(base)
    _apply_sweep(cfg, params, "x", xs[i])
    _apply_sweep(cfg, params, "y", ys[j])
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
    base_point = combination(cell.point)
    wl = load_workload(cell.workload)
    return base_point, wl.cell_params(cfg, base_point)


def _apply_sweep(cfg, params, axis, value):
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


def _check_int_sweep(cfg, axis, params, values):
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


def _check_sweep_domain(cfg, wl, base_point, axis, values):
    """Swept values must lie in the swept knob's own domain, as if each had been set in
    Kconfig: the workload's sweep_symbol(cfg, name, point) names the symbol behind a
    hyperparameter (default: the symbol of the same name, if there is one)."""
    from kmatrix.config import symbol_domain

    name = cfg.get(f"sweep_{axis}_param")
    chooser = getattr(wl, "sweep_symbol", None)
    symbol = (chooser(cfg, name, base_point) if chooser else None) or str(name).upper()
    check, domain = symbol_domain(symbol)
    bad = [v for v in (values[0], values[-1]) if check and not check(v)]
    if bad:
        sym = f"SWEEP_{axis.upper()}"
        raise ConfigError(
            f"{sym}_MIN",
            f"{name} is set by {symbol}, which must be {domain}; the sweep gives {bad[0]:g}",
            f"bounds {domain} in {sym}_MIN..{sym}_MAX",
        )


def write_plan(cells, path):
    """plan.json: every cell fully resolved. Parameters shared by all cells are written
    once ("params"); each cell lists only the ones it sets differently ("params_diff"),
    so a 512 x 512 grid takes tens of MB, not a GB."""
    from kmatrix.files import write_json_atomic

    common = dict(cells[0].params) if cells else {}
    for cell in cells[1:]:
        for key in [k for k, v in common.items() if cell.params.get(k, _MISSING) != v]:
            del common[key]
    entries = []
    for cell in cells:
        entry = cell.to_dict()
        entry["params_diff"] = {k: v for k, v in entry.pop("params").items() if k not in common}
        entries.append(entry)
    write_json_atomic(path, {"params": common, "cells": entries}, compact=True)


_MISSING = object()


def read_plan(path):
    data = json.loads(Path(path).read_text())
    cells = []
    for entry in data["cells"]:
        entry = dict(entry)
        entry["params"] = {**data["params"], **entry.pop("params_diff")}
        cells.append(Cell.from_dict(entry))
    return cells
