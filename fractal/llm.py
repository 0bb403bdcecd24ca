"""LLM trainability grids (DESIGN.md section 6): every grid point is one GPT-2 run.

Planning, training and the dry run are the gpt2 workload's (any numeric knob of its
cell_params can be a grid axis); this module labels each run stable / trainable and
draws the grid: the 3-panel figure, the stable/unstable map, the boundary, and the
box-counting dimension of the boundary between trainable and not.
"""

import json
from pathlib import Path

import numpy as np

from fractal import figures
from fractal.dimension import box_counts, box_sizes, local_slopes
from fractal.labels import label_run
from gpt2 import workload as gpt2
from kmatrix.errors import ConfigError, Diverged

GRID_AXES = ("i", "j", "x", "y")

axes = gpt2.axes
dry_run = gpt2.dry_run
probe = gpt2.probe


def validate(cfg):
    gpt2.validate(cfg)
    if not cfg.get("sweep"):
        raise ConfigError(
            "SWEEP",
            "an LLM trainability grid needs the 2-D sweep",
            "set CONFIG_SWEEP=y and the X/Y axes (e.g. matrix_lr x unembedding_lr)",
        )


def preflight(cfg, cells):
    if hasattr(gpt2, "preflight"):
        gpt2.preflight(cfg, cells)


def cell_params(cfg, point):
    params = gpt2.cell_params(cfg, point)
    params["trainable_window"] = cfg.trainable_window
    params["trainable_threshold"] = cfg.trainable_threshold
    return params


def _labels(cell, losses):
    p = cell.params
    return label_run(losses, window=p["trainable_window"], threshold=p["trainable_threshold"])


def run(cell, ctx):
    """One GPT-2 run, labelled. A non-finite loss is a result: unstable, not trainable."""
    try:
        out = gpt2.run(cell, ctx)
    except Diverged as e:
        losses = list(getattr(e, "losses", None) or [])
        raise Diverged(str(e), {**e.metrics, **_labels(cell, losses)}, losses=losses) from None
    labels = _labels(cell, out["losses"])
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
            value = m.get("final_train_loss")
            loss[at] = float(value) if isinstance(value, (int, float)) else np.nan
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


def _boundary_figure(g, path, x_name, y_name, title):
    import matplotlib.pyplot as plt

    xe, ye = figures._edges(g["xs"]), figures._edges(g["ys"])
    edges = boundary(g["trainable"]).astype(float)
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    # Edge pixel (k, l) sits between grid points: draw it on the inner cell edges.
    ax.pcolormesh(xe[1:-1], ye[1:-1], np.ma.masked_equal(edges, 0), cmap="Greys", vmin=0, vmax=1)
    figures._grid_axes(ax, xe, ye, x_name, y_name, f"boundary: {int(edges.sum())} pixels")
    figures.save_figure(fig, path, title)


def _zoom_figure(g, parent, path, x_name, y_name, title):
    """The zoomed grid drawn inside its parent grid's axes, its window outlined."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(6, 5))
    for grid, alpha in ((parent, 0.55), (g, 1.0)):
        xe, ye = figures._edges(grid["xs"]), figures._edges(grid["ys"])
        v = figures.trainability_values(grid["loss"], grid["trainable"])
        ax.pcolormesh(
            xe,
            ye,
            np.ma.masked_invalid(v),
            cmap=figures.TRAINABILITY_CMAP,
            vmin=-1,
            vmax=1,
            alpha=alpha,
        )
    pxe, pye = figures._edges(parent["xs"]), figures._edges(parent["ys"])
    xe, ye = figures._edges(g["xs"]), figures._edges(g["ys"])
    ax.add_patch(Rectangle((xe[0], ye[0]), xe[-1] - xe[0], ye[-1] - ye[0], fill=False, lw=1.5))
    ax.set_xlim(pxe[0], pxe[-1])
    ax.set_ylim(pye[0], pye[-1])
    ax.set_xlabel(f"{x_name} (log10)")
    ax.set_ylabel(f"{y_name} (log10)")
    ax.set_title(title, fontsize=10)
    figures.save_figure(fig, path)


def summarize(summary_dir, cells, results, cfg):
    summary_dir = Path(summary_dir)
    x_name, y_name = cfg.sweep_x_param, cfg.sweep_y_param
    profile = cfg.get("profile")
    out = {}
    for name, g in grid_arrays(cells, results).items():
        title = f"{cfg.name} {name} [{profile}]"
        figures.trainability_figure(
            g["xs"],
            g["ys"],
            g["loss"],
            g["trainable"],
            summary_dir / f"trainability-{name}.png",
            x_name,
            y_name,
            title,
        )
        figures.stability_figure(
            g["xs"],
            g["ys"],
            g["stable"],
            summary_dir / f"stability-{name}.png",
            x_name,
            y_name,
            title,
        )
        _boundary_figure(g, summary_dir / f"boundary-{name}.png", x_name, y_name, title)
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
                _zoom_figure(
                    g,
                    parent,
                    summary_dir / f"zoom-{name}.png",
                    x_name,
                    y_name,
                    f"{title} in {parent_name}",
                )
                out[name]["parent"] = parent_name
    return out
