"""Figures of the fractal workload.

Paper mode (one image per experiment): the notebook's colour scheme, per-image PNGs with
log10 axes and the summary figures. (LLM maps: llmmap/grid_figures.py.)

Every figure takes a `title` that callers prefix with the run profile, so paper_repro and
maxout_speed images are never mistaken for each other.
"""

from pathlib import Path

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kmatrix.files import write_atomic  # noqa: E402

# x and y labels of the paper's two kinds of image (engine: paraminit_vs_lr puts the
# weight offset on x and the one shared learning rate on y)
AXIS_LABELS = {
    "lr_vs_lr": ("input-layer lr (log10)", "output-layer lr (log10)"),
    "paraminit_vs_lr": ("input-layer weight offset (log10)", "learning rate (log10)"),
}


# ----------------------------------------------------------------------------------------
# paper mode


KEY_INCHES = 1.7  # the width the colour key's column adds to a figure


def save_figure(fig, path, title=None, dpi=120, key=False):
    """Title (if any), tight layout, write, close: the tail of every figure here. `key`:
    the paper images' colour key, in a column added on the right after the layout."""
    if title:
        fig.suptitle(title, fontsize=10)
    if key:
        width, height = fig.get_size_inches()
        fig.set_size_inches(width + KEY_INCHES, height)
        share = KEY_INCHES / (width + KEY_INCHES)  # of the figure's width
        fig.tight_layout(rect=(0, 0, 1 - share, 1))
        colour_key(fig, fig.add_axes((1 - 0.9 * share, 0.15, 0.1 * share, 0.7)))
    else:
        fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format=Path(path).suffix[1:] or "png", dpi=dpi))
    plt.close(fig)
    return path


