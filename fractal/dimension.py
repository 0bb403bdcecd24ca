"""Box-counting fractal dimension of the trainability boundary.

The boundary is where the sign of the pixel value changes (converged pixels are
negative, diverged positive). Two estimators, both the median of local log-log slopes
over all box sizes and all frames of a zoom sequence:

- "paper" (the notebook's): edge pixels are 2x2 neighbourhoods whose values change sign
  (extract_edges: max * min < 0; NaN is never an edge); porespy's
  `metrics.boxcount(im, bins=10)`: box sizes unique(logspace(1, log10(min side), 10)) as
  integers, from 10 pixels to the side, tiles from 0 with partial boxes at the border, a
  box counting when it holds some edge but is not all edge; slopes -gradient(log N,
  log size) (central differences inside, one-sided at the ends).
- "pow2" (ours, for small grids such as 16 x 16 LLM maps, where 10-pixel boxes leave no
  scales): edge pixels as above by sign (> 0); boxes of 1, 2, 4, ... pixels up to a
  quarter of the side holding an edge pixel; slopes between neighbouring sizes.

The median (rather than one straight-line fit) ignores the few scales where a frame is
degenerate: a box size close to the pixel size or close to the image size.
"""

import numpy as np

METHODS = ("paper", "pow2")
MIN_BOX_SIZES = 3  # fewer box sizes give one slope or none: no dimension is read from them


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


# ----------------------------------------------------------------------------------------
# the paper's estimator


