"""The optimizer comparison's summary figure: each optimizer's opening window side by side,
and below them the fractal dimension per optimizer, with its spread where a zoom sequence
measured it (bench/fractal_optim_maps.py makes the data)."""

import numpy as np

from fractal import figures


def optimizer_figure(maps, dims, path, title=None):
    """maps: [{"name", "values", "window", "dimension"}] (opening windows; dimension of
    that one image, or None); dims: {name: {"dimension", "spread_16_84", "frames_done",
    "deepest_width"}} from zoom sequences (may be empty or miss optimizers)."""
    import matplotlib.pyplot as plt

    n = len(maps)
    fig = plt.figure(figsize=(3.0 * n, 6.4))
    grid = fig.add_gridspec(2, n, height_ratios=[1.0, 0.75], hspace=0.45)
    for i, m in enumerate(maps):
        ax = fig.add_subplot(grid[0, i])
        figures.draw_image(ax, m["values"], m["window"])
        d = m.get("dimension")
        ax.set_title(f"{m['name']}" + (f"\nopening D = {d:.2f}" if d is not None else ""),
                     fontsize=9)  # fmt: skip
        if i:
            ax.set_ylabel("")
    ax = fig.add_subplot(grid[1, :])
    names = [m["name"] for m in maps]
    xs = np.arange(n)
    opening = [m.get("dimension") for m in maps]
    ax.plot(xs, [np.nan if d is None else d for d in opening], "s", color="0.6",
            label="opening window (one image)")  # fmt: skip
    labelled = set()
    for i, name in enumerate(names):
        z = dims.get(name)
        if not z or z.get("dimension") is None:
            continue
        # all frames done (red), and the frames the noise test leaves (blue), offset apart
        marks = [("dimension", "spread_16_84", "frames_done", "C3", -0.12,
                  "zoom, all frames (16-84% bootstrap)"),
                 ("dimension_resolved", "spread_resolved_16_84", "frames_resolved", "C0", 0.12,
                  "zoom, frames not called arithmetic")]  # fmt: skip
        for key, spread, count, colour, dx, label in marks:
            d = z.get(key)
            if d is None:
                continue
            lo, hi = z[spread]
            ax.errorbar([i + dx], [d], yerr=[[d - lo], [hi - d]], fmt="o", color=colour,
                        capsize=4, label=None if key in labelled else label)  # fmt: skip
            labelled.add(key)
            ax.annotate(f"{z[count]}", (i + dx, d), textcoords="offset points",
                        xytext=(5, -3), fontsize=7, color=colour)  # fmt: skip
    ticks = [n if not dims.get(n) else f"{n}\nto {dims[n]['deepest_width']:.0e} dec" for n in names]
    ax.set_xticks(xs, ticks, fontsize=8)
    ax.set_ylabel("box-counting dimension")
    ax.set_xlim(-0.5, n - 0.5)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return figures.save_figure(fig, path, title)
