"""The paper's experiments as cells: images, zoom centres and zoom frames.

With FRACTAL_ZOOM_FRAMES = 1 a cell is one experiment's image of the opening window.
With more, the paper's protocol runs in two stages of cells:

- stage 0 (plan): one "centre" cell per experiment and zoom path (paper, auto, given),
  which finds the centre of the path's frames: the given centre, followed down the
  boundary by a cheap low-resolution descent where frames are deeper than it is known
  (fractal.zoom.descend), recorded in its result;
- the next stage (next_stage, once the centres are known): one "frame" cell per frame,
  deepest first and interleaved across paths, so that a frame usually finds the next deeper
  frame's result on disk and copies the quarter of its pixels the two share. Frames are
  independent cells, so they spread over every GPU.

The summary pools each path's box-counting slopes into the dimension, with a bootstrap
spread over frames, the estimate over stretches of depth, slopes against depth, sheets of
the frames, and the frames that correspond to the paper's panels.
"""

import math
from pathlib import Path

import numpy as np

from fractal import dimension, figures, notebook, zoom
from fractal.common import EXPERIMENTS, TAIL
from kmatrix.cell import Cell, cell_id
from kmatrix.errors import ConfigError
from kmatrix.results import read_result, write_atomic, write_json_atomic


def _engine():
    # imported lazily: the engine pulls in torch, which planning and linting never need
    from fractal import engine

    return engine


def zooming(cfg):
    return cfg.get("fractal_zoom_frames", 1) > 1


def experiment_steps(cfg, name):
    if cfg.get("fractal_steps_per_experiment"):
        return cfg.get(f"fractal_steps_{name}")
    return cfg.fractal_steps


def _steps_symbol(cfg, name):
    if cfg.get("fractal_steps_per_experiment"):
        return f"FRACTAL_STEPS_{name.upper()}"
    return "FRACTAL_STEPS"


def _opening(cfg):
    return [cfg.fractal_x_min, cfg.fractal_x_max, cfg.fractal_y_min, cfg.fractal_y_max]


def data_path(cfg, name):
    """The .npz file of FRACTAL_DATA_FILE for an experiment, or None."""
    if cfg.get("fractal_data") != "file":
        return None
    return cfg.get("fractal_data_file_path", "").replace("{experiment}", name)


# ----------------------------------------------------------------------------------------
# planning


def axes(cfg):
    out = [("experiment", list(cfg.fractal_experiments))]
    if zooming(cfg):
        out.append(("path", list(cfg.get("fractal_paths") or [])))
    seeds = list(cfg.get("seeds") or [0])
    if len(seeds) > 1:
        out.append(("seed", seeds))
    return out


def validate(cfg):
    experiments = list(cfg.get("fractal_experiments") or [])
    if not experiments:
        raise ConfigError("FRACTAL_EXPERIMENT_TANH", "no experiment selected", "select one or more")
    for name in experiments:
        if name not in EXPERIMENTS:
            raise ConfigError(f"FRACTAL_EXPERIMENT_{name.upper()}", "unknown experiment")
    for lo, hi in (("fractal_x_min", "fractal_x_max"), ("fractal_y_min", "fractal_y_max")):
        a, b = cfg.get(lo), cfg.get(hi)
        if a is None or b is None:
            raise ConfigError((lo if a is None else hi).upper(), "empty", "give a log10 value")
        if not a < b:
            raise ConfigError(
                lo.upper(), f"min {a} >= max {b}", f"make it smaller than {hi.upper()}"
            )
    for name in experiments:
        steps = experiment_steps(cfg, name)
        if steps is None or cfg.get("fractal_tail", TAIL) > steps:
            raise ConfigError(
                _steps_symbol(cfg, name), f"{steps} steps < FRACTAL_TAIL", "train longer"
            )
    n = cfg.fractal_resolution
    if cfg.get("fractal_dimension", "paper") == "paper" and n < 32:
        raise ConfigError(
            "FRACTAL_DIMENSION_PAPER",
            f"{n} pixels per side leave porespy's boxes (10 px to the side) no scales",
            "choose FRACTAL_DIMENSION_POW2, or FRACTAL_RESOLUTION >= 32",
        )
    _validate_data(cfg, experiments)
    if zooming(cfg):
        _validate_zoom(cfg)


