"""Transects and zoom sequences of an LLM map (LLMMAP_PROBE): the stages after its grid.

The map's grid (the Sweep menu, computed in full) is stage 0: it finds the boundary. Then
either transects (llmmap/transects.py: lines through the boundary at anchors chosen on
it, depth after depth, each 2x narrower) or a zoom sequence (llmmap/zoom_maps.py: square
frames, each 2x narrower, around one boundary point) are planned stage by stage from the
results (kmatrix/stages.py calls next_stage). Every probe point is a cell of the same
gpt2 configuration with the two swept knobs set, the same seed as every grid point (the
map is a function of the two knobs alone); a point two depths or frames share is one
cell, computed once. Points of one stage train together (EXEC_BATCH).

What the probes cannot see: a change between two neighbouring points of the deepest
depth, and anything below fp32's resolution of a learning rate: the batched optimizer
multiplies by the learning rate in the weights' dtype, so two rates closer than one fp32
spacing (2^-23 relative, 5.2e-8 decades) are the same run, and the rounding of the
weights' update makes neighbours identical sooner (counted: identical_neighbours).
"""

import math

import numpy as np

from fractal import dimension
from kmatrix.errors import ConfigError
from kmatrix.files import write_atomic
from kmatrix.grid import apply_sweep, grid_base, sweep_values
from llmmap import transects, zoom_maps

FP32_DECADES = 2.0**-23 / math.log(10)  # fp32 spacing of a number, in decades of it


def kind(cfg):
    return cfg.get("llmmap_probe") or "none"


def validate(cfg):
    """Refuse settings the probes cannot run with, naming the symbol and the fix."""
    if kind(cfg) == "none":
        return
    if cfg.get("sweep_refine"):
        raise ConfigError(
            "LLMMAP_PROBE",
            "transects and zoom frames start from a grid computed in full",
            "turn SWEEP_REFINE off (each zoom frame is refined with LLMMAP_ZOOM_REFINE_LEVELS)",
        )
    if (cfg.get("sweep_seeds") or "shared") != "shared":
        raise ConfigError(
            "LLMMAP_PROBE",
            "probe points are a function of the two knobs only with shared seeds",
            "set SWEEP_SEEDS_SHARED",
        )
    n, depths = cfg.llmmap_points, cfg.llmmap_depths
    if n % 2 == 0 or n < 3:
        raise ConfigError(
            "LLMMAP_POINTS", f"{n} points: nesting needs an odd number", "use 2^k + 1"
        )
    levels = cfg.get("llmmap_zoom_refine_levels") or 0
    if kind(cfg) == "zoom" and levels and ((n - 1) % 2**levels or n < 2**levels + 1):
        raise ConfigError(
            "LLMMAP_ZOOM_REFINE_LEVELS",
            f"a frame of {n} points cannot be refined {levels} times",
            f"use LLMMAP_POINTS = k * {2**levels} + 1",
        )
    centres = cfg.get("llmmap_centres") or []
    if len(centres) % 2:
        raise ConfigError("LLMMAP_CENTRES", "centres are x y pairs", "give an even count of values")
    if depths < 1:
        raise ConfigError("LLMMAP_DEPTHS", "at least one depth", "set LLMMAP_DEPTHS >= 1")


# ---------------------------------------------------------------------------- geometry


def _log(cfg, axis):
    return (cfg.get(f"sweep_{axis}_spacing") or "log") == "log"


def to_axis(cfg, axis, value):
    return math.log10(value) if _log(cfg, axis) else value


def to_value(cfg, axis, coord):
    return 10.0 ** coord if _log(cfg, axis) else coord


def grid_labels(cfg, grid, results, label):
    """[ny, nx] object array of the grid's labels (None: no result) and its axis coords."""
    xs, ys = sweep_values(cfg, "x"), sweep_values(cfg, "y")
    out = np.full((len(ys), len(xs)), None, dtype=object)
    for c in grid:
        r = results.get(c.id)
        if r and r.get("status") != "failed":
            out[c.point["j"], c.point["i"]] = _hashable(label(r))
    gx = np.array([to_axis(cfg, "x", v) for v in xs])
    gy = np.array([to_axis(cfg, "y", v) for v in ys])
    return out, gx, gy


