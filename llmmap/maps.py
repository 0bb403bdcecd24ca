"""The LLM trainability map behind llmmap/workload.py: every grid point is one GPT-2 run.

Planning, training and the dry run are the gpt2 workload's (any numeric knob of its
cell_params can be a grid axis); this module labels each run stable / trainable and
draws the grid: the 3-panel figure, the stable/unstable map, the boundary, and the
box-counting dimension of the boundary between trainable and not.
"""

import json
from pathlib import Path

import numpy as np

from fractal import dimension
from llmmap.labels import label_run
from gpt2 import workload as gpt2
from kmatrix.errors import ConfigError, Diverged
from kmatrix.grid import combination, sweep_values
from kmatrix.results import results_dir
from kmatrix.files import as_float, write_atomic
from llmmap import probes

axes = gpt2.axes
dry_run = gpt2.dry_run
probe = gpt2.probe
preflight = gpt2.preflight
sweep_symbol = gpt2.sweep_symbol


def validate(cfg):
    gpt2.validate(cfg)
    if not cfg.get("sweep"):
        raise ConfigError(
            "SWEEP",
            "an LLM trainability grid needs the 2-D sweep",
            "set CONFIG_SWEEP=y and the X/Y axes (e.g. matrix_lr x unembedding_lr)",
        )
    probes.validate(cfg)


def cell_params(cfg, point):
    params = gpt2.cell_params(cfg, point)
    params["trainable_window"] = cfg.llmmap_trainable_window
    params["trainable_threshold"] = cfg.llmmap_trainable_threshold
    return params


def _labels(cell, losses, val_losses, error=None):
    p = cell.params
    return label_run(
        losses,
        error=error,
        window=p["trainable_window"],
        threshold=p["trainable_threshold"],
        val_losses=val_losses,
    )


def _labelled(cell, ctx, out):
    """A run's outcome (result or Diverged) with its labels in its metrics."""
    if isinstance(out, Diverged):
        # A run stopped for divergence is unstable even when every loss it recorded is
        # finite (GPT2_CHECK_NUMERICS stops it at a non-finite gradient, before the loss).
        out.metrics.update(_labels(cell, out.losses, out.val_losses, error=str(out)))
        return out
    labels = _labels(cell, out["losses"], out.get("val_losses"))
    out["metrics"].update(labels)
    ctx.log(f"labels: {json.dumps(labels)}")
    return out


def run(cell, ctx):
    """One GPT-2 run, labelled. A non-finite loss is a result: unstable, not trainable."""
    try:
        out = gpt2.run(cell, ctx)
    except Diverged as e:
        _labelled(cell, ctx, e)
        raise
    return _labelled(cell, ctx, out)


batch_key = gpt2.batch_key
batch_limit = gpt2.batch_limit


def next_stage(cfg, cells, results):
    """Transects or zoom frames after the grid (LLMMAP_PROBE), [] without them."""
    return probes.next_stage(cfg, cells, results, label)


def run_batch(cells, ctxs):
    """Grid points trained together (gpt2.run_batch), each labelled."""
    return [_labelled(c, x, o) for c, x, o in zip(cells, ctxs, gpt2.run_batch(cells, ctxs))]


# ---------------------------------------------------------------------------- summary


def group_name(point):
    """The grid a cell belongs to: its axis values other than the grid position."""
    parts = [str(v) for v in combination(point).values()]
    return "-".join(parts).replace("/", "_") or "grid"


