"""Running the paper's cells: an image, a zoom path's centre (the descent) or one frame
(reusing the quarter of its pixels the next deeper frame shares), their dry runs and the
probe for `make estimate`. Planning is fractal/paper.py."""

import math
import time
from pathlib import Path

import numpy as np

from fractal import dimension, figures, notebook, zoom
from kmatrix.cell import Cell
from kmatrix.results import cell_file
from kmatrix.files import write_atomic, write_json_atomic


def _engine():
    # imported lazily: the engine pulls in torch
    from fractal import engine

    return engine


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
        from fractal.problem import load_data  # imports torch: only when a cell runs

        data = load_data(p["data_path"])
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
        optimizer=p.get("optimizer", "gd"),
        optim=p.get("optim"),
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
        image,
        p["start_centre"],
        p["start_width"],
        p["deepest_width"],
        n,
        p["prefer"],
        log,
        fall=bool(p.get("noise_fall")),
        lookahead=int(p.get("lookahead", 0)),
    )


def frame_values(p, device, root=None, cache=None, log=None, resolution=None, steps=None):
    """Computes frame p["frame"] of a path: (result, reused pixel count, verification);
    the result carries the frame's noise test ("noise", noise_check). `root` (the results
    directory, RunContext.root) holds the deeper frame it reuses."""
    n = resolution or p["resolution"]
    extra = {} if steps is None else {"steps": steps}
    grid = zoom.frame_grid(p["centre"], p["width0"], p["frame"], n)
    known, reused = None, 0
    if p.get("reuse") and p.get("reuse_from") and root is not None and n % 2 == 1:
        deeper = cell_file(root, p["reuse_from"], "frame.npy")
        if deeper is not None and deeper.is_file():
            values = np.load(deeper)
            if values.shape == (n, n):
                known = zoom.known_from_deeper(values)
                reused = int(known[0].sum())
    res = compute(p, device, cache, grid=grid, known=known, **extra)
    res["noise"] = noise_check(p, device, res["values"], grid, cache, **extra)
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
        res = {**exact, "noise": res["noise"]}  # keep the exact image
    return res, reused, verify


def noise_block(n):
    """The rows and columns of an n x n frame that its noise test recomputes: the middle
    quarter of the width (65 of 257 pixels), around the centre the path follows."""
    h = (n - 1) // 2
    r = max(1, h // 4)
    return slice(h - r, h + r + 1)


def noise_check(p, device, values, grid, cache=None, **kw):
    """zoom.noise_test of a frame: its middle block recomputed on the grid shifted by
    zoom.NOISE_SHIFT of a pixel (about 1/16 of the frame's pixels), and the float64
    floor of its whole grid; with FRACTAL_NOISE_FALL the block once more on the grid
    shifted by zoom.deep_shift() of a pixel, for the fall test."""
    block = noise_block(values.shape[0])
    gx, gy = np.asarray(grid[0])[block], np.asarray(grid[1])[block]
    shifted = compute(p, device, cache, grid=zoom.shifted_grid(gx, gy), **kw)["values"]
    jitter = max(zoom.grid_jitter(grid[0]), zoom.grid_jitter(grid[1]))
    px = zoom.deep_shift(jitter) if p.get("noise_fall") else None
    deep = None
    if px is not None:
        deep = compute(p, device, cache, grid=zoom.shifted_grid(gx, gy, px), **kw)["values"]
    return zoom.noise_test(values[block, block], shifted, jitter, deep, px)


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
        **{k: res[k] for k in ("optimizer", "optim") if k in res},
    }


def run_centre(cell, ctx):
    p = cell.params
    found = find_centre(p, _device(ctx), ctx.cache, ctx.log)
    n_desc = found["images"]
    ctx.log(
        f"{p['experiment']}/{p['path']}: centre {found['centre']} after {n_desc} images "
        f"({found['backtracks']} back-ups)"
    )
    out = {
        "centre": found["centre"],
        "descent_rule": p["prefer"],  # "near" (the paper's, given) or "structure" (auto)
        "descent_start_width": p["start_width"],
        "width0": p["width0"],
        "deepest_width": p["deepest_width"],
        "descent": found["levels"],
        "images": n_desc,
        "backtracks": found["backtracks"],
        "data_digest": _digest(p, ctx.cache),
    }
    write_json_atomic(Path(ctx.out_dir) / "centre.json", out)
    statuses = [lv["status"] for lv in found["levels"]]
    return {
        "status": "ok",
        "metrics": {
            "descent_images": n_desc,
            "descent_backtracks": found["backtracks"],
            "descent_not_ok": sum(s != "ok" for s in statuses),
        },
        **out,
    }