def anchors(cfg, grid, results, label):
    """[(x, y) axis coords, (dx, dy) unit direction across the boundary]: the given
    centres (LLMMAP_CENTRES), or LLMMAP_LINES points spread along the grid's boundary
    (midpoints of neighbouring grid points of two labels, evenly picked in grid order).
    The direction is the labels' gradient, smoothed over 3 x 3 grid points, at the grid
    point nearest the anchor (y where it vanishes)."""
    labels, gx, gy = grid_labels(cfg, grid, results, label)
    codes = {}
    num = np.array([[codes.setdefault(v, len(codes)) if v is not None else np.nan for v in row]
                    for row in labels], dtype=float)  # fmt: skip
    trainable = np.array([[float(dict(v).get("trainable", 0)) if v is not None else np.nan
                           for v in row] for row in labels])  # fmt: skip
    given = cfg.get("llmmap_centres") or []
    if given:
        pts = [
            (to_axis(cfg, "x", given[k]), to_axis(cfg, "y", given[k + 1]))
            for k in range(0, len(given), 2)
        ]
    else:
        pairs = []
        ny, nx = num.shape
        for j in range(ny):
            for i in range(nx):
                for dj, di in ((0, 1), (1, 0)):
                    if j + dj < ny and i + di < nx:
                        a, b = num[j, i], num[j + dj, i + di]
                        if np.isfinite(a) and np.isfinite(b) and a != b:
                            pairs.append(((gx[i] + gx[i + di]) / 2, (gy[j] + gy[j + dj]) / 2))
        if not pairs:
            raise ConfigError(
                "LLMMAP_CENTRES",
                "the map's grid shows no boundary to put a probe on",
                "widen the Sweep window, or give LLMMAP_CENTRES",
            )
        count = 1 if kind(cfg) == "zoom" else cfg.llmmap_lines
        pts = [
            pairs[min(len(pairs) - 1, int((k + 0.5) * len(pairs) / count))] for k in range(count)
        ]
    smooth = _smooth(np.nan_to_num(trainable, nan=0.5))
    gyy, gxx = np.gradient(smooth, gy, gx) if min(smooth.shape) > 1 else (smooth * 0, smooth * 0)
    out = []
    for x, y in pts:
        i, j = int(np.argmin(abs(gx - x))), int(np.argmin(abs(gy - y)))
        d = np.array([gxx[j, i], gyy[j, i]])
        norm = float(np.hypot(*d))
        out.append(((float(x), float(y)), tuple(d / norm) if norm > 0 else (0.0, 1.0)))
    return out


def _smooth(a):
    p = np.pad(a, 1, mode="edge")
    return sum(p[1 + dj : 1 + dj + a.shape[0], 1 + di : 1 + di + a.shape[1]]
               for dj in (-1, 0, 1) for di in (-1, 0, 1)) / 9  # fmt: skip


def _hashable(label):
    return tuple(sorted(label.items())) if isinstance(label, dict) else label


def transect_coord(anchor, direction, unit, u):
    (x, y), (dx, dy) = anchor, direction
    return x + u * unit * dx, y + u * unit * dy


def zoom_coord(anchor, unit, u, v):
    return anchor[0] + u * unit, anchor[1] + v * unit


def _values(cfg, coord):
    """Axis coords -> the knobs' values."""
    return [to_value(cfg, "x", coord[0]), to_value(cfg, "y", coord[1])]


def _at(u, v=None):
    return f"u{u:+d}" if v is None else f"u{u:+d}v{v:+d}"


# ---------------------------------------------------------------------------- stages


def split(cells):
    """(grid cells, probe cells) of a plan."""
    return [c for c in cells if "probe" not in c.point], [c for c in cells if "probe" in c.point]


