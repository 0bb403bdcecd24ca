"""Figures of LLM trainability grids: the 3-panel trainability figure, the stability map,
the boundary and a zoomed grid inside its parent.

Every map is [ny, nx] with row = y index, over log-spaced hyperparameter values. A cell
with no result (not run yet, or failed) is NaN and drawn hatched grey, never as a label;
cells inferred from coarser levels of a refined map (`inferred`, a boolean map) are
paled, so a reader sees which labels were computed; an inferred point has no loss. Each title carries the run profile.
"""

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import (  # noqa: E402
    LinearSegmentedColormap,
    ListedColormap,
    LogNorm,
    Normalize,
)
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from fractal.figures import save_figure

NOT_TRAINABLE = "#8B0000"
TRAINABLE_LIGHT = "#ADD8E6"  # highest loss among trainable runs
TRAINABLE_DARK = "#00008B"  # lowest loss
MISSING = "#d9d9d9"
# red-white-blue scale over [-1, 1]: -1 not trainable, 0.3..1.0 trainable (light..dark)
TRAINABILITY_CMAP = LinearSegmentedColormap.from_list(
    "trainability",
    [(0.0, NOT_TRAINABLE), (0.5, "#ffffff"), (0.65, TRAINABLE_LIGHT), (1.0, TRAINABLE_DARK)],
)
BINARY_CMAP = ListedColormap([NOT_TRAINABLE, TRAINABLE_DARK])
INFERRED_ALPHA = 0.5  # how much an inferred cell is paled


def cell_edges(values):
    """Cell edges in log10 for grid points `values` (midpoints, half a step at the ends)."""
    c = np.log10(np.asarray(values, dtype=np.float64))
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _cells(ax, xe, ye, mask, **style):
    """Rectangles over the cells where `mask` is True (hatching has no pcolormesh form)."""
    iy, ix = np.nonzero(mask)
    boxes = [
        Rectangle((xe[i], ye[j]), xe[i + 1] - xe[i], ye[j + 1] - ye[j]) for j, i in zip(iy, ix)
    ]
    if boxes:
        ax.add_collection(PatchCollection(boxes, **style))


def _grid_axes(ax, xe, ye, x_name, y_name, title, missing=None, inferred=None):
    """Axes, title, and the marks: missing cells hatched grey, inferred cells paled (a
    translucent white veil: computed cells stay crisp, at any resolution)."""
    if missing is not None:
        _cells(ax, xe, ye, missing, facecolor=MISSING, edgecolor="#9a9a9a", hatch="//", lw=0)
    if inferred is not None and np.any(inferred):
        veil = np.ma.masked_where(~np.asarray(inferred, dtype=bool), np.ones(np.shape(inferred)))
        ax.pcolormesh(xe, ye, veil, cmap=ListedColormap(["#ffffff"]), alpha=INFERRED_ALPHA)
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.set_xlabel(f"{x_name} (log10)")
    ax.set_ylabel(f"{y_name} (log10)")
    ax.set_title(title, fontsize=9)


def trainability_values(loss, trainable):
    """Panel-1 values in [-1, 1]: -1 not trainable, trainable runs 0.3 (highest loss) ..
    1.0 (lowest loss), NaN where the cell has no result (trainable is NaN). A trainable
    cell without a loss (inferred by a refined grid) gets the middle shade, 0.65."""
    loss = np.asarray(loss, dtype=np.float64)
    t = np.asarray(trainable, dtype=np.float64)
    out = np.full(t.shape, np.nan)
    out[t == 0] = -1.0
    ok = (t == 1) & np.isfinite(loss)
    if ok.any():
        lo, hi = loss[ok].min(), loss[ok].max()
        frac = (hi - loss[ok]) / (hi - lo) if hi > lo else np.ones(ok.sum())
        out[ok] = 0.3 + 0.7 * frac
    out[(t == 1) & ~np.isfinite(loss)] = 0.65
    return out


