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
    for i, name in enumerate(names):
        z = dims.get(name)
        if not z or z.get("dimension") is None:
            continue
        lo, hi = z["spread_16_84"]
        d = z["dimension"]
        ax.errorbar([i], [d], yerr=[[d - lo], [hi - d]], fmt="o", color="C3", capsize=4,
                    label="zoom sequence (16-84% bootstrap)" if i == min(
                        j for j, nm in enumerate(names) if dims.get(nm)) else None)  # fmt: skip
        ax.annotate(f"{z['frames_done']} frames\nto {z['deepest_width']:.1e} dec",
                    (i, d), textcoords="offset points", xytext=(8, -4), fontsize=7)  # fmt: skip
    ax.set_xticks(xs, names)
    ax.set_ylabel("box-counting dimension")
    ax.set_xlim(-0.5, n - 0.5)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return figures.save_figure(fig, path, title)