def walk(cfg, cells, results, label):
    """The probe walked over the results so far: (geometry, walked dict)."""
    grid, probe = split(cells)
    by = {(c.point["probe"], c.point["at"]): c for c in probe}
    found = anchors(cfg, grid, results, label)

    def known(key):
        cell = by.get(key)
        r = results.get(cell.id) if cell else None
        if r is None or r.get("status") == "failed":
            raise KeyError(key)
        return _hashable(label(r))

    n, depths = cfg.llmmap_points, cfg.llmmap_depths
    if kind(cfg) == "transects":
        geo = {"anchors": found, "unit": transects.unit(cfg.llmmap_width, n, depths)}
        walked = transects.walk(len(found), n, depths, lambda k, u: known((f"t{k}", _at(u))))
    else:
        geo = {"anchors": found[:1], "unit": zoom_maps.unit(cfg.llmmap_width, n, depths)}
        walked = zoom_maps.walk(
            depths, n, lambda u, v: known(("z", _at(u, v))),
            levels=cfg.get("llmmap_zoom_refine_levels") or 0,
            guard=cfg.get("llmmap_zoom_guard") or 0,
            verify=cfg.get("llmmap_zoom_verify") or 0,
            band=cfg.get("llmmap_zoom_band") or 0,
        )  # fmt: skip
    return geo, walked


def next_stage(cfg, cells, results, label):
    """The probe cells to compute next (specs for kmatrix.stages), [] when done."""
    if kind(cfg) == "none":
        return []
    grid, probe = split(cells)
    geo, walked = walk(cfg, cells, results, label)
    base_point, base = grid_base(cfg, grid[0])
    for axis in ("x", "y"):
        name = cfg.get(f"sweep_{axis}_param")
        if isinstance(base.get(name), int) and not isinstance(base.get(name), bool):
            raise ConfigError(
                f"SWEEP_{axis.upper()}_PARAM",
                f"{name} is an integer: a probe narrower than 1 would run one value twice",
                "probe two float knobs (learning rates)",
            )
    planned = {(c.point["probe"], c.point["at"]) for c in probe}
    specs = []
    for key in walked["pending"]:
        if kind(cfg) == "transects":
            line, u = key
            probe_name, at = f"t{line}", _at(u)
            coord = transect_coord(*geo["anchors"][line], geo["unit"], u)
        else:
            probe_name, at = "z", _at(*key)
            coord = zoom_coord(geo["anchors"][0][0], geo["unit"], *key)
        if (probe_name, at) in planned:
            continue
        planned.add((probe_name, at))
        params = dict(base)
        apply_sweep(cfg, params, "x", to_value(cfg, "x", coord[0]))
        apply_sweep(cfg, params, "y", to_value(cfg, "y", coord[1]))
        params["grid_seeds"] = "shared"
        point = {**base_point, "probe": probe_name, "at": at}
        specs.append({"point": point, "params": params, "run_seed": grid[0].run_seed})
    return specs


# ---------------------------------------------------------------------------- summary


def fp32_depth(width, points, share=1.0):
    """The deepest depth (frame) whose step, `share` of it along the knob's axis, is still
    at least one fp32 spacing of the knob: past it, neighbours are the same fp32 rate."""
    step = width / (points - 1) * share
    if step <= 0:
        return None
    return max(-1, math.floor(math.log2(step / FP32_DECADES)))


def _loss(results, cell):
    r = results.get(cell.id) if cell else None
    m = (r or {}).get("metrics") or {}
    return m.get("final_train_loss")


def summarize(summary_dir, cells, results, cfg, label):
    """summary.json's "probe" entry and its figure (probe-<kind>.png)."""
    grid, probe = split(cells)
    done = [c for c in grid if results.get(c.id) and results[c.id].get("status") != "failed"]
    if len(done) < len(grid):
        return {"kind": kind(cfg), "note": f"the grid has {len(done)} of {len(grid)} results"}
    try:
        geo, walked = walk(cfg, cells, results, label)
    except ConfigError as e:
        return {"kind": kind(cfg), "note": str(e)}
    by = {(c.point["probe"], c.point["at"]): c for c in probe}
    computed = sum(1 for c in probe if results.get(c.id) and results[c.id]["status"] != "failed")
    n, width = cfg.llmmap_points, cfg.llmmap_width
    out = {
        "kind": kind(cfg),
        "points": n,
        "depths_planned": cfg.llmmap_depths,
        "width_decades": width,
        "grid_cells": len(grid),
        "probe_cells_computed": computed,
        "complete": not walked["pending"],
        "fp32_lr_resolution_decades": FP32_DECADES,
    }
    if kind(cfg) == "transects":
        out["lines"] = _transect_summary(cfg, geo, walked, by, results, n, width)
        _transect_figure(summary_dir / "probe-transects.png", cfg, out, walked)
    else:
        out.update(_zoom_summary(cfg, geo, walked, by, results, n, width))
        _zoom_figure(summary_dir / "probe-zoom.png", cfg, out, walked, n)
    return out