def _loss_colorbar(fig, ax, loss, trainable):
    """Panel 1's colour bar: the blue shades of trainable runs, labelled in loss."""
    ok = (np.asarray(trainable) == 1) & np.isfinite(loss)
    if not ok.any():
        return
    lo, hi = float(loss[ok].min()), float(loss[ok].max())
    if hi <= lo:
        hi = lo + 1e-12
    blues = LinearSegmentedColormap.from_list(
        "trainable", [TRAINABILITY_CMAP(0.65), TRAINABILITY_CMAP(1.0)]
    )  # 0.3 (light, highest loss) .. 1.0 (dark, lowest loss)
    bar = fig.colorbar(ScalarMappable(Normalize(lo, hi), blues.reversed()), ax=ax)
    bar.set_label("final loss of trainable runs (red: not trainable)", fontsize=8)


def trainability_figure(
    xs, ys, loss, trainable, path, x_name, y_name, title=None, inferred=None, note=None
):
    """The 3-panel figure of an LLM grid.

    xs [nx], ys [ny]: the swept hyperparameter values (log-spaced); loss, trainable
    [ny, nx] with row = y index. trainable is 1 / 0, or NaN where the cell has no result
    yet (running, failed): such cells are drawn hatched grey in every panel. `inferred`
    marks labels taken from a coarser level of a refined map (paled).
    """
    xe, ye = cell_edges(xs), cell_edges(ys)
    t = np.asarray(trainable, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    missing = np.isnan(t)
    marks = dict(missing=missing, inferred=inferred)
    fig, axs = plt.subplots(1, 3, figsize=(16, 4.6))

    ax = axs[0]
    v = trainability_values(loss, t)
    ax.pcolormesh(xe, ye, np.ma.masked_invalid(v), cmap=TRAINABILITY_CMAP, vmin=-1, vmax=1)
    _loss_colorbar(fig, ax, loss, t)
    _grid_axes(ax, xe, ye, x_name, y_name, "trainability boundary (red: not trainable)", **marks)

    ax = axs[1]
    # white: not trainable; grey: trainable but inferred, so no loss is known
    base = np.where(missing, np.nan, np.where((t == 1) & ~np.isfinite(loss), 1.0, 0.0))
    ax.pcolormesh(xe, ye, np.ma.masked_invalid(base), cmap=ListedColormap(["#ffffff", "#c8c8c8"]))
    trained = np.where(t == 1, loss, np.nan)
    if np.isfinite(trained).any():
        m = ax.pcolormesh(xe, ye, np.ma.masked_invalid(trained), cmap="viridis_r")
        label = "final loss (white: not trainable" + (
            "; grey: inferred)" if inferred is not None else ")"
        )
        fig.colorbar(m, ax=ax).set_label(label, fontsize=8)
    _grid_axes(ax, xe, ye, x_name, y_name, "final loss of trainable runs", **marks)

    ax = axs[2]
    ax.pcolormesh(xe, ye, np.ma.masked_invalid(t), cmap=BINARY_CMAP, vmin=0, vmax=1)
    n_ok, n_cells = int((t == 1).sum()), int(np.isfinite(t).sum())
    _grid_axes(ax, xe, ye, x_name, y_name, f"trainable: {n_ok} of {n_cells} runs", **marks)
    legend = [Patch(color=TRAINABLE_DARK, label="trainable")]
    legend.append(Patch(color=NOT_TRAINABLE, label="not trainable"))
    if missing.any():
        legend.append(Patch(facecolor=MISSING, hatch="//", edgecolor="#9a9a9a", label="no result"))
    if inferred is not None and np.any(inferred):
        pale = tuple(  # what the white veil at INFERRED_ALPHA makes of the colour
            c + INFERRED_ALPHA * (1 - c) for c in matplotlib.colors.to_rgb(TRAINABLE_DARK)
        )
        legend.append(Patch(color=pale, label="inferred (pale)"))
    ax.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))

    sup = title or "trainability"
    if note:
        sup += f"\n{note}"
    return save_figure(fig, path, sup)


