"""Figures of LLM trainability grids: the 3-panel trainability figure (labels, the loss
ratio that decides them, the final train loss), the stability map, the boundary and a
zoomed grid inside its parent.

Every map is [ny, nx] with row = y index, over log-spaced hyperparameter values. A cell
with no result (not run yet, or failed) is NaN and drawn hatched grey, never as a label;
cells inferred from coarser levels of a refined map (`inferred`, a boolean map) are
paled, so a reader sees which labels were computed; an inferred point has no loss.
Diverged runs (a non-finite loss) are black everywhere, apart from the merely not
trainable (dark red); the plot area is light grey, so no cell reads as the page. Axes
are named by what they are (axis_name: "Muon lr, hidden matrices"); each title carries
the run profile.
"""

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import (  # noqa: E402
    BoundaryNorm,
    LinearSegmentedColormap,
    ListedColormap,
    TwoSlopeNorm,
)
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from fractal.dimension import MIN_BOX_SIZES
from fractal.figures import save_figure

NOT_TRAINABLE = "#8B0000"  # stable, but the loss did not fall below the threshold
TRAINABLE_LIGHT = "#ADD8E6"  # highest loss among trainable runs
TRAINABLE_DARK = "#00008B"  # lowest loss
BARELY = "#6baed6"  # trainable, but its loss ratio lies within BARELY_MARGIN of the threshold
DIVERGED = "#000000"  # unstable: a non-finite loss (NaN or inf)
MISSING = "#d9d9d9"
BARELY_MARGIN = 0.05  # "barely trainable": ratio / threshold above 1 - this
# red-white-blue scale over [-1, 1]: -1 not trainable, 0.3..1.0 trainable (light..dark)
TRAINABILITY_CMAP = LinearSegmentedColormap.from_list(
    "trainability",
    [(0.0, NOT_TRAINABLE), (0.5, "#ffffff"), (0.65, TRAINABLE_LIGHT), (1.0, TRAINABLE_DARK)],
)
BINARY_CMAP = ListedColormap([NOT_TRAINABLE, TRAINABLE_DARK])
INFERRED_ALPHA = 0.5  # how much an inferred cell is paled

# What a swept gpt2 knob is, for axis labels: the optimizer that owns each parameter group
# (Muon trains only the hidden matrices and hands the rest to AdamW).
GROUPS = {
    "matrix": "hidden matrices",
    "embedding": "token embedding",
    "unembedding": "output head",
    "vector": "biases and gains",
}
OPTIMIZER_NAMES = {"adamw": "AdamW", "muon": "Muon", "sgd": "SGD", "lion": "Lion"}
KNOBS = {"max_tokens": "training tokens", "max_steps": "training steps"}