def _kinds(a, b):
    a, b = dict(a), dict(b)
    return [k for k in sorted(a) if a[k] != b.get(k)]


def _transect_summary(cfg, geo, walked, by, results, n, width):
    lines = []
    for k, line in enumerate(geo["anchors"]):
        (x, y), (dx, dy) = line
        seen, depths = set(), []
        for rec in walked["lines"][k]:
            us, labels, d = rec["positions"], rec["labels"], rec["depth"]
            losses = [_loss(results, by.get((f"t{k}", _at(u)))) for u in us]
            per = {"trainable": 0, "stable": 0}
            for m in rec["changes"]:
                for name in _kinds(labels[m], labels[m + 1]):
                    per[name] = per.get(name, 0) + 1
            w = width / 2**d
            depths.append(
                {
                    "depth": d,
                    "width_decades": w,
                    "step_decades": w / (n - 1),
                    "centre": _values(cfg, transect_coord(*line, geo["unit"], rec["centre"])),
                    "new_points": len(set(us) - seen),
                    "label_changes": len(rec["changes"]),
                    "trainable_changes": per["trainable"],
                    "stable_changes": per["stable"],
                    "identical_neighbours": sum(
                        1 for a, b in zip(losses, losses[1:]) if a is not None and a == b
                    ),
                    "status": rec["status"],
                }
            )
            seen |= set(us)
        share = max(abs(dx), abs(dy))
        lines.append(
            {
                "anchor": _values(cfg, (x, y)),
                "direction": [dx, dy],
                "depths": depths,
                "deepest_fp32_resolved_depth": fp32_depth(width, n, share),
            }
        )
    return lines


def _zoom_summary(cfg, geo, walked, by, results, n, width):
    method = "paper" if n >= 1025 else "pow2"
    frames, seen = [], set()
    slopes = {"trainable": [], "stable": []}
    images = []
    for f in walked["frames"]:
        k, centre, labels = f["frame"], f["centre"], f["labels"]
        img = {name: np.zeros((n, n)) for name in slopes}
        for (i, j), lab in labels.items():
            for name in slopes:
                img[name][j, i] = 1.0 if dict(lab).get(name) else -1.0
        counted = {name: dimension.box_count(img[name], method=method) for name in slopes}
        for name in slopes:
            slopes[name].append(counted[name]["slopes"])
        images.append(img["trainable"])
        at = lambda i, j: zoom_maps.frame_position(centre, k, cfg.llmmap_depths, n, i, j)  # noqa
        positions = {at(i, j) for (i, j) in labels if (i, j) not in f["inferred"]}
        frame = {
            "frame": k,
            "width_decades": width / 2**k,
            "step_decades": width / 2**k / (n - 1),
            "centre": _values(cfg, zoom_coord(geo["anchors"][0][0], geo["unit"], *centre)),
            "computed": len(positions),
            "computed_new": len(positions - seen),
            "shared_with_earlier_frames": len(positions & seen),
            "inferred": len(f["inferred"]),
            "trainable_ratio": float((img["trainable"] > 0).mean()),
            "stable_ratio": float((img["stable"] > 0).mean()),
            "verification": refine_report(f["walked"]),
            "status": f["status"],
        }
        for name in slopes:  # "trainable": the boundary between trainable and not
            sl = counted[name]["slopes"]
            prefix = "" if name == "trainable" else "stable_"
            frame[prefix + "boundary_pixels"] = counted[name]["edge_pixels"]
            frame[prefix + "dimension"] = float(np.median(sl)) if len(sl) >= 2 else None
            frame[prefix + "slopes"] = sl
            frame[prefix + "slope_spread_16_84"] = (
                [float(v) for v in np.percentile(sl, [16, 84])] if len(sl) >= 2 else None
            )
        frames.append(frame)
        seen |= positions
    walked["images"] = images
    out = {
        "frames": frames,
        "estimator": method,
        "deepest_fp32_resolved_frame": fp32_depth(width, n),
    }
    for name in slopes:
        prefix = "" if name == "trainable" else "stable_"
        pooled = dimension.pooled_median(slopes[name])
        lo, hi = dimension.bootstrap(slopes[name])
        out[prefix + "pooled_dimension"] = None if math.isnan(pooled) else pooled
        out[prefix + "pooled_spread_16_84"] = None if math.isnan(lo) else [lo, hi]
    return out