def grid_arrays(cells, results, cfg):
    """Per group: xs, ys and [ny, nx] arrays of loss, trainable, stable (NaN = no result)
    and inferred (True where a refined grid inferred the labels: no loss is known there).

    A cell that failed (an exception, a dead worker) is drawn as missing: `make` runs it
    again, and an infrastructure failure says nothing about trainability.
    """
    xs, ys = np.array(sweep_values(cfg, "x")), np.array(sweep_values(cfg, "y"))
    shape = (len(ys), len(xs))
    grids = {}
    for cell in cells:
        g = grids.get(group_name(cell.point))
        if g is None:
            g = grids[group_name(cell.point)] = dict(xs=xs, ys=ys)
            keys = ("loss", "trainable", "stable", "ratio")
            g.update({k: np.full(shape, np.nan) for k in keys})
            g["optimizer"] = cell.params.get("optimizer")
            g["inferred"] = np.zeros(shape, dtype=bool)
        result = results.get(cell.id)
        if not result or result["status"] == "failed":
            continue
        m = result.get("metrics") or {}
        at = (cell.point["j"], cell.point["i"])
        g["stable"][at] = float(bool(m.get("stable")))
        g["trainable"][at] = float(bool(m.get("trainable")))
        g["loss"][at] = as_float(m.get("final_train_loss"))
        g["ratio"][at] = as_float(m.get("ratio"))
        g["inferred"][at] = result["status"] == "inferred"
    return grids


def label(result):
    """What a refined grid refines on (kmatrix/refine.py): both labels, so the map is
    refined where either changes."""
    m = result.get("metrics") or {}
    return {"stable": bool(m.get("stable")), "trainable": bool(m.get("trainable"))}


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


# Points per side from which the paper's estimator reads lines and circles as 1.0 to within
# 0.01 (bench/results/dimension_estimators.json: at 129 it reads a line 0.83 and at 513 a
# circle 1.14, where ours reads 1.00 and 0.98).
PAPER_ESTIMATOR_FROM = 1025


def boundary_dimension(trainable):
    """Box-counting dimension of the boundary between trainable and not: the median of
    the local slopes, with the estimator that suits the map's resolution. From
    PAPER_ESTIMATOR_FROM points per side, the paper's (porespy's box sizes: 10
    log-spaced sizes from 10 px to the side, boxes that are all boundary not counted);
    below, ours (powers of two from 1 px to a quarter of the side), since a 16 x 16 grid
    has no room for 10 px boxes.
    Returns (dimension or None, boundary pixels, {"estimator", "box_sizes"})."""
    edges = boundary(trainable)
    n = int(edges.sum())
    method = "paper" if min(np.shape(trainable)) >= PAPER_ESTIMATOR_FROM else "pow2"
    bc = dimension.edge_box_count(edges, method)
    how = {"estimator": method, "box_sizes": bc["sizes"]}
    if n < 2 or min(edges.shape) < 2 or len(bc["sizes"]) < dimension.MIN_BOX_SIZES:
        return None, n, how  # one slope (two box sizes) or none: no dimension, say so
    return float(np.median(bc["slopes"])), n, how


def trainability_figure(g, cfg, title, path):
    """The 3-panel figure of one grid's arrays g (grid_arrays'; a saved grid-*.npz's, whose
    ratio may be missing: the middle panel then says it was not recorded)."""
    from llmmap import grid_figures

    inferred = g["inferred"] if np.any(g["inferred"]) else None
    note = f"{int(np.sum(g['inferred']))} of {np.size(g['inferred'])} labels inferred (pale)"
    grid_figures.trainability_figure(
        g["xs"],
        g["ys"],
        g["loss"],
        g["trainable"],
        path,
        grid_figures.axis_name(cfg.sweep_x_param, g.get("optimizer")),
        grid_figures.axis_name(cfg.sweep_y_param, g.get("optimizer")),
        title,
        inferred=inferred,
        note=note if inferred is not None else None,
        stable=g["stable"],
        ratio=g.get("ratio"),
        threshold=cfg.llmmap_trainable_threshold,
        window=cfg.llmmap_trainable_window,
    )


def map_title(cfg, name, params):
    """The title of a grid's figures: the matrix, the grid, the profile, the seeds, the
    training budget (params: any cell's) and the trainable rule."""
    seeds = "shared seeds" if (cfg.get("sweep_seeds") or "shared") == "shared" else "seed per point"
    window, threshold = cfg.llmmap_trainable_window, cfg.llmmap_trainable_threshold
    rule = f"trainable: last {window} train losses < {threshold:g} x first"
    return (
        f"{cfg.name} {name} [{cfg.get('profile')}, {seeds}]\n"
        f"budget: {budget_text(params)} per run; {rule}"
    )


