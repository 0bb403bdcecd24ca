"""Planning: the typed configuration -> the list of cells, each fully resolved, and
plan.json (the grid is kmatrix/grid.py, the workload registry kmatrix/workloads.py)."""

import itertools
import json
from pathlib import Path

from kmatrix import refine
from kmatrix.cell import Cell, cell_id
from kmatrix.errors import ConfigError
from kmatrix.grid import check_int_sweep, grid_cell, sweep_values
from kmatrix.workloads import load_workload, workload_module


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
        check_int_sweep(cfg, "x", base, xs)
        check_int_sweep(cfg, "y", base, ys)
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