def axis_name(param, optimizer=None):
    """'matrix_lr', 'muon' -> 'Muon lr, hidden matrices'; unknown knobs keep their name."""
    group = param[: -len("_lr")] if param.endswith("_lr") else None
    if group in GROUPS:
        owner = optimizer if (optimizer != "muon" or group == "matrix") else "adamw"
        opt = OPTIMIZER_NAMES.get(owner, owner or "")
        return f"{opt} lr, {GROUPS[group]}".strip() + f" ({param})"
    return KNOBS.get(param, param)


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
    translucent white veil: computed cells stay crisp, at any resolution). The plot area
    is light grey, so no white cell is mistaken for the page."""
    ax.set_facecolor("#f4f4f4")
    if missing is not None:
        _cells(ax, xe, ye, missing, facecolor=MISSING, edgecolor="#9a9a9a", hatch="//", lw=0)
    if inferred is not None and np.any(inferred):
        veil = np.ma.masked_where(~np.asarray(inferred, dtype=bool), np.ones(np.shape(inferred)))
        ax.pcolormesh(xe, ye, veil, cmap=ListedColormap(["#ffffff"]), alpha=INFERRED_ALPHA)
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.set_xlabel(f"{x_name}, log10")
    ax.set_ylabel(f"{y_name}, log10")
    ax.set_title(title, fontsize=9)


def trainability_values(loss, trainable):
    """Values in [-1, 1] on TRAINABILITY_CMAP (the zoom figure): -1 not trainable,
    trainable runs 0.3 (highest loss) .. 1.0 (lowest loss), NaN where the cell has no
    result (trainable is NaN). A trainable cell without a loss (inferred by a refined
    grid) gets the middle shade, 0.65."""
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


LABELS = [  # code, colour, legend text
    (0, DIVERGED, "diverged: a loss went NaN/inf"),
    (1, NOT_TRAINABLE, "not trainable: loss ratio >= threshold"),
    (2, BARELY, f"barely trainable: ratio within {BARELY_MARGIN:.0%} of the threshold"),
    (3, TRAINABLE_DARK, "trainable"),
]


def label_codes(trainable, stable, ratio, threshold):
    """[ny, nx] codes of LABELS (NaN: no result). Without `stable`, no cell is called
    diverged; without `ratio`, no cell is called barely trainable."""
    t = np.asarray(trainable, dtype=np.float64)
    out = np.where(t == 1, 3.0, np.where(t == 0, 1.0, np.nan))
    if stable is not None:
        out[np.asarray(stable, dtype=np.float64) == 0] = 0.0
    if ratio is not None and threshold:
        r = np.asarray(ratio, dtype=np.float64)
        barely = (t == 1) & np.isfinite(r) & (r / threshold > 1 - BARELY_MARGIN)
        out[barely] = 2.0
    return out


def _legend(ax, codes, missing, inferred):
    handles = [Patch(color=c, label=text) for k, c, text in LABELS if np.any(codes == k)]
    if np.any(missing):
        handles.append(Patch(facecolor=MISSING, hatch="//", edgecolor="#9a9a9a", label="no result"))
    if inferred is not None and np.any(inferred):
        pale = tuple(  # what the white veil at INFERRED_ALPHA makes of the colour
            c + INFERRED_ALPHA * (1 - c) for c in matplotlib.colors.to_rgb(TRAINABLE_DARK)
        )
        handles.append(Patch(color=pale, label="inferred from a coarser grid (pale)"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.16))


def _ratio_panel(fig, ax, ratio, codes, threshold):
    """The loss ratio of stable runs on a diverging scale centred on the threshold: blue
    below (the loss fell enough), white at it (barely moved), red above; in decades of
    ratio / threshold, clipped at one decade above."""
    r = np.asarray(ratio, dtype=np.float64)
    ok = np.isfinite(r) & (r > 0) & (codes != 0)
    if not ok.any():
        return
    v = np.where(ok, np.log10(np.where(ok, r, 1.0) / threshold), np.nan)
    low = min(float(np.nanmin(v)), -0.01)
    high = min(max(float(np.nanmax(v)), 0.01), 1.0)
    norm = TwoSlopeNorm(0.0, low, high)
    m = ax.pcolormesh(ax._xe, ax._ye, np.ma.masked_invalid(v), cmap="RdBu_r", norm=norm)
    bar = fig.colorbar(m, ax=ax, extend="max" if np.nanmax(v) > high else "neither")
    bar.set_label(f"loss ratio (white: at the threshold {threshold:g})", fontsize=8)
    ticks = sorted({low, low / 2, 0.0, high / 2, high})
    bar.set_ticks(ticks)
    bar.set_ticklabels([f"{threshold * 10**t:.3g}" for t in ticks])


def trainability_figure(
    xs, ys, loss, trainable, path, x_name, y_name, title=None, inferred=None, note=None,
    stable=None, ratio=None, threshold=None, window=None,
):  # fmt: skip
    """The 3-panel figure of an LLM grid: the labels, the loss ratio that decides them,
    and the final train loss of the trainable runs.

    xs [nx], ys [ny]: the swept hyperparameter values (log-spaced); loss (final train
    loss), trainable, stable and ratio (mean of the last `window` train losses / the
    first) [ny, nx] with row = y index. trainable is 1 / 0, or NaN where the cell has no
    result yet (running, failed): such cells are drawn hatched grey in every panel.
    `inferred` marks labels taken from a coarser level of a refined map (paled).
    """
    xe, ye = cell_edges(xs), cell_edges(ys)
    t = np.asarray(trainable, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    missing = np.isnan(t)
    marks = dict(missing=missing, inferred=inferred)
    fig, axs = plt.subplots(1, 3, figsize=(16, 5.6))
    for ax in axs:
        ax._xe, ax._ye = xe, ye
    codes = label_codes(t, stable, ratio, threshold)

    ax = axs[0]
    colours = ListedColormap([c for _, c, _ in LABELS])
    ax.pcolormesh(xe, ye, np.ma.masked_invalid(codes), cmap=colours, vmin=-0.5, vmax=3.5)
    n_ok, n_cells = int((t == 1).sum()), int(np.isfinite(t).sum())
    head = f"labels: {n_ok} of {n_cells} runs trainable"
    if threshold is not None:  # the rule in full, unless the caller's title gives it
        last = f"last {window} " if window else "last "
        rule = f"mean of the {last}train losses < {threshold:g} x the first"
        head += "" if title and "trainable:" in title else f"\n(trainable: {rule})"
    _grid_axes(ax, xe, ye, x_name, y_name, head, **marks)
    _legend(ax, codes, missing, inferred)

    ax = axs[1]
    if ratio is not None and threshold:
        _ratio_panel(fig, ax, ratio, codes, threshold)
        _cells(ax, xe, ye, codes == 0, facecolor=DIVERGED, lw=0)
        what = f"loss ratio: mean of the last {window or 'K'} train losses / the first"
        _grid_axes(ax, xe, ye, x_name, y_name, what + "\n(black: diverged)", **marks)
    else:
        _grid_axes(ax, xe, ye, x_name, y_name, "loss ratio: not recorded", **marks)

    ax = axs[2]
    trained = np.where(t == 1, loss, np.nan)
    if np.isfinite(trained).any():
        m = ax.pcolormesh(xe, ye, np.ma.masked_invalid(trained), cmap="viridis_r")
        fig.colorbar(m, ax=ax).set_label("final train loss", fontsize=8)
    unknown = (t == 1) & ~np.isfinite(loss)  # inferred: labels known, no loss
    _cells(ax, xe, ye, unknown, facecolor="#c8c8c8", lw=0)
    head = "final train loss of trainable runs\n(light grey: other runs"
    head += "; mid grey: inferred, no loss)" if unknown.any() else ")"
    _grid_axes(ax, xe, ye, x_name, y_name, head, **marks)

    sup = title or "trainability"
    if note:
        sup += f"\n{note}"
    return save_figure(fig, path, sup)


def _quantile_norm(values, bins=10):
    """Colour steps at the deciles of `values`: every step holds as many cells, so a
    range of 10 to 1e29 still shows its variation (a log scale would flatten all but
    the extremes into one colour)."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0] * 1.0001 + 1e-12])
    return BoundaryNorm(edges, 256), edges


