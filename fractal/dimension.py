"""Box-counting fractal dimension of the trainability boundary.

The boundary is where the sign of the pixel value changes (converged pixels are
negative, diverged positive). Following the paper's notebook:

1. edge pixels: 2x2 neighbourhoods that contain both signs;
2. box counting: N(s) = number of s x s boxes (s a power of two) holding an edge pixel;
3. the local slope between neighbouring box sizes is -dlog N / dlog s; the estimate is
   the median of the local slopes over all box sizes and all frames of a zoom sequence.

The median (rather than one straight-line fit) ignores the few scales where a frame is
degenerate: a box size close to the pixel size or close to the image size.
"""

import numpy as np


def edge_pixels(values):
    """Boolean [ny-1, nx-1] image: True where a 2x2 neighbourhood has a sign change.

    `values` is any real image (or a boolean one); only its sign (> 0) matters.
    """
    pos = np.asarray(values) > 0
    a, b, c, d = pos[:-1, :-1], pos[:-1, 1:], pos[1:, :-1], pos[1:, 1:]
    all_pos = a & b & c & d
    any_pos = a | b | c | d
    return any_pos & ~all_pos


def box_sizes(shape, min_size=1, max_fraction=0.25):
    """Powers of two from `min_size` up to `max_fraction` of the smaller image side.

    Boxes larger than a quarter of the image are left out: with 4 x 4 boxes or fewer in
    the whole image the count no longer depends on the boundary's structure.
    """
    limit = max(min_size, int(min(shape) * max_fraction))
    sizes = []
    s = min_size
    while s <= limit:
        sizes.append(s)
        s *= 2
    return sizes


def box_counts(edges, sizes):
    """N(s): how many s x s boxes contain at least one True pixel, for each size s."""
    edges = np.asarray(edges, dtype=bool)
    counts = []
    for s in sizes:
        ny = -(-edges.shape[0] // s) * s  # pad up to a multiple of s
        nx = -(-edges.shape[1] // s) * s
        padded = np.zeros((ny, nx), dtype=bool)
        padded[: edges.shape[0], : edges.shape[1]] = edges
        boxes = padded.reshape(ny // s, s, nx // s, s).any(axis=(1, 3))
        counts.append(int(boxes.sum()))
    return np.array(counts)


def local_slopes(sizes, counts):
    """-dlog N / dlog s between neighbouring box sizes; pairs with an empty count drop out."""
    sizes = np.asarray(sizes, dtype=float)
    counts = np.asarray(counts, dtype=float)
    ok = (counts[:-1] > 0) & (counts[1:] > 0)
    logn = np.log(np.maximum(counts, 1))  # empty counts are dropped by `ok` below
    return (-np.diff(logn) / np.diff(np.log(sizes)))[ok]


def box_count(values, min_size=1, max_fraction=0.25):
    """Box counting of one image: dict(sizes, counts, slopes, edge_pixels)."""
    edges = edge_pixels(values)
    sizes = box_sizes(edges.shape, min_size, max_fraction)
    counts = box_counts(edges, sizes)
    return {
        "sizes": sizes,
        "counts": counts.tolist(),
        "slopes": local_slopes(sizes, counts).tolist(),
        "edge_pixels": int(edges.sum()),
    }


def fractal_dimension(frames, min_size=1, max_fraction=0.25):
    """Median local slope over all box sizes of all frames (one image or a list of them).

    Returns NaN when no frame has a boundary (every pixel converged, or every one diverged).
    """
    if isinstance(frames, np.ndarray) and frames.ndim == 2:
        frames = [frames]
    slopes = []
    for values in frames:
        slopes += box_count(values, min_size, max_fraction)["slopes"]
    return float(np.median(slopes)) if slopes else float("nan")


def plot_box_counting(frames, path=None, title=None, ax=None):
    """Log-log plot of N(s) against 1/s for every frame, with the median-slope estimate.

    Draws into `ax` if given, else makes a figure and saves it to `path`. Returns the
    estimate.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(frames, np.ndarray) and frames.ndim == 2:
        frames = [frames]
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5, 4))
    estimate = fractal_dimension(frames)
    for k, values in enumerate(frames):
        bc = box_count(values)
        sizes, counts = np.asarray(bc["sizes"], float), np.asarray(bc["counts"], float)
        keep = counts > 0
        ax.loglog(1 / sizes[keep], counts[keep], "o-", ms=3, lw=1, alpha=0.7, label=f"frame {k}")
    if np.isfinite(estimate):
        # reference line of the estimated slope through the first frame's smallest box
        bc = box_count(frames[0])
        if bc["counts"][0] > 0:
            s = np.asarray(bc["sizes"], float)
            ax.loglog(
                1 / s, bc["counts"][0] * s**-estimate, "k--", lw=1, label=f"slope {estimate:.3f}"
            )
    ax.set_xlabel("1 / box size (1 / pixels)")
    ax.set_ylabel("boxes holding boundary")
    ax.set_title(title or f"box counting: dimension {estimate:.3f}")
    if len(frames) <= 10:
        ax.legend(fontsize=7)
    if own:
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        plt.close(fig)
    return estimate