def budget_text(params):
    """'30 steps of 2 x 64 tokens' (the training budget every grid point had)."""
    p = params or {}
    batch, block = p.get("batch_size"), p.get("block_size")
    per_step = (
        f" of {batch * (p.get('grad_accum') or 1)} x {block} tokens" if batch and block else ""
    )
    parts = []
    if p.get("max_steps"):
        parts.append(f"{p['max_steps']:,} steps{per_step}")
    if p.get("max_tokens"):
        parts.append(f"{p['max_tokens']:,} tokens")
    if p.get("max_seconds"):
        parts.append(f"{p['max_seconds']:g} s")
    return " or ".join(parts) or "budget unknown"


def summarize(summary_dir, cells, results, cfg):
    from llmmap import grid_figures  # matplotlib: the summary's only, never planning's

    summary_dir = Path(summary_dir)
    cells, probe = probes.split(cells)
    out = {}
    if probe or probes.kind(cfg) != "none":
        out["probe"] = probes.summarize(summary_dir, cells + probe, results, cfg, label)
    for name, g in grid_arrays(cells, results, cfg).items():
        x_name = grid_figures.axis_name(cfg.sweep_x_param, g.get("optimizer"))
        y_name = grid_figures.axis_name(cfg.sweep_y_param, g.get("optimizer"))
        title = map_title(cfg, name, cells[0].params if cells else None)
        inferred = g["inferred"] if g["inferred"].any() else None
        paths = {
            k: summary_dir / f"{k}-{name}.png" for k in ("trainability", "stability", "boundary")
        }
        trainability_figure(g, cfg, title, paths["trainability"])
        grid_figures.stability_figure(
            g["xs"], g["ys"], g["stable"], g["loss"], paths["stability"], x_name, y_name, title,
            inferred=inferred,
        )  # fmt: skip
        missing = _window_missing(~np.isfinite(g["trainable"]))
        edges = boundary(g["trainable"])
        dim, pixels, how = boundary_dimension(g["trainable"])
        about = grid_figures.dimension_text(dim, how["box_sizes"])
        grid_figures.boundary_figure(
            g["xs"], g["ys"], edges, missing, paths["boundary"], x_name, y_name, title,
            trainable=g["trainable"], dimension=about,
        )  # fmt: skip
        keys = ("xs", "ys", "loss", "trainable", "stable", "inferred", "ratio")
        arrays = {k: g[k] for k in keys}
        write_atomic(summary_dir / f"grid-{name}.npz", lambda f: np.savez(f, **arrays))
        t = g["trainable"]
        present = np.isfinite(t)
        out[name] = {
            "fractal_dimension": dim,
            "dimension_note": about,
            "dimension_estimator": how["estimator"],
            "box_sizes": how["box_sizes"],
            "boundary_pixels": pixels,
            "trainable_ratio": float((t == 1).sum() / present.sum()) if present.any() else None,
            "stable_ratio": (
                float((g["stable"] == 1).sum() / present.sum()) if present.any() else None
            ),
            "cells": int(t.size),
            "missing": int((~present).sum()),
            "inferred": int(g["inferred"].sum()),
            "seeds": cfg.get("sweep_seeds") or "shared",
            "x": {
                "param": cfg.sweep_x_param,
                "min": float(g["xs"].min()),
                "max": float(g["xs"].max()),
            },
            "y": {
                "param": cfg.sweep_y_param,
                "min": float(g["ys"].min()),
                "max": float(g["ys"].max()),
            },
        }
        parent_name = cfg.get("llmmap_zooms_into")
        if parent_name:
            parent_dir = results_dir(cfg.replace(name=parent_name)) / "summary"
            if (parent_dir / f"grid-{name}.npz").is_file():
                parent = dict(np.load(parent_dir / f"grid-{name}.npz"))
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