def run_frame(cell, ctx):
    p = cell.params
    out = Path(ctx.out_dir)
    res, reused, verify = frame_values(p, _device(ctx), ctx.root, ctx.cache, ctx.log)
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
        "noise": res["noise"],
        "arithmetic": res["noise"]["arithmetic"],
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
            "noise_ratio": res["noise"]["noise_ratio"],
            "reused_pixels": reused,
            "pixel_steps_per_s": res["pixel_steps_per_s"],
            "runtime_s": res["runtime_s"],
        },
        **{
            k: meta[k]
            for k in ("frame", "width", "window", "slopes", "blank", "arithmetic", "noise")
        },
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
    converged = float(np.mean(v < 0))
    # one frame has no dimension (a wide frame reads about 1 whatever the boundary): its
    # title says what it shows; the box counts are kept, titled as what they are
    size = f"{v.shape[1]} x {v.shape[0]} networks, {p['steps']} steps each"
    figures.save_image(
        v,
        p["window"],
        out / "frame_00.png",
        p["axes"],
        f"{title}: {converged:.1%} converged\n{size}",
    )
    bc = dimension.box_count(v, method=p["dimension"])
    dimension.plot_box_counting(
        [v], out / "box_counting.png",
        f"{title}: box counts of one frame (a dimension needs a zoom sequence)",
        method=p["dimension"],
    )  # fmt: skip
    frame = {
        "index": 0,
        "window": p["window"],
        "values": "frame_00.npy",
        "png": "frame_00.png",
        "converged_fraction": converged,
        "slopes": bc["slopes"],
        "edge_pixels": bc["edge_pixels"],
        **_meta_common(p, res),
    }
    meta = {
        "experiment": p["experiment"],
        "window": p["window"],
        "resolution": p["resolution"],
        "steps": p["steps"],
        "profile": ctx.profile,
        "data_digest": _digest(p, ctx.cache),
        **_meta_common(p, res),
        "frames": [frame],
    }
    write_json_atomic(out / "meta.json", meta)
    return {
        "status": "ok",
        "metrics": {
            "converged_fraction": frame["converged_fraction"],
            "edge_pixels": bc["edge_pixels"],
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
        q = {**p, "start_width": start, "descent_resolution": 9}
        found = find_centre(q, "cpu", ctx.cache, resolution=9, steps=5)
        q = {**p, "frame": 0, "centre": found["centre"], "reuse_from": None}
        values = [frame_values(q, "cpu", None, ctx.cache, resolution=9, steps=5)[0]["values"]]
    for v in values:
        if not np.isfinite(v).all():
            raise RuntimeError("engine dry run gave non-finite values")
        figures.paper_colors(v)
        dimension.box_count(v, method="pow2")


def probe(cell, ctx):
    """`make estimate`: a stage-0 cell's run time on this device, from the real cell at a
    smaller resolution (every step: the early exit saves more in late steps than in early
    ones) scaled by the pixels, files and figures included (an image's figures as they
    are, a frame's image-sized PNG scaled too). A zoom path counts its frames, less the
    quarter each reuses from the next deeper one; its descent is small beside them."""
    p = cell.params
    started = time.perf_counter()
    res = min(p["resolution"], 33)
    small = {**p, "resolution": res}
    compute(small, ctx.device, ctx.cache, window=tuple(p["window"]), resolution=5, steps=2)
    if p["kind"] == "image":
        took = time.perf_counter()
        out = run_image(Cell(cell.id, 0, cell.workload, cell.point, 0, small), ctx, "probe")
        trained = out["metrics"]["runtime_s"]  # the rest: figures, whose size is fixed
        fixed, scaled, frames = time.perf_counter() - took - trained, trained, 1
    else:
        took = time.perf_counter()
        out = compute(small, ctx.device, ctx.cache, window=tuple(p["window"]), resolution=res)
        out_dir = Path(ctx.out_dir)  # a frame's files and figure, as run_frame writes them
        _save_npy(out_dir / "frame.npy", out["values"])
        figures.save_frame_png(out["values"], out_dir / "frame.png")
        dimension.box_count(out["values"], method=p["dimension"])
        fixed, scaled = 0.0, time.perf_counter() - took  # a frame's image-sized PNG too
        frames = (
            p["frames"] * 0.75 + 0.25 if p.get("reuse") and p["resolution"] % 2 else p["frames"]
        )
        block = noise_block(p["resolution"])  # each frame's noise test recomputes a block
        frames += p["frames"] * ((block.stop - block.start) / p["resolution"]) ** 2
    per_frame = fixed + scaled * (p["resolution"] / res) ** 2
    return {
        "unit": "pixel-steps",
        "per_cell": p["resolution"] ** 2 * p["steps"] * p.get("frames", 1),
        "seconds_per_cell": per_frame * frames,
        "probe_seconds": time.perf_counter() - started,
    }
