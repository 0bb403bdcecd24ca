"""The zoom paths on the CPU: the descent, then a sample of each path's frames.

    python bench/auto_paths.py --label after --out bench/results/auto_paths_cpu.json

For each experiment: the workload's own centre cell (fractal.paper.cell_params), its
descent (paper_cells.find_centre) and every --every-th frame plus the deepest
(paper_cells.frame_values, the torch engine), each frame's width, edge and isolated
fractions, blank, its noise test and its median slope. The frames are small (the CPU
trains ~5e4 pixel-steps/s on the 272-point experiments), so this shows where a path goes
and whether the arithmetic made its structure, not the frames at full resolution
(bench/auto_paths_gpu.sh runs those). --path auto (default) or paper; --label keeps
several runs side by side in one JSON (e.g. before and after a change to the descent).
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from fractal import dimension, paper, paper_cells, zoom  # noqa: E402
from fractal.common import EXPERIMENTS, OPENING_WINDOW  # noqa: E402
from kmatrix.config import Config  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402

STEPS = {"minibatch": 1000}  # the notebook's steps; the rest 500


def config(args):
    x0, x1, y0, y1 = OPENING_WINDOW
    values = dict(
        name="auto-paths",
        workload="fractal",
        seeds=[0],
        fractal_experiments=list(args.experiments),
        fractal_resolution=args.resolution,
        fractal_steps_per_experiment=True,
        fractal_dtype="float64",
        fractal_backend="torch",
        fractal_data=args.data,
        fractal_x_min=x0,
        fractal_x_max=x1,
        fractal_y_min=y0,
        fractal_y_max=y1,
        fractal_zoom_frames=args.frames,
        fractal_paths=[args.path],
        fractal_zoom_outer_width=6.0,
        fractal_descent_resolution=args.descent_resolution,
        fractal_dimension="pow2",
        fractal_exit="nonfinite",
        fractal_reuse_pixels=False,
        fractal_minibatch_size=16,
        fractal_tail=20,
    )
    for name in EXPERIMENTS:
        values[f"fractal_steps_{name}"] = args.steps or STEPS.get(name, 500)
    return Config(values)


def run_path(cfg, name, path, every, log):
    p = paper.cell_params(cfg, {"experiment": name, "path": path})
    cache = {}
    t = time.perf_counter()
    found = paper_cells.find_centre(p, "cpu", cache, log=log)
    descent_s = time.perf_counter() - t
    ks = sorted(set(range(0, p["frames"], every)) | {p["frames"] - 1})
    frames = []
    for k in ks:
        q = {**p, "frame": k, "centre": found["centre"], "reuse_from": None}
        t = time.perf_counter()
        res, _, _ = paper_cells.frame_values(q, "cpu", None, cache)
        stats = zoom.frame_stats(res["values"])
        slopes = dimension.box_count(res["values"], method="pow2")["slopes"]
        frames.append(
            {
                "frame": k,
                "width": p["width0"] * 2.0**-k,
                **stats,
                "noise": res["noise"],
                "arithmetic": res["noise"]["arithmetic"],
                "median_slope": float(np.median(slopes)) if slopes else None,
                "converged_fraction": float((res["values"] < 0).mean()),
                "runtime_s": time.perf_counter() - t,
            }
        )
        log(f"{name} frame {k}: {json.dumps(frames[-1])}")
    levels = found["levels"]
    return {
        "centre": found["centre"],
        "steps": p["steps"],
        "descent_levels": len(levels),
        "descent_images": found["images"],  # with back-ups
        "descent_backtracks": found["backtracks"],
        "descent_status": {s: sum(lv["status"] == s for lv in levels) for s in _statuses(levels)},
        "descent_s": descent_s,
        "descent": levels,
        "frames": frames,
        "blank_frames": [f["frame"] for f in frames if f["blank"]],
        "arithmetic_frames": [f["frame"] for f in frames if f["arithmetic"]],
    }


def _statuses(levels):
    return sorted({lv["status"] for lv in levels})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS))
    ap.add_argument("--data", default="notebook", choices=["notebook", "seeded"])
    ap.add_argument("--path", default="auto", choices=["auto", "paper"])
    ap.add_argument("--frames", type=int, default=20, help="zoom frames (the GPU runs: 44)")
    ap.add_argument("--resolution", type=int, default=33, help="frame pixels per side")
    ap.add_argument("--descent-resolution", type=int, default=17)
    ap.add_argument("--every", type=int, default=4, help="every n-th frame, and the deepest")
    ap.add_argument("--steps", type=int, default=0, help="0: the experiment's own")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--label", default="run")
    ap.add_argument("--out", default="bench/results/auto_paths_cpu.json")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config(args)
    paper.validate(cfg)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    run = {
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, CPU, torch engine, float64",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "label")},
        "paths": {},
    }
    started = time.perf_counter()
    for name in args.experiments:
        r = run_path(cfg, name, args.path, args.every, lambda s: print(s, flush=True))
        run["paths"][name] = r
        print(
            f"== {name}: centre {r['centre']}, descent {r['descent_s']:.0f} s "
            f"{r['descent_status']}, blank {r['blank_frames']}, "
            f"arithmetic {r['arithmetic_frames']}",
            flush=True,
        )
        run["wall_s"] = time.perf_counter() - started
        report[args.label] = run
        write_bench_result(out, report)  # after every path: a long run keeps what it did


if __name__ == "__main__":
    main()
