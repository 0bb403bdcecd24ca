"""The summary of the paper's experiments: per path the pooled box-counting dimension with
its spread, the estimate over stretches of depth, slopes against depth, sheets of the
frames, and the frames at the depths of the paper's panels."""

from pathlib import Path

import numpy as np

from fractal import dimension, figures, zoom
from kmatrix.results import cell_file


def summarize(summary_dir, cells, results, cfg):
    summary_dir = Path(summary_dir)
    root = summary_dir.parent
    if not any(c.params.get("kind") in ("centre", "frame") for c in cells):
        return _summarize_images(summary_dir, root, cells, results, cfg)
    frames = [c for c in cells if c.params.get("kind") == "frame"]
    frame_results = {c.id: results.get(c.id) for c in frames}
    groups = {}
    for c in frames:
        key = "/".join(str(c.point[n]) for n in c.point if n != "frame")
        groups.setdefault(key, []).append(c)
    out, panels, sheets, overview = {}, [], {}, []
    for key, group in groups.items():
        group.sort(key=lambda c: c.params["frame"])
        p = group[0].params
        done = [(c, frame_results.get(c.id)) for c in group]
        done = [(c, r) for c, r in done if r and r.get("status") == "ok"]
        slopes = [r.get("slopes") or [] for _, r in done]
        lo, hi = dimension.bootstrap(slopes)
        est = dimension.pooled_median(slopes)
        # the frames the dimension can be taken from: neither blank nor, by the noise
        # test, the arithmetic's (a pooled number over noise frames measures the noise)
        resolved = [
            r.get("slopes") or [] for _, r in done if not (r.get("blank") or r.get("arithmetic"))
        ]
        res_lo, res_hi = dimension.bootstrap(resolved)
        runtime = sum((r.get("metrics") or {}).get("runtime_s") or 0 for _, r in done)
        out[key] = {
            "experiment": p["experiment"],
            "path": p["path"],
            "dimension": _finite(est),
            "spread_16_84": [_finite(lo), _finite(hi)],
            "dimension_resolved": _finite(dimension.pooled_median(resolved)),
            "spread_resolved_16_84": [_finite(res_lo), _finite(res_hi)],
            "frames_resolved": len(resolved),
            "stretches_of_8_frames": [
                [a, b, _finite(d)] for a, b, d in dimension.stretches(slopes)
            ],
            "frames_done": len(done),
            "frames": p["frames"],
            "resolution": p["resolution"],
            "steps": p["steps"],
            "centre": p["centre"],
            "widest_width": p["width0"],
            "deepest_width": p["deepest_width"],
            "blank_frames": [r["frame"] for _, r in done if r.get("blank")],
            # frames whose structure the noise test calls arithmetic (zoom.noise_test):
            # by the 1/8-pixel ratio, or with FRACTAL_NOISE_FALL by the fall of the flips
            "noise_test": "fall" if p.get("noise_fall") else "ratio",
            "arithmetic_frames": [r["frame"] for _, r in done if r.get("arithmetic")],
            # of those, the frames whose grid itself is below the float64 floor (merged
            # lines or rounded pixel positions); the others are only redrawn by a shift of
            # a fraction of a pixel (None: results from before the noise test said why)
            "grid_floor_frames": _grid_floor_frames(done),
            "noise_ratio_max": max(
                [(r.get("noise") or {}).get("noise_ratio") or 0 for _, r in done], default=None
            ),
            "frame_dimensions": {
                r["frame"]: _finite(np.median(r["slopes"])) if r.get("slopes") else None
                for _, r in done
            },
            "isolated_fraction_max": max(
                [(r.get("metrics") or {}).get("isolated_fraction") or 0 for _, r in done],
                default=None,
            ),
            "reused_pixels": sum(
                (r.get("metrics") or {}).get("reused_pixels") or 0 for _, r in done
            ),
            "runtime_s": runtime,
        }
        show = p["anchor_frame"] if p["path"] != "auto" else 0  # the overview's and panel's
        on_sheet = figures.sheet_frames(r["frame"] for _, r in done)
        loaded = {}  # only the frames a figure draws: a path's pixels can be large
        for c, r in done:
            path = cell_file(root, c.id, r.get("values") or "frame.npy")  # never leaves it
            if r["frame"] in {*on_sheet, show} and path is not None and path.is_file():
                loaded[r["frame"]] = (np.load(path), r["window"])
        sheets[key] = (p, {k: loaded[k] for k in on_sheet if k in loaded}, out[key])
        values, window = loaded.get(show, (None, None))
        overview.append(
            {"name": f"{key}, frame {show}", "values": values, "window": window or p["window"],
             "axes": p["axes"], "dimension": out[key]["dimension"],
             "spread": out[key]["spread_16_84"]}
        )  # fmt: skip
        if p["path"] == "paper":
            j = p["anchor_frame"]
            panels.append(
                {
                    "name": p["experiment"],
                    "values": loaded.get(j, (None,))[0],
                    "window": loaded.get(j, (None, p["window"]))[1],
                    "axes": p["axes"],
                    "panel": zoom.PAPER_PANELS[p["experiment"]],
                    "frame": j,
                }
            )
    title = f"{cfg.get('name', '')} [{cfg.get('profile', '')}]"
    figures.summary_figure(overview, summary_dir / "fractal_summary.png", f"{title}: D pooled")
    figures.slopes_vs_depth(sheets, summary_dir / "slopes_vs_depth.png", title)
    for key, (p, loaded, stats) in sheets.items():
        name = key.replace("/", "-")
        figures.frame_sheet(p, loaded, stats, summary_dir / f"frames-{name}.png", title)
    if panels:
        figures.paper_panels(panels, summary_dir / "paper_panels.png", title)
    return out


def _summarize_images(summary_dir, root, cells, results, cfg):
    several_seeds = len({c.point.get("seed") for c in cells}) > 1
    panels, out = [], {}
    for cell in cells:
        p, r = cell.params, results.get(cell.id)
        key = cell.id if several_seeds else p["experiment"]
        panel = {"name": key, "values": None, "window": p["window"], "axes": p["axes"]}
        if r and r.get("status") == "ok" and r.get("frames"):
            first = r["frames"][0]
            path = cell_file(root, cell.id, first.get("values"))
            if path is not None and path.is_file():
                panel["values"] = np.load(path)
            converged = (r.get("metrics") or {}).get("converged_fraction")
            panel["converged_fraction"] = converged  # one frame: no dimension
            out[key] = {
                "converged_fraction": converged,
                "resolution": p["resolution"],
                "steps": p["steps"],
                "frames": len(r["frames"]),
                "window": p["window"],
                "pixel_steps_per_s": (r.get("metrics") or {}).get("pixel_steps_per_s"),
            }
        panels.append(panel)
    title = f"{cfg.get('name', '')} [{cfg.get('profile', '')}]: one image each"
    figures.summary_figure(panels, summary_dir / "fractal_summary.png", title)
    return out


def _finite(x):
    return float(x) if x is not None and np.isfinite(x) else None


def _grid_floor_frames(done):
    """The arithmetic frames whose noise test names the grid's own rounding, or None when
    a frame's noise test predates its causes."""
    noisy = [r for _, r in done if r.get("arithmetic")]
    if any("causes" not in (r.get("noise") or {}) for r in noisy):
        return None
    return [r["frame"] for r in noisy if set(zoom.GRID_CAUSES) & set(r["noise"]["causes"])]
