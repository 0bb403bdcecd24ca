"""The fractal paper workload (docs/workload-interface.md): one cell = one experiment's
zoom sequence, each frame a whole image computed by fractal.engine in one call.

LLM trainability grids are their own workload, fractal/llm.py; fractal/__init__.py picks
one of the two by FRACTAL_ENGINE.
"""

import json
import os
from functools import partial
from pathlib import Path

import numpy as np

from fractal import dimension, figures
from fractal.zoom import zoom_sequence
from kmatrix.errors import ConfigError


def _engine():
    # imported lazily: the engine pulls in torch, which planning and linting never need
    from fractal import engine

    return engine


# ----------------------------------------------------------------------------------------
# planning


def axes(cfg):
    out = [("experiment", list(cfg.fractal_experiments))]
    seeds = list(cfg.get("seeds") or [0])
    if len(seeds) > 1:
        out.append(("seed", seeds))
    return out


def validate(cfg):
    experiments = list(cfg.get("fractal_experiments") or [])
    if not experiments:
        raise ConfigError("FRACTAL_EXPERIMENT_TANH", "no experiment selected", "select one or more")
    known = _engine().EXPERIMENTS
    for name in experiments:
        if name not in known:
            raise ConfigError(f"FRACTAL_EXPERIMENT_{name.upper()}", "unknown experiment")
    for lo, hi in (("fractal_x_min", "fractal_x_max"), ("fractal_y_min", "fractal_y_max")):
        a, b = cfg.get(lo), cfg.get(hi)
        if a is None or b is None:
            raise ConfigError((lo if a is None else hi).upper(), "empty", "give a log10 value")
        if not a < b:
            raise ConfigError(
                lo.upper(), f"min {a} >= max {b}", f"make it smaller than {hi.upper()}"
            )
    frames = cfg.get("fractal_zoom_frames", 1)
    factor = cfg.get("fractal_zoom_factor")
    if frames > 1 and (factor is None or not factor > 1):
        raise ConfigError("FRACTAL_ZOOM_FACTOR", f"{factor} is not > 1", "zoom in, e.g. 2.0")
    px, py = cfg.get("fractal_zoom_point_x"), cfg.get("fractal_zoom_point_y")
    if (px is None) != (py is None):
        raise ConfigError("FRACTAL_ZOOM_POINT_X", "only one coordinate set", "set both or neither")
    if px is not None and not (
        cfg.fractal_x_min <= px <= cfg.fractal_x_max
        and cfg.fractal_y_min <= py <= cfg.fractal_y_max
    ):
        raise ConfigError("FRACTAL_ZOOM_POINT_X", f"({px}, {py}) outside the window")
    tail = cfg.get("fractal_tail", 20)
    if tail > cfg.fractal_steps:
        raise ConfigError("FRACTAL_STEPS", f"{cfg.fractal_steps} < FRACTAL_TAIL {tail}")


def cell_params(cfg, point):
    name = point["experiment"]
    px, py = cfg.get("fractal_zoom_point_x"), cfg.get("fractal_zoom_point_y")
    return {
        "experiment": name,
        **_engine().EXPERIMENTS[name],  # nonlinearity, axes, batch, n_points
        "window": [cfg.fractal_x_min, cfg.fractal_x_max, cfg.fractal_y_min, cfg.fractal_y_max],
        "resolution": cfg.fractal_resolution,
        "steps": cfg.fractal_steps,
        "dtype": cfg.get("fractal_dtype", "float64"),
        "backend": cfg.get("fractal_backend", "auto"),
        "minibatch_size": cfg.get("fractal_minibatch_size", 16),
        "zoom_frames": cfg.get("fractal_zoom_frames", 1),
        "zoom_factor": cfg.get("fractal_zoom_factor") or 2.0,
        "zoom_point": None if px is None else [px, py],
        "tail": cfg.get("fractal_tail", 20),
        "seed": point.get("seed", (cfg.get("seeds") or [0])[0]),
    }


# ----------------------------------------------------------------------------------------
# running


def _compute(p, device, window, resolution=None, steps=None):
    return _engine().compute_image(
        nonlinearity=p["nonlinearity"],
        axes=p["axes"],
        batch=p["batch"],
        n_points=p["n_points"],
        window=tuple(window),
        resolution=resolution or p["resolution"],
        steps=steps or p["steps"],
        seed=p["seed"],
        device=device,
        dtype=p["dtype"],
        minibatch_size=p["minibatch_size"],
        backend=p["backend"],
        tail=p["tail"],
    )


