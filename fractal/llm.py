"""The LLM trainability-grid workload: every grid point is one GPT-2 training run.

Planning, training and the dry run are the gpt2 workload's (any numeric knob of its
cell_params can be a grid axis); this module labels each run stable / trainable and
draws the grid: the 3-panel figure, the stable/unstable map, the boundary, and the
box-counting dimension of the boundary between trainable and not.
"""

import json
from pathlib import Path

import numpy as np

from fractal import grid_figures
from fractal.dimension import box_counts, box_sizes, local_slopes
from fractal.labels import label_run
from gpt2 import workload as gpt2
from kmatrix.errors import ConfigError, Diverged
from kmatrix.results import as_float

GRID_AXES = ("i", "j", "x", "y")

axes = gpt2.axes
dry_run = gpt2.dry_run
probe = gpt2.probe
preflight = gpt2.preflight


def validate(cfg):
    gpt2.validate(cfg)
    if not cfg.get("sweep"):
        raise ConfigError(
            "SWEEP",
            "an LLM trainability grid needs the 2-D sweep",
            "set CONFIG_SWEEP=y and the X/Y axes (e.g. matrix_lr x unembedding_lr)",
        )


def cell_params(cfg, point):
    params = gpt2.cell_params(cfg, point)
    params["trainable_window"] = cfg.trainable_window
    params["trainable_threshold"] = cfg.trainable_threshold
    return params


def _labels(cell, losses, val_losses):
    p = cell.params
    return label_run(
        losses,
        window=p["trainable_window"],
        threshold=p["trainable_threshold"],
        val_losses=val_losses,
    )


def run(cell, ctx):
    """One GPT-2 run, labelled. A non-finite loss is a result: unstable, not trainable."""
    try:
        out = gpt2.run(cell, ctx)
    except Diverged as e:
        e.metrics.update(_labels(cell, e.losses, e.val_losses))
        raise
    labels = _labels(cell, out["losses"], out.get("val_losses"))
    out["metrics"].update(labels)
    ctx.log(f"labels: {json.dumps(labels)}")
    return out


# ---------------------------------------------------------------------------- summary


def group_name(point):
    """The grid a cell belongs to: its axis values other than the grid position."""
    parts = [str(v) for k, v in point.items() if k not in GRID_AXES]
    return "-".join(parts).replace("/", "_") or "grid"


def grid_arrays(cells, results):
    """Per group: xs, ys and [ny, nx] arrays of loss, trainable, stable (NaN = no result).

    A cell that failed (an exception, a dead worker) is drawn as missing: `make` runs it
    again, and an infrastructure failure says nothing about trainability.
    """
    grids = {}
    for cell in cells:
        g = grids.setdefault(group_name(cell.point), {"cells": []})
        g["cells"].append(cell)
    for name, g in grids.items():
        xs = sorted({c.point["i"]: c.point["x"] for c in g["cells"]}.items())
        ys = sorted({c.point["j"]: c.point["y"] for c in g["cells"]}.items())
        shape = (len(ys), len(xs))
        loss, trainable, stable = (np.full(shape, np.nan) for _ in range(3))
        for cell in g["cells"]:
            result = results.get(cell.id)
            if not result or result["status"] == "failed":
                continue
            m = result.get("metrics") or {}
            at = (cell.point["j"], cell.point["i"])
            stable[at] = float(bool(m.get("stable")))
            trainable[at] = float(bool(m.get("trainable")))
            loss[at] = as_float(m.get("final_train_loss"))
        g.update(
            xs=np.array([v for _, v in xs]),
            ys=np.array([v for _, v in ys]),
            loss=loss,
            trainable=trainable,
            stable=stable,
        )
    return grids


def boundary(trainable):
    """Edge pixels of the trainable map: 2x2 neighbourhoods with both labels, all present."""
    t = np.asarray(trainable, dtype=np.float64)
    present = np.isfinite(t)
    pos = t == 1
    a, b, c, d = pos[:-1, :-1], pos[:-1, 1:], pos[1:, :-1], pos[1:, 1:]
    full = present[:-1, :-1] & present[:-1, 1:] & present[1:, :-1] & present[1:, 1:]
    return full & (a | b | c | d) & ~(a & b & c & d)


def _window_missing(missing):
    """[ny-1, nx-1]: 2x2 neighbourhoods of grid points that lack a result."""
    m = np.asarray(missing, dtype=bool)
    return m[:-1, :-1] | m[:-1, 1:] | m[1:, :-1] | m[1:, 1:]


def boundary_dimension(trainable):
    """Box-counting dimension (median of local slopes) of the boundary; None if too small."""
    edges = boundary(trainable)
    if edges.sum() < 2 or min(edges.shape) < 2:
        return None, int(edges.sum())
    sizes = box_sizes(edges.shape)
    slopes = local_slopes(sizes, box_counts(edges, sizes))
    slopes = np.asarray(slopes, dtype=np.float64)
    slopes = slopes[np.isfinite(slopes)]
    return (float(np.median(slopes)) if slopes.size else None), int(edges.sum())


def summarize(summary_dir, cells, results, cfg):
    summary_dir = Path(summary_dir)
    x_name, y_name = cfg.sweep_x_param, cfg.sweep_y_param
    profile = cfg.get("profile")
    out = {}
    for name, g in grid_arrays(cells, results).items():
        title = f"{cfg.name} {name} [{profile}]"
        missing = ~np.isfinite(g["trainable"])
        grid_figures.trainability_figure(
            g["xs"],
            g["ys"],
            g["loss"],
            g["trainable"],
            summary_dir / f"trainability-{name}.png",
            x_name,
            y_name,
            title,
        )
        grid_figures.stability_figure(
            g["xs"],
            g["ys"],
            g["stable"],
            g["loss"],
            summary_dir / f"stability-{name}.png",
            x_name,
            y_name,
            title,
        )
        edges = boundary(g["trainable"])
        grid_figures.boundary_figure(
            g["xs"],
            g["ys"],
            edges,
            _window_missing(missing),
            summary_dir / f"boundary-{name}.png",
            x_name,
            y_name,
            title,
        )
        np.savez(
            summary_dir / f"grid-{name}.npz",
            xs=g["xs"],
            ys=g["ys"],
            loss=g["loss"],
            trainable=g["trainable"],
            stable=g["stable"],
        )
        dimension, pixels = boundary_dimension(g["trainable"])
        t = g["trainable"]
        present = np.isfinite(t)
        out[name] = {
            "fractal_dimension": dimension,
            "boundary_pixels": pixels,
            "trainable_ratio": float((t == 1).sum() / present.sum()) if present.any() else None,
            "stable_ratio": (
                float((g["stable"] == 1).sum() / present.sum()) if present.any() else None
            ),
            "cells": int(t.size),
            "missing": int((~present).sum()),
            "x": {"param": x_name, "min": float(g["xs"].min()), "max": float(g["xs"].max())},
            "y": {"param": y_name, "min": float(g["ys"].min()), "max": float(g["ys"].max())},
        }
        parent_name = cfg.get("fractal_llm_parent")
        if parent_name:
            parent_file = (
                Path(cfg.get("exec_results_root") or "results")
                / parent_name
                / "summary"
                / f"grid-{name}.npz"
            )
            if parent_file.exists():
                parent = dict(np.load(parent_file))
                grid_figures.zoom_figure(
                    g,
                    parent,
                    summary_dir / f"zoom-{name}.png",
                    x_name,
                    y_name,
                    f"{title} in {parent_name}",
                )
                out[name]["parent"] = parent_name
    return out