def _validate_data(cfg, experiments):
    source = cfg.get("fractal_data", "seeded")
    if source == "notebook" and "minibatch" in experiments:
        steps = experiment_steps(cfg, "minibatch")
        if steps != notebook.MINIBATCH_STEPS:
            raise ConfigError(
                _steps_symbol(cfg, "minibatch"),
                f"{steps} steps, but the notebook's minibatch table is for "
                f"{notebook.MINIBATCH_STEPS} (it depends on the step count)",
                f"set {notebook.MINIBATCH_STEPS}, or use FRACTAL_DATA_SEEDED",
            )
        if cfg.get("fractal_minibatch_size", 16) != notebook.MINIBATCH_SIZE:
            raise ConfigError(
                "FRACTAL_MINIBATCH_SIZE",
                "the notebook's minibatch table has 16 indices per step",
                "set 16, or use FRACTAL_DATA_SEEDED",
            )
    if source == "file":
        for name in experiments:
            path = Path(data_path(cfg, name))
            if not path.is_file():
                raise ConfigError(
                    "FRACTAL_DATA_FILE_PATH",
                    f"{path} (experiment {name}) not found",
                    "give an .npz with X, Y, W0, W1 (and idx); see docs/fractal.md",
                )


def _validate_zoom(cfg):
    paths = list(cfg.get("fractal_paths") or [])
    if not paths:
        raise ConfigError("FRACTAL_PATH_PAPER", "no zoom path selected", "select paper or auto")
    outer = cfg.get("fractal_zoom_outer_width")
    if outer is None or not outer > 0:
        raise ConfigError("FRACTAL_ZOOM_OUTER_WIDTH", f"{outer} is not > 0", "the paper: 6")
    point = [cfg.get(f"fractal_zoom_point_{k}") for k in ("x", "y", "width")]
    if "given" in paths:
        for k, v in zip(("X", "Y", "WIDTH"), point):
            if v is None:
                raise ConfigError(f"FRACTAL_ZOOM_POINT_{k}", "empty", "FRACTAL_PATH_GIVEN needs it")
        if not point[2] > 0:
            raise ConfigError("FRACTAL_ZOOM_POINT_WIDTH", f"{point[2]} is not > 0", "decades")


def _start(cfg, name, path):
    """(centre, width, prefer): where a path's descent starts, and how it moves."""
    if path == "paper":
        x, y, width, _ = zoom.PAPER_PANELS[name]
        return [x, y], width, "near"
    if path == "given":
        return (
            [cfg.fractal_zoom_point_x, cfg.fractal_zoom_point_y],
            cfg.fractal_zoom_point_width,
            "near",
        )
    x0, x1, y0, y1 = _opening(cfg)
    return [(x0 + x1) / 2, (y0 + y1) / 2], max(x1 - x0, y1 - y0), "dense"