def refine_report(walked):
    from kmatrix import refine

    rows = refine.verification_report(walked)
    return [r for r in rows if r["verified"] or r["inferred"]]


# ---------------------------------------------------------------------------- figures

COLOURS = ["#000000", "#8B0000", "#00008B"]  # unstable, stable not trainable, trainable


def _code(lab):
    d = dict(lab)
    return 0 if not d.get("stable") else (2 if d.get("trainable") else 1)


def _save(fig, path):
    import matplotlib.pyplot as plt

    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def _transect_figure(path, cfg, out, walked):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    lines = walked["lines"]
    fig, axes = plt.subplots(
        1, len(lines) + 1, figsize=(3.2 * (len(lines) + 1), 3.6), squeeze=False
    )
    for k, recs in enumerate(lines):
        ax = axes[0][k]
        if recs:
            img = np.array([[_code(v) for v in r["labels"]] for r in recs])
            ax.imshow(img, aspect="auto", cmap=ListedColormap(COLOURS), vmin=0, vmax=2,
                      interpolation="nearest")  # fmt: skip
        a = out["lines"][k]["anchor"]
        ax.set_title(f"line {k} at ({a[0]:.3g}, {a[1]:.3g})", fontsize=8)
        ax.set_xlabel("point along the line (each row 2x narrower)", fontsize=7)
        ax.set_ylabel("depth", fontsize=7)
    ax = axes[0][-1]
    for k, line in enumerate(out["lines"]):
        ds = [d["depth"] for d in line["depths"]]
        ax.plot(ds, [d["label_changes"] for d in line["depths"]], "o-", label=f"line {k}")
    ax.set_xlabel("depth (width / 2^depth)")
    ax.set_ylabel("label changes")
    ax.set_yscale("symlog")
    ax.legend(fontsize=7)
    fig.suptitle(f"{cfg.name}: transects, {out['points']} points per depth, black unstable, "
                 "red not trainable, blue trainable", fontsize=8)  # fmt: skip
    fig.tight_layout()
    _save(fig, path)


def _zoom_figure(path, cfg, out, walked, n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    frames = walked["frames"]
    cols = max(1, len(frames)) + 1
    fig, axes = plt.subplots(1, cols, figsize=(2.6 * cols, 3.0), squeeze=False)
    for k, f in enumerate(frames):
        img = np.full((n, n), np.nan)
        for (i, j), lab in f["labels"].items():
            img[j, i] = _code(lab)
        ax = axes[0][k]
        ax.imshow(img, origin="lower", cmap=ListedColormap(COLOURS), vmin=0, vmax=2,
                  interpolation="nearest")  # fmt: skip
        fr = out["frames"][k]
        d = fr["dimension"]
        sd = fr["stable_dimension"]
        ax.set_title(f"frame {k}: {fr['width_decades']:.3g} decades\nD {'-' if d is None else f'{d:.2f}'}"
                     f" (stable {'-' if sd is None else f'{sd:.2f}'})", fontsize=7)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
    if walked.get("images"):
        dimension.plot_box_counting(walked["images"], ax=axes[0][-1], method=out["estimator"])
    d, sd = out["pooled_dimension"], out["stable_pooled_dimension"]
    fig.suptitle(
        f"{cfg.name}: zoom, black unstable, red not trainable, blue trainable; pooled D "
        f"trainable {'-' if d is None else f'{d:.3f}'}, stable {'-' if sd is None else f'{sd:.3f}'}",
        fontsize=8,
    )
    fig.tight_layout()
    _save(fig, path)