def stability_figure(xs, ys, stable, loss, path, x_name, y_name, title=None, inferred=None):
    """Stable runs coloured by their final train loss (log scale), unstable ones red;
    NaN = no result, hatched grey. The colour is what tells runs apart when every run is
    stable, so the title says how many are."""
    xe, ye = cell_edges(xs), cell_edges(ys)
    s = np.asarray(stable, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.2, 4.6))
    unstable = np.where(s == 0, 1.0, np.nan)
    ax.pcolormesh(xe, ye, np.ma.masked_invalid(unstable), cmap=ListedColormap([NOT_TRAINABLE]))
    shown = np.where((s == 1) & np.isfinite(loss) & (loss > 0), loss, np.nan)
    if np.isfinite(shown).any():
        lo, hi = np.nanmin(shown), np.nanmax(shown)
        norm = LogNorm(lo, hi if hi > lo else lo * 1.0001)
        m = ax.pcolormesh(xe, ye, np.ma.masked_invalid(shown), cmap="viridis_r", norm=norm)
        bar = fig.colorbar(m, ax=ax)
        bar.set_label("final train loss of stable runs (log scale)", fontsize=8)
        plain = FuncFormatter(lambda v, _: f"{v:.3g}")
        bar.ax.yaxis.set_major_formatter(plain)
        bar.ax.yaxis.set_minor_formatter(plain if hi / lo < 10 else NullFormatter())
    n, n_stable = int(np.isfinite(s).sum()), int((s == 1).sum())
    head = "every run is stable" if n and n_stable == n else f"stable: {n_stable} of {n} runs"
    head += "; red: unstable" if n_stable < n else ""
    _grid_axes(ax, xe, ye, x_name, y_name, head, missing=np.isnan(s), inferred=inferred)
    return save_figure(fig, path, title)


def boundary_figure(xs, ys, edges, missing, path, x_name, y_name, title=None):
    """Boundary pixels (black): an edge pixel is the square between four neighbouring grid
    points, so it spans from one point to the next. White where those points have results
    and no boundary, hatched grey where one of them lacks a result."""
    xe, ye = cell_edges(xs), cell_edges(ys)
    px, py = np.log10(xs), np.log10(ys)  # the corners of the edge pixels
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    e = np.where(missing, np.nan, np.asarray(edges, dtype=float))
    ax.pcolormesh(px, py, np.ma.masked_invalid(e), cmap="Greys", vmin=0, vmax=1)
    _cells(ax, px, py, missing, facecolor=MISSING, hatch="//", edgecolor="#9a9a9a", lw=0)
    _grid_axes(ax, xe, ye, x_name, y_name, f"boundary: {int(np.nansum(e))} pixels")
    return save_figure(fig, path, title)


def zoom_figure(g, parent, path, x_name, y_name, title):
    """The zoomed grid drawn inside its parent grid's axes, its window outlined."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for grid, alpha in ((parent, 0.55), (g, 1.0)):
        xe, ye = cell_edges(grid["xs"]), cell_edges(grid["ys"])
        v = trainability_values(grid["loss"], grid["trainable"])
        ax.pcolormesh(
            xe,
            ye,
            np.ma.masked_invalid(v),
            cmap=TRAINABILITY_CMAP,
            vmin=-1,
            vmax=1,
            alpha=alpha,
        )
    pxe, pye = cell_edges(parent["xs"]), cell_edges(parent["ys"])
    xe, ye = cell_edges(g["xs"]), cell_edges(g["ys"])
    ax.add_patch(Rectangle((xe[0], ye[0]), xe[-1] - xe[0], ye[-1] - ye[0], fill=False, lw=1.5))
    ax.set_xlim(pxe[0], pxe[-1])
    ax.set_ylim(pye[0], pye[-1])
    ax.set_xlabel(f"{x_name} (log10)")
    ax.set_ylabel(f"{y_name} (log10)")
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