def cell_params(cfg, point):
    name = point["experiment"]
    p = {
        "engine": "mlp",
        "kind": "image",
        "experiment": name,
        **EXPERIMENTS[name],  # nonlinearity, axes, batch, n_points
        "window": _opening(cfg),
        "resolution": cfg.fractal_resolution,
        "steps": experiment_steps(cfg, name),
        "dtype": cfg.get("fractal_dtype", "float64"),
        "backend": cfg.get("fractal_backend", "auto"),
        "minibatch_size": cfg.get("fractal_minibatch_size", 16),
        "tail": cfg.get("fractal_tail", TAIL),
        "seed": point.get("seed", (cfg.get("seeds") or [0])[0]),
        "data": cfg.get("fractal_data", "seeded"),
        "data_path": data_path(cfg, name),
        "dimension": cfg.get("fractal_dimension", "paper"),
        "early_exit": cfg.get("fractal_exit", "nonfinite"),
        "exit_verify": bool(cfg.get("fractal_exit_verify")),
        "reuse": bool(cfg.get("fractal_reuse_pixels", True)),
    }
    if not zooming(cfg):
        return p
    path = point["path"]
    centre, width, prefer = _start(cfg, name, path)
    width0, anchor_frame = zoom.ladder(width, cfg.fractal_zoom_outer_width)
    frames = cfg.fractal_zoom_frames
    p.update(
        kind="centre",
        path=path,
        frames=frames,
        start_centre=[float(c) for c in centre],
        start_width=float(width),
        prefer=prefer,
        width0=width0,
        anchor_frame=anchor_frame,  # the frame index of the start width (a panel's)
        deepest_width=math.ldexp(width0, -(frames - 1)),
        descent_resolution=cfg.get("fractal_descent_resolution", 65),
    )
    return p


def next_stage(cfg, cells, results):
    """Once every centre is known: every frame of every path whose centre cell finished,
    deepest first and interleaved across paths, as {"point", "params", "run_seed"}. After
    the frames (or without zoom): none."""
    if not zooming(cfg) or any(c.params.get("kind") == "frame" for c in cells):
        return []
    centres = [c for c in cells if c.params.get("kind") == "centre"]
    out = []
    for k in reversed(range(cfg.fractal_zoom_frames)):
        for c in centres:
            r = results.get(c.id)
            if not r or r.get("status") != "ok" or "centre" not in r:
                continue
            deeper = {**c.point, "frame": k + 1}
            params = {
                **c.params,
                "kind": "frame",
                "frame": k,
                "centre": r["centre"],
                "centre_cell": c.id,
                "reuse_from": cell_id(deeper, list(deeper)) if k + 1 < c.params["frames"] else None,
            }
            out.append({"point": {**c.point, "frame": k}, "params": params, "run_seed": c.run_seed})
    return out