def stability_figure(xs, ys, stable, loss, path, x_name, y_name, title=None, inferred=None):
    """Stable runs coloured by their final train loss, in colour steps at the deciles
    (losses of stable runs can span 10 to 1e29); diverged runs (unstable) black; NaN = no
    result, hatched grey. The colour is what tells runs apart when every run is stable,
    so the title says how many are."""
    xe, ye = cell_edges(xs), cell_edges(ys)
    s = np.asarray(stable, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.6, 4.8))
    _cells(ax, xe, ye, s == 0, facecolor=DIVERGED, lw=0)
    shown = np.where((s == 1) & np.isfinite(loss), loss, np.nan)
    if np.isfinite(shown).any():
        norm, edges = _quantile_norm(shown[np.isfinite(shown)])
        m = ax.pcolormesh(xe, ye, np.ma.masked_invalid(shown), cmap="viridis_r", norm=norm)
        bar = fig.colorbar(m, ax=ax)
        bar.set_label("final train loss of stable runs (steps: deciles)", fontsize=8)
        bar.set_ticks(edges)
        bar.set_ticklabels([f"{e:.3g}" for e in edges])
        bar.ax.tick_params(labelsize=7)
    n, n_stable = int(np.isfinite(s).sum()), int((s == 1).sum())
    head = "every run is stable" if n and n_stable == n else f"stable: {n_stable} of {n} runs"
    head += "; black: diverged (a loss went NaN/inf)" if n_stable < n else ""
    _grid_axes(ax, xe, ye, x_name, y_name, head, missing=np.isnan(s), inferred=inferred)
    return save_figure(fig, path, title)


def dimension_text(dim, sizes):
    """What a figure or summary says about the boundary's box-counting dimension."""
    if dim is None and len(sizes) < MIN_BOX_SIZES:
        return (
            f"no dimension: {len(sizes)} box size(s) fit this grid, a slope needs "
            f"at least {MIN_BOX_SIZES}"
        )
    if dim is None:
        return "no dimension: too few boundary pixels"
    return f"box-counting dimension {dim:.2f} (box sizes {', '.join(map(str, sizes))})"


def boundary_figure(
    xs, ys, edges, missing, path, x_name, y_name, title=None, trainable=None, dimension=None
):
    """Boundary pixels (black) over the labels (pale): a boundary pixel is the square
    between four neighbouring grid points whose labels differ, so it spans from one point
    to the next. Hatched grey where one of the four lacks a result. `dimension`: the line
    dimension_text() gives, shown under the title."""
    xe, ye = cell_edges(xs), cell_edges(ys)
    px, py = np.log10(xs), np.log10(ys)  # the corners of the boundary pixels
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    if trainable is not None:
        pale = ListedColormap(["#f2b8b8", "#c6dbef"])  # not trainable, trainable
        t = np.asarray(trainable, dtype=np.float64)
        ax.pcolormesh(xe, ye, np.ma.masked_invalid(t), cmap=pale, vmin=0, vmax=1)
    e = np.where(missing, np.nan, np.asarray(edges, dtype=float))
    _cells(ax, px, py, e == 1, facecolor="#000000", lw=0)
    _cells(ax, px, py, missing, facecolor=MISSING, hatch="//", edgecolor="#9a9a9a", lw=0)
    n = int(np.nansum(e))
    head = f"boundary between trainable and not: {n} pixels"
    _grid_axes(ax, xe, ye, x_name, y_name, head + (f"\n{dimension}" if dimension else ""))
    handles = [Patch(color="#000000", label="boundary pixel: 2 x 2 neighbouring runs, both labels")]
    if trainable is not None:
        handles += [
            Patch(color="#c6dbef", label="trainable"),
            Patch(color="#f2b8b8", label="not trainable"),
        ]
    if np.any(missing):
        handles.append(Patch(facecolor=MISSING, hatch="//", edgecolor="#9a9a9a", label="no result"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14))
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
    ax.set_xlabel(f"{x_name}, log10")
    ax.set_ylabel(f"{y_name}, log10")
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