def paper_colors(values, buffer=0.25):
    """The notebook's colour values in [-1, 1] for matplotlib's `Spectral` (vmin -1, vmax 1).

    Converged pixels (value < 0) are rank-normalised into [-1, -buffer], diverged ones
    (value >= 0) into [buffer, 1], then negated: converged land on the blue side,
    diverged on the red side, and the pixels nearest the boundary (slowest to converge or
    to diverge, the largest |value|) get the darkest colours at +1 and -1. Ranks rather
    than values, because values span many orders of magnitude. NaN stays NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    finite = np.isfinite(v)
    for mask, lo, hi in ((finite & (v < 0), -1.0, -buffer), (finite & (v >= 0), buffer, 1.0)):
        n = int(mask.sum())
        if n == 0:
            continue
        u = np.sort(v[mask])
        out[mask] = np.interp(v[mask], u, np.linspace(lo, hi, n))
    return -out


def _extent(window, shape):
    """imshow extent that puts pixel centres at the log10 grid points of `window`."""
    x0, x1, y0, y1 = window
    ny, nx = shape
    dx = (x1 - x0) / max(nx - 1, 1) / 2
    dy = (y1 - y0) / max(ny - 1, 1) / 2
    return (x0 - dx, x1 + dx, y0 - dy, y1 + dy)


def draw_image(ax, values, window, axes="lr_vs_lr", title=None):
    """One trainability image on `ax` with the paper's colours and log10 axes."""
    im = ax.imshow(
        paper_colors(values),
        cmap="Spectral",
        vmin=-1,
        vmax=1,
        origin="lower",  # row 0 is the smallest y
        extent=_extent(window, np.shape(values)),
        aspect="auto",
        interpolation="nearest",
    )
    xlabel, ylabel = AXIS_LABELS.get(axes, ("x (log10)", "y (log10)"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return im


# What the paper's colours mean: paper_colors() puts converged pixels on Spectral's blue
# side and diverged ones on its red side, each ranked by how slowly it converged or
# diverged: the darkest are the slowest, as pixels at the boundary are.
COLOUR_KEY = (
    (-1.0, "diverged slowly"),
    (-0.25, "diverged fast"),
    (0.25, "converged fast"),
    (1.0, "converged slowly"),
)


def colour_key(fig, cax):
    """The colour bar of the paper's images in `cax`: blue converged, red diverged,
    darker the slower (ranks: the losses span many orders of magnitude)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(-1, 1), "Spectral"), cax=cax)
    bar.set_ticks([v for v, _ in COLOUR_KEY], labels=[t for _, t in COLOUR_KEY], fontsize=7)
    bar.set_label("each pixel: one network trained; shade ranks its speed", fontsize=8)
    return bar


def save_image(values, window, path, axes="lr_vs_lr", title=None, size=5.0):
    """The PNG of one image, with its colour key."""
    fig, ax = plt.subplots(figsize=(size, size))
    draw_image(ax, values, window, axes, title)
    return save_figure(fig, path, dpi=150, key=True)


def _panel_grid(n, width, height, cols=3):
    """A figure of max(n, 1) panels, `cols` to a row, the unused axes hidden."""
    n = max(n, 1)
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axs = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axs.flat[n:]:
        ax.axis("off")
    return fig, axs


def summary_figure(panels, path, title=None):
    """One panel per experiment: dicts with name, values (None = missing), window, axes,
    and a zoom sequence's dimension with its spread, or one image's converged fraction.
    The title of each panel carries the one it has."""
    fig, axs = _panel_grid(len(panels), 4.2, 4.0)
    for ax, p in zip(axs.flat, panels):
        dim_text = _panel_number(p)
        if p.get("values") is None:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{p['name']}: missing", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        draw_image(ax, p["values"], p["window"], p.get("axes", "lr_vs_lr"))
        ax.set_title(f"{p['name']}: {dim_text}", fontsize=9)
    return save_figure(fig, path, title, key=True)


def _panel_number(p):
    """A zoom sequence's "D = 1.51 [1.45, 1.52]"; one image's "43.2% converged" (one frame
    has no dimension)."""
    dim = p.get("dimension")
    if dim is not None and np.isfinite(dim):
        lo, hi = p.get("spread") or (None, None)
        spread = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        return f"D = {dim:.2f}{spread}"
    if p.get("converged_fraction") is not None:
        return f"{p['converged_fraction']:.1%} converged"
    return "D = n/a"


def save_frame_png(values, path):
    """A zoom frame as a bare image in the paper's colours (one pixel per pixel, row 0 at
    the bottom): cheap enough for every frame of a sequence."""
    colors = paper_colors(values)[::-1]
    write_atomic(
        path, lambda f: plt.imsave(f, colors, cmap="Spectral", vmin=-1, vmax=1, format="png")
    )
    return path


def _decades(width):
    return f"{width:.3g} decades"


SHEET_PANELS = 12


def sheet_frames(frames, panels=SHEET_PANELS):
    """The frames a sheet shows: up to `panels` of them, evenly spread over the depth."""
    ks = sorted(frames)
    if len(ks) > panels:
        ks = [ks[int(round(i))] for i in np.linspace(0, len(ks) - 1, panels)]
    return ks


def frame_sheet(p, loaded, stats, path, title=None):
    """The sheet_frames() of one zoom path among those `loaded`, each titled with its
    index, width and box-counting dimension."""
    ks = sheet_frames(loaded)
    if not ks:
        return None
    fig, axs = _panel_grid(len(ks), 3.2, 3.2, cols=4)
    dims = stats.get("frame_dimensions") or {}
    for ax, k in zip(axs.flat, ks):
        values, window = loaded[k]
        ax.imshow(paper_colors(values), cmap="Spectral", vmin=-1, vmax=1, origin="lower")
        ax.set_xticks([])
        ax.set_yticks([])
        d = dims.get(k)
        width = window[1] - window[0]
        ax.set_title(
            f"zoom {k}: {_decades(width)}, D {d:.2f}" if d else f"zoom {k}: {_decades(width)}",
            fontsize=8,
        )
    d, (lo, hi) = stats.get("dimension"), stats.get("spread_16_84") or (None, None)
    head = f"{p['experiment']} / {p['path']}: centre ({p['centre'][0]:.10f}, {p['centre'][1]:.10f})"
    if d is not None:
        head += f", D = {d:.3f} [{lo:.3f}, {hi:.3f}]"
    n, done = stats.get("frames_resolved"), stats.get("frames_done")
    if n is not None and n != done:  # some frames blank or the arithmetic's
        dr, (rlo, rhi) = stats.get("dimension_resolved"), stats["spread_resolved_16_84"]
        head += f"; {n} of {done} frames resolved" + (
            f": D = {dr:.3f} [{rlo:.3f}, {rhi:.3f}]" if dr is not None else ""
        )
    return save_figure(fig, path, f"{title}\n{head}" if title else head, key=True)


def slopes_vs_depth(sheets, path, title=None):
    """Per experiment, each path's per-frame box-counting dimension against frame index
    (depth: frame k is 2^k times narrower than frame 0), with its pooled estimate; a
    path's legend is its key, or p["label"] where given."""
    experiments = sorted({p["experiment"] for p, _, _ in sheets.values()})
    if not experiments:
        return None
    fig, axs = _panel_grid(len(experiments), 4.6, 3.4)
    for ax, name in zip(axs.flat, experiments):
        for key, (p, _, stats) in sorted(sheets.items()):
            if p["experiment"] != name:
                continue
            fd = stats.get("frame_dimensions") or {}
            ks = sorted(k for k in fd if fd[k] is not None)
            label = p.get("label", key)
            (line,) = ax.plot(ks, [fd[k] for k in ks], "o-", ms=2.5, lw=1, label=label)
            if stats.get("dimension") is not None:
                ax.axhline(stats["dimension"], color=line.get_color(), ls="--", lw=0.8)
        ax.set_xlabel("zoom k (image width = the widest / 2^k)")
        ax.set_ylabel("median box-counting slope")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(fig, path, title)


def paper_panels(panels, path, title=None):
    """Our frame at each paper panel's depth, titled with the panel's coordinates (log10
    centre and width in decades, from the paper's figure) and the frame's own window."""
    fig, axs = _panel_grid(len(panels), 4.4, 4.4)
    for ax, p in zip(axs.flat, panels):
        x, y, width, frame = p["panel"]
        head = f"{p['name']}, zoom {frame}\npaper: ({x}, {y}), {width:.4g} decades"
        if p.get("values") is None:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(head, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        draw_image(ax, p["values"], p["window"], p.get("axes", "lr_vs_lr"))
        w = p["window"]
        ax.set_title(
            f"{head}\nours: ({(w[0] + w[1]) / 2:.10f}, {(w[2] + w[3]) / 2:.10f})", fontsize=8
        )
        ax.ticklabel_format(useOffset=True)
    return save_figure(fig, path, title, key=True)
