"""Planning: the typed configuration -> the list of cells, each fully resolved."""

import importlib
import itertools
import json
import math

import numpy as np

from kmatrix.cell import Cell, cell_id
from kmatrix.errors import ConfigError

# Workload name (the WORKLOAD choice) -> module implementing docs/workload-interface.md.
WORKLOADS = {"gpt2": "gpt2.workload", "fractal": "fractal.workload"}
# The Kconfig symbol(s) behind a matrix axis, for error messages.
AXIS_SYMBOLS = {"seed": "SEEDS", "optimizer": "OPTIMIZER_*", "precision": "PRECISION_*"}


def workload_module(cfg):
    """The workload's module path: a WORKLOADS name, or a dotted path (tests)."""
    name = cfg.workload
    return WORKLOADS.get(name, name)


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
        values = np.linspace(low, high, points)
    return [float(v) for v in values]


def plan(cfg, module_path=None):
    """Expand the configuration into cells: workload axes x (X x Y grid when swept)."""
    module_path = module_path or workload_module(cfg)
    wl = load_workload(module_path)
    wl.validate(cfg)
    axes = list(wl.axes(cfg))
    for name, values in axes:
        if not values:
            symbol = AXIS_SYMBOLS.get(name, name.upper())
            raise ConfigError(symbol, f"the {name} axis is empty", "select at least one value")
    vectorised = getattr(wl, "VECTORISED_AXES", ())
    vectorised = vectorised(cfg) if callable(vectorised) else vectorised
    grid = cfg.get("sweep") and "x" not in vectorised
    xs = sweep_values(cfg, "x") if grid else [None]
    ys = sweep_values(cfg, "y") if grid else [None]
    names = [name for name, _ in axes] + (["i", "j"] if grid else [])
    counts = {"i": len(xs), "j": len(ys)}
    cells = []
    for combo in itertools.product(*(values for _, values in axes)):
        for (i, x), (j, y) in itertools.product(enumerate(xs), enumerate(ys)):
            point = dict(zip((name for name, _ in axes), combo))
            if grid:
                point.update(i=i, j=j, x=x, y=y)
            seed = int(point.get("seed", (cfg.get("seeds") or [0])[0]))
            params = wl.cell_params(cfg, point)
            if grid:
                _apply_sweep(cfg, params, "x", x)
                _apply_sweep(cfg, params, "y", y)
            cells.append(
                Cell(
                    id=cell_id(point, names, counts),
                    index=len(cells),
                    workload=module_path,
                    point=point,
                    run_seed=seed + (i * 1000 + j if grid else 0),
                    params=params,
                )
            )
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError("WORKLOAD", f"two cells share the id {dup!r}", "axis values must differ")
    return cells


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


def write_plan(cells, path):
    from kmatrix.results import write_json_atomic

    write_json_atomic(path, [c.to_dict() for c in cells])


def read_plan(path):
    return [Cell.from_dict(d) for d in json.loads(path.read_text())]