def _atomic(path, write):
    """Write through a temp file in the same directory, then rename: a reader never sees
    half a file, and a file that exists is complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)
    return path.name


def _save_npy(path, array):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    return _atomic(path, write)


def _save_json(path, obj):
    return _atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1) + "\n"))


def _finite_or_none(x):
    return float(x) if x is not None and np.isfinite(x) else None


def run(cell, ctx):
    p = cell.params
    out = Path(ctx.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{p['experiment']} [{ctx.profile}]"
    device = "cuda" if str(ctx.device).startswith("cuda") else "cpu"
    seq = zoom_sequence(
        partial(_compute, p, device),
        p["window"],
        p["zoom_frames"],
        p["zoom_factor"],
        point=p.get("zoom_point"),
        log=ctx.log,
    )
    frames, values = [], []
    for f in seq:
        k, res = f["index"], f["result"]
        v = res["values"]
        values.append(v)
        bc = dimension.box_count(v)
        slopes = bc["slopes"]
        meta = {
            "index": k,
            "window": f["window"],
            "zoom_point": f["point"],
            "values": _save_npy(out / f"frame_{k:02d}.npy", v),
            "png": f"frame_{k:02d}.png",
            "converged_fraction": float(np.mean(res["converged"])),
            "dimension": _finite_or_none(np.median(slopes)) if slopes else None,
            "edge_pixels": bc["edge_pixels"],
            "runtime_s": res["runtime_s"],
            "pixel_steps_per_s": res["pixel_steps_per_s"],
        }
        fig_title = f"{title} frame {k}"
        _atomic(
            out / meta["png"], lambda t: figures.save_image(v, f["window"], t, p["axes"], fig_title)
        )
        frames.append(meta)
        ctx.log(
            f"frame {k}: window {f['window']} converged {meta['converged_fraction']:.3f} "
            f"{res['pixel_steps_per_s'] / 1e6:.2f} M pixel-steps/s ({res['backend']})"
        )
    dim = dimension.fractal_dimension(values)
    _atomic(
        out / "box_counting.png",
        lambda t: dimension.plot_box_counting(values, t, f"{title}: D = {dim:.3f}"),
    )
    if len(values) > 1:
        anim = [{"values": v, "window": f["window"]} for v, f in zip(values, frames)]
        tmp = out / f".zoom.{os.getpid()}.tmp.gif"
        written = Path(figures.zoom_animation(anim, tmp, p["axes"], title))
        animation = "zoom" + written.suffix  # .gif, or .png if the GIF writer failed
        os.replace(written, out / animation)
    else:
        animation = None
    runtime = sum(f["runtime_s"] for f in frames)
    nx, ny = (p["resolution"],) * 2 if isinstance(p["resolution"], int) else p["resolution"]
    pixel_steps = nx * ny * p["steps"] * len(frames)
    last = seq[-1]["result"]
    meta = {
        "experiment": p["experiment"],
        "window": p["window"],
        "resolution": p["resolution"],
        "steps": p["steps"],
        "dtype": last["dtype"],
        "device": last["device"],
        "backend": last["backend"],
        "runtime_s": runtime,
        "pixel_steps_per_s": pixel_steps / runtime if runtime > 0 else None,
        "fractal_dimension": _finite_or_none(dim),
        "profile": ctx.profile,
        "animation": animation,
        "frames": frames,
    }
    _save_json(out / "meta.json", meta)
    return {
        "status": "ok",
        "metrics": {
            "fractal_dimension": _finite_or_none(dim),
            "converged_fraction": frames[0]["converged_fraction"],
            "pixel_steps_per_s": meta["pixel_steps_per_s"],
            "runtime_s": runtime,
        },
        "frames": frames,
        "animation": animation,
        "backend": meta["backend"],
        "device": meta["device"],
    }


def dry_run(cell, ctx):
    p = cell.params
    res = _compute({**p, "backend": "torch"}, "cpu", p["window"], resolution=4, steps=5)
    v = res["values"]
    if v.shape != (4, 4) or not np.isfinite(v).all():
        raise RuntimeError(f"engine dry run gave {v.shape} values, finite: {np.isfinite(v).all()}")
    figures.paper_colors(v)
    dimension.box_count(v)


# ----------------------------------------------------------------------------------------
# summary


def summarize(summary_dir, cells, results, cfg):
    summary_dir = Path(summary_dir)
    root = summary_dir.parent
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
    title = f"{cfg.get('name', '')} [{cfg.get('profile', '')}]: first frame, fractal dimension"
    figures.summary_figure(panels, summary_dir / "fractal_summary.png", title)
    return out


def _probe_image(cell, ctx):
    """`make estimate`: time a small image on this device and scale to the cell's size."""
    p = cell.params
    res, steps = min(p["resolution"], 128), min(p["steps"], 100)
    _compute(p, ctx.device, p["window"], resolution=16, steps=2)  # compile / warm up
    out = _compute(p, ctx.device, p["window"], resolution=res, steps=steps)
    work = p["resolution"] ** 2 * p["steps"] * p["zoom_frames"]
    return {
        "unit": "pixel-steps",
        "per_cell": work,
        "seconds_per_cell": work / out["pixel_steps_per_s"],
        "probe_seconds": out["runtime_s"],
    }


def probe(cell, ctx):
    return _probe_image(cell, ctx)
