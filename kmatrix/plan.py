"""Planning: the typed configuration -> the list of cells, each fully resolved, and
plan.json (the grid is kmatrix/grid.py, the workload registry kmatrix/workloads.py)."""

import itertools
import json
from pathlib import Path

from kmatrix import refine, variants
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
    variant_cfgs = variants.configs(cfg)  # [(None, cfg)] without a variant axis
    if cfg.get("variants"):
        variants.check_configs(cfg, wl, variant_cfgs)
    names = [name for name, _ in axes]
    combos = [dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in axes))]
    cells, per_variant = [], {}
    for variant, vcfg in variant_cfgs:
        for combo in combos:
            base_point = combo if variant is None else {"variant": variant, **combo}
            base = wl.cell_params(vcfg, base_point)  # once per combination, not per grid point
            if variant is not None:
                per_variant.setdefault(variant, []).append(base)
            if not grid:
                seed = int(base_point.get("seed", (cfg.get("seeds") or [0])[0]))
                ids = list(base_point)
                cells.append(
                    Cell(cell_id(base_point, ids), len(cells), module_path, base_point, seed, base)
                )
                continue
            check_int_sweep(cfg, "x", base, xs)
            check_int_sweep(cfg, "y", base, ys)
            _check_sweep_domain(cfg, wl, base_point, "x", xs)
            _check_sweep_domain(cfg, wl, base_point, "y", ys)
            for i, j in points:
                cells.append(
                    grid_cell(cfg, module_path, base_point, base, i, j, xs, ys, len(cells))
                )
    if per_variant:
        variants.check_cells(cfg, wl, combos, per_variant)
    seen = set()
    for cell in cells:
        if cell.id in seen:
            raise ConfigError(
                "WORKLOAD", f"two cells share the id {cell.id!r}", "axis values must differ"
            )
        seen.add(cell.id)
    return cells


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