def frame_cells(cfg, cells, results):
    """The frame cells: those among `cells`, or, where only the centres are there, those
    next_stage plans from their results (ids as the core builds them)."""
    frames = [c for c in cells if c.params.get("kind") == "frame"]
    if frames or not zooming(cfg):
        return frames
    specs = next_stage(cfg, cells, results)
    workload = cells[0].workload if cells else "fractal.workload"
    return [
        Cell(cell_id(s["point"], list(s["point"])), len(cells) + i, workload, s["point"],
             s["run_seed"], s["params"])
        for i, s in enumerate(specs)
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------
# running


def problem_data(p, cache=None):
    """The arrays that replace the seeded draw (None for FRACTAL_DATA_SEEDED)."""
    if p.get("data", "seeded") == "seeded":
        return None
    key = ("fractal-data", p["data"], p.get("data_path"), p["n_points"], p["batch"])
    if cache is not None and key in cache:
        return cache[key]
    if p["data"] == "notebook":
        data = notebook.problem_arrays(p["n_points"], p["batch"])
    else:
        data = _engine().load_data(p["data_path"])
    if cache is not None:
        cache[key] = data
    return data


def compute(p, device, cache=None, **kw):
    """compute_image with the cell's experiment, steps, data and engine settings; `kw`
    gives the grid (window and resolution, or grid) and may override the rest."""
    args = dict(
        nonlinearity=p["nonlinearity"],
        axes=p["axes"],
        batch=p["batch"],
        n_points=p["n_points"],
        steps=p["steps"],
        seed=p["seed"],
        device=device,
        dtype=p["dtype"],
        minibatch_size=p["minibatch_size"],
        backend=p["backend"],
        tail=p["tail"],
        data=problem_data(p, cache),
        early_exit=p.get("early_exit", "nonfinite"),
    )
    args.update(kw)
    return _engine().compute_image(**args)


def find_centre(p, device, cache=None, log=None, resolution=None, steps=None):
    """The centre of a path's frames: the start, followed by descent where frames are
    deeper than the start width. Returns descend()'s dict."""
    n = resolution or p["descent_resolution"]
    extra = {} if steps is None else {"steps": steps}

    def image(centre, width):
        grid = zoom.frame_grid(centre, width, 0, n)
        return compute(p, device, cache, grid=grid, **extra)["values"]

    return zoom.descend(
        image, p["start_centre"], p["start_width"], p["deepest_width"], n, p["prefer"], log
    )


def frame_values(p, device, out_dir=None, cache=None, log=None, resolution=None, steps=None):
    """Computes frame p["frame"] of a path: (result, reused pixel count, verification)."""
    n = resolution or p["resolution"]
    extra = {} if steps is None else {"steps": steps}
    grid = zoom.frame_grid(p["centre"], p["width0"], p["frame"], n)
    known, reused = None, 0
    if p.get("reuse") and p.get("reuse_from") and out_dir is not None and n % 2 == 1:
        deeper = Path(out_dir).parent / p["reuse_from"] / "frame.npy"
        if deeper.exists():
            values = np.load(deeper)
            if values.shape == (n, n):
                known = zoom.known_from_deeper(values)
                reused = int(known[0].sum())
    res = compute(p, device, cache, grid=grid, known=known, **extra)
    verify = None
    if p.get("exit_verify") and p.get("early_exit") == "threshold":
        exact = compute(p, device, cache, grid=grid, known=known, early_exit="nonfinite", **extra)
        a, b = exact["values"], res["values"]
        verify = {
            "sign_changed": int(((a < 0) != (b < 0)).sum()),
            "value_changed": int((a != b).sum()),
            "pixel_steps_saved": exact["pixel_steps"] - res["pixel_steps"],
        }
        if log:
            log(f"threshold exit check: {verify}")
        res = exact  # keep the exact image
    return res, reused, verify


def _save_npy(path, array):
    return write_atomic(path, lambda f: np.save(f, array))


def run(cell, ctx):
    Path(ctx.out_dir).mkdir(parents=True, exist_ok=True)
    kind = cell.params["kind"]
    if kind == "centre":
        return run_centre(cell, ctx)
    if kind == "frame":
        return run_frame(cell, ctx)
    return run_image(cell, ctx, f"{cell.params['experiment']} [{ctx.profile}]")


def _meta_common(p, res):
    return {
        "runtime_s": res["runtime_s"],
        "pixel_steps_per_s": res["pixel_steps_per_s"],
        "pixel_steps_trained": res["pixel_steps"],
        "trained_pixels": res["trained_pixels"],
        "backend": res["backend"],
        "device": res["device"],
        "dtype": res["dtype"],
        "early_exit": res["early_exit"],
    }


def run_centre(cell, ctx):
    p = cell.params
    found = find_centre(p, _device(ctx), ctx.cache, ctx.log)
    n_desc = len(found["levels"])
    ctx.log(f"{p['experiment']}/{p['path']}: centre {found['centre']} after {n_desc} images")
    out = {
        "centre": found["centre"],
        "width0": p["width0"],
        "deepest_width": p["deepest_width"],
        "descent": found["levels"],
        "data_digest": _digest(p, ctx.cache),
    }
    write_json_atomic(Path(ctx.out_dir) / "centre.json", out)
    statuses = [lv["status"] for lv in found["levels"]]
    return {
        "status": "ok",
        "metrics": {
            "descent_images": n_desc,
            "descent_not_ok": sum(s != "ok" for s in statuses),
        },
        **out,
    }


def run_frame(cell, ctx):
    p = cell.params
    out = Path(ctx.out_dir)
    res, reused, verify = frame_values(p, _device(ctx), out, ctx.cache, ctx.log)
    v = res["values"]
    _save_npy(out / "frame.npy", v)
    window = zoom.frame_window(p["centre"], p["width0"], p["frame"], v.shape[0])
    figures.save_frame_png(v, out / "frame.png")
    bc = dimension.box_count(v, method=p["dimension"])
    stats = zoom.frame_stats(v)
    width = math.ldexp(p["width0"], -p["frame"])
    meta = {
        "experiment": p["experiment"],
        "path": p["path"],
        "frame": p["frame"],
        "width": width,
        "centre": p["centre"],
        "window": window,
        "resolution": p["resolution"],
        "steps": p["steps"],
        "reused_pixels": reused,
        "converged_fraction": float(np.mean(v < 0)),
        "slopes": bc["slopes"],
        "sizes": bc["sizes"],
        "counts": bc["counts"],
        "edge_pixels": bc["edge_pixels"],
        **stats,
        **_meta_common(p, res),
        "verify": verify,
        "data_digest": _digest(p, ctx.cache),
    }
    write_json_atomic(out / "meta.json", meta)
    slopes = bc["slopes"]
    return {
        "status": "ok",
        "metrics": {
            "frame_dimension": float(np.median(slopes)) if slopes else None,
            "converged_fraction": meta["converged_fraction"],
            "edge_fraction": stats["edge_fraction"],
            "isolated_fraction": stats["isolated_fraction"],
            "reused_pixels": reused,
            "pixel_steps_per_s": res["pixel_steps_per_s"],
            "runtime_s": res["runtime_s"],
        },
        **{k: meta[k] for k in ("frame", "width", "window", "slopes", "blank", "speckled")},
        "verify": verify,
        "values": "frame.npy",
        "backend": res["backend"],
        "device": res["device"],
    }


def run_image(cell, ctx, title):
    p = cell.params
    out = Path(ctx.out_dir)
    res = compute(p, _device(ctx), ctx.cache, window=tuple(p["window"]), resolution=p["resolution"])
    v = res["values"]
    _save_npy(out / "frame_00.npy", v)
    figures.save_image(v, p["window"], out / "frame_00.png", p["axes"], f"{title} frame 0")
    bc = dimension.box_count(v, method=p["dimension"])
    dim = float(np.median(bc["slopes"])) if bc["slopes"] else None
    dim_text = f"{dim:.3f}" if dim is not None else "n/a"
    dimension.plot_box_counting(
        [v], out / "box_counting.png", f"{title}: D = {dim_text}", method=p["dimension"]
    )
    frame = {
        "index": 0,
        "window": p["window"],
        "values": "frame_00.npy",
        "png": "frame_00.png",
        "converged_fraction": float(np.mean(v < 0)),
        "dimension": dim,
        "slopes": bc["slopes"],
        "edge_pixels": bc["edge_pixels"],
        **_meta_common(p, res),
    }
    meta = {
        "experiment": p["experiment"],
        "window": p["window"],
        "resolution": p["resolution"],
        "steps": p["steps"],
        "fractal_dimension": dim,
        "profile": ctx.profile,
        "data_digest": _digest(p, ctx.cache),
        **_meta_common(p, res),
        "frames": [frame],
    }
    write_json_atomic(out / "meta.json", meta)
    return {
        "status": "ok",
        "metrics": {
            "fractal_dimension": dim,
            "converged_fraction": frame["converged_fraction"],
            "pixel_steps_per_s": res["pixel_steps_per_s"],
            "runtime_s": res["runtime_s"],
        },
        "frames": [frame],
        "backend": res["backend"],
        "device": res["device"],
    }


def _device(ctx):
    return "cuda" if str(ctx.device).startswith("cuda") else "cpu"


def _digest(p, cache):
    data = problem_data(p, cache)
    return None if data is None else notebook.digest(data)


def dry_run(cell, ctx):
    """Tiny versions on the CPU: the image, the descent (two images) and one frame."""
    p = {**cell.params, "backend": "torch"}
    if p["kind"] == "image":
        res = compute(p, "cpu", ctx.cache, window=tuple(p["window"]), resolution=4, steps=5)
        values = [res["values"]]
    else:
        start = math.ldexp(p["deepest_width"], 2)  # two descent images
        q = {**p, "start_width": max(start, p["deepest_width"]), "descent_resolution": 9}
        found = find_centre(q, "cpu", ctx.cache, resolution=9, steps=5)
        q = {**p, "frame": 0, "centre": found["centre"], "reuse_from": None}
        values = [frame_values(q, "cpu", None, ctx.cache, resolution=9, steps=5)[0]["values"]]
    for v in values:
        if not np.isfinite(v).all():
            raise RuntimeError("engine dry run gave non-finite values")
        figures.paper_colors(v)
        dimension.box_count(v, method="pow2")


def probe(cell, ctx):
    """`make estimate`: time a small image on this device and scale to a stage-0 cell's
    work: an image, or a whole zoom path (its frames; the descent is small beside them)."""
    p = cell.params
    res, steps = min(p["resolution"], 128), min(p["steps"], 100)
    window = tuple(p["window"])
    compute(p, ctx.device, ctx.cache, window=window, resolution=16, steps=2)  # warm up
    out = compute(p, ctx.device, ctx.cache, window=window, resolution=res, steps=steps)
    frames = p.get("frames", 1) if p["kind"] != "image" else 1
    work = p["resolution"] ** 2 * p["steps"] * frames
    return {
        "unit": "pixel-steps",
        "per_cell": work,
        "seconds_per_cell": work / out["pixel_steps_per_s"],
        "probe_seconds": out["runtime_s"],
    }


# ----------------------------------------------------------------------------------------
# summary


def summarize(summary_dir, cells, results, cfg):
    summary_dir = Path(summary_dir)
    root = summary_dir.parent
    if not zooming(cfg):
        return _summarize_images(summary_dir, root, cells, results, cfg)
    frames = frame_cells(cfg, cells, results)
    frame_results = {c.id: results.get(c.id) or read_result(root, c.id) for c in frames}
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
        runtime = sum((r.get("metrics") or {}).get("runtime_s") or 0 for _, r in done)
        out[key] = {
            "experiment": p["experiment"],
            "path": p["path"],
            "dimension": _finite(est),
            "spread_16_84": [_finite(lo), _finite(hi)],
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
            "speckled_frames": [r["frame"] for _, r in done if r.get("speckled")],
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
        loaded = {}
        for c, r in done:
            path = root / "cells" / c.id / (r.get("values") or "frame.npy")
            if path.exists():
                loaded[r["frame"]] = (np.load(path), r["window"])
        sheets[key] = (p, loaded, out[key])
        show = p["anchor_frame"] if p["path"] != "auto" else 0
        values, window = loaded.get(show, (None, None))
        overview.append(
            {"name": f"{key}, frame {show}", "values": values, "window": window or p["window"],
             "axes": p["axes"], "dimension": out[key]["dimension"]}
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
            path = root / "cells" / cell.id / first["values"]
            if path.exists():
                panel["values"] = np.load(path)
            dim = (r.get("metrics") or {}).get("fractal_dimension")
            panel["dimension"] = dim
            out[key] = {
                "dimension": dim,
                "resolution": p["resolution"],
                "steps": p["steps"],
                "frames": len(r["frames"]),
                "window": p["window"],
                "pixel_steps_per_s": (r.get("metrics") or {}).get("pixel_steps_per_s"),
            }
        panels.append(panel)
    title = f"{cfg.get('name', '')} [{cfg.get('profile', '')}]: fractal dimension"
    figures.summary_figure(panels, summary_dir / "fractal_summary.png", title)
    return out


def _finite(x):
    return float(x) if x is not None and np.isfinite(x) else None