def paper_edges(values):
    """The notebook's extract_edges: [ny-1, nx-1], True where max * min < 0 over a 2x2
    neighbourhood (both signs present, no zero; a NaN in it makes it no edge)."""
    v = np.asarray(values, dtype=np.float64)
    quad = np.stack((v[1:, 1:], v[:-1, 1:], v[1:, :-1], v[:-1, :-1]), axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.sign(quad.max(axis=-1) * quad.min(axis=-1)) < 0


def porespy_sizes(shape, bins=10):
    """porespy's box sizes: unique(logspace(1, log10(min(shape)), bins).astype(int))."""
    return np.unique(np.logspace(1, np.log10(min(shape)), bins).astype(int))


def porespy_counts(edges, sizes):
    """For each box size d: boxes (tiles from 0, partial ones at the border) holding some
    edge minus boxes that are entirely edge, as porespy.metrics.boxcount counts them."""
    a = np.asarray(edges, dtype=np.int64)
    counts = []
    for d in sizes:
        ri, ci = np.arange(0, a.shape[0], d), np.arange(0, a.shape[1], d)
        S = np.add.reduceat(np.add.reduceat(a, ri, axis=0), ci, axis=1)
        full = np.outer(np.diff(np.append(ri, a.shape[0])), np.diff(np.append(ci, a.shape[1])))
        counts.append(int((S > 0).sum() - (S == full).sum()))
    return np.array(counts)


def porespy_slopes(sizes, counts):
    """porespy's slopes, -gradient(log N, log size): central differences inside, one-sided
    at both ends (non-finite where a count is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.gradient(np.log(np.asarray(counts, dtype=float)), np.log(sizes))


# ----------------------------------------------------------------------------------------
# either estimator


def box_count(values, min_size=1, max_fraction=0.25, method="pow2"):
    """Box counting of one image: dict(sizes, counts, slopes, edge_pixels). "paper": the
    notebook's edges and porespy's boxes (non-finite slopes, from empty counts, dropped);
    "pow2": powers of two from min_size to max_fraction of the side."""
    if method == "paper":
        edges = paper_edges(values)
    elif method == "pow2":
        edges = edge_pixels(values)
    else:
        raise ValueError(f"method={method!r}; expected one of {METHODS}")
    return edge_box_count(edges, method, min_size, max_fraction)


def edge_box_count(edges, method="pow2", min_size=1, max_fraction=0.25):
    """box_count() of a boundary image already made ([n0, n1] bool): either estimator's
    box sizes, counts and finite local slopes."""
    edges = np.asarray(edges, dtype=bool)
    if method == "paper":
        if min(edges.shape) < 2:
            return {"sizes": [], "counts": [], "slopes": [], "edge_pixels": int(edges.sum())}
        sizes = porespy_sizes(edges.shape)
        counts = porespy_counts(edges, sizes)
        slopes = porespy_slopes(sizes, counts)
        slopes = slopes[np.isfinite(slopes)]
    elif method == "pow2":
        sizes = box_sizes(edges.shape, min_size, max_fraction)
        counts = box_counts(edges, sizes)
        slopes = local_slopes(sizes, counts)
    else:
        raise ValueError(f"method={method!r}; expected one of {METHODS}")
    return {
        "sizes": [int(s) for s in sizes],
        "counts": [int(c) for c in counts],
        "slopes": [float(x) for x in slopes],
        "edge_pixels": int(edges.sum()),
    }


def fractal_dimension(frames, min_size=1, max_fraction=0.25, method="pow2"):
    """Median local slope over all box sizes of all frames (one image or a list of them).

    Returns NaN when no frame has a boundary (every pixel converged, or every one diverged).
    """
    if isinstance(frames, np.ndarray) and frames.ndim == 2:
        frames = [frames]
    return pooled_median([box_count(v, min_size, max_fraction, method)["slopes"] for v in frames])


def pooled_median(slopes_per_frame):
    """The estimate from per-frame slope lists: the median of all of them, pooled."""
    pooled = [s for frame in slopes_per_frame for s in frame]
    return float(np.median(pooled)) if pooled else float("nan")


def bootstrap(slopes_per_frame, samples=1000, seed=0):
    """Spread of the pooled median over frames: resample the frames with replacement
    `samples` times; returns (16th, 84th percentile) of the estimates, or (nan, nan)."""
    frames = [f for f in slopes_per_frame if len(f)]
    if not frames:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    est = [
        pooled_median([frames[i] for i in rng.integers(0, len(frames), len(frames))])
        for _ in range(samples)
    ]
    lo, hi = np.percentile(est, [16, 84])
    return float(lo), float(hi)


def stretches(slopes_per_frame, length=8):
    """The pooled median over consecutive stretches of `length` frames (the last one
    shorter): how the estimate depends on depth. Returns [(first, last, estimate)]."""
    out = []
    for a in range(0, len(slopes_per_frame), length):
        part = slopes_per_frame[a : a + length]
        out.append((a, a + len(part) - 1, pooled_median(part)))
    return out


def plot_box_counting(frames, path=None, title=None, ax=None, method="pow2"):
    """Log-log plot of N(s) against the box size s for every frame, with the median-slope
    estimate as a line of slope -D.

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
    counted = [box_count(values, method=method) for values in frames]
    estimate = pooled_median([bc["slopes"] for bc in counted])
    used = set()
    for k, bc in enumerate(counted):
        sizes, counts = np.asarray(bc["sizes"], float), np.asarray(bc["counts"], float)
        keep = counts > 0
        used.update(sizes[keep].tolist())
        label = f"image {k}" if len(frames) > 1 else "boxes counted"
        ax.loglog(sizes[keep], counts[keep], "o-", ms=3, lw=1, alpha=0.7, label=label)
    points = [
        (s, c) for bc in counted for s, c in zip(bc["sizes"], bc["counts"]) if c > 0
    ]  # fmt: skip
    if np.isfinite(estimate) and points:
        # the line of slope -D that fits the points best (least squares in log-log: it
        # passes through their centroid), not one pinned to the first point
        ls, lc = np.log10(np.array(points, float)).T
        s = np.array(sorted(used))
        ax.loglog(
            s, 10 ** (np.mean(lc + estimate * ls)) * s**-estimate, "k--", lw=1,
            label=f"fit: slope -{estimate:.3f} (median local slope)",
        )  # fmt: skip
    # one label per box size used (at most 8, evenly picked), no minor labels: readable
    ticks = sorted(used)
    ticks = ticks[:: max(1, -(-len(ticks) // 8))]
    ax.minorticks_off()
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("box size (pixels)")
    ax.set_ylabel("boxes holding boundary")
    # drawn into a figure of panels (`ax`), it is as small as they are: a smaller title
    # and the legend beside it; alone, the falling counts leave the lower left free
    ax.set_title(title or f"box counting: dimension {estimate:.3f}", fontsize=None if own else 8)
    if len(frames) <= 10:
        where = dict(loc="lower left") if own else dict(loc="upper left", bbox_to_anchor=(1.02, 1))
        ax.legend(fontsize=7 if own else 6, **where)
    if own:
        fig.tight_layout()
        if path is not None:
            from kmatrix.files import write_atomic

            write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
        plt.close(fig)
    return estimate
