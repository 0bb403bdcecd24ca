"""The paper's tanh network trained by each optimizer: the opening windows side by side and
the fractal dimension per optimizer, with its spread where a zoom sequence measured it.

    # the opening windows (GPU: seconds per optimizer at 513 x 513, 500 steps)
    python3 bench/fractal_optim_maps.py maps --out-dir bench/results
    # the figure, from those and the zoom runs' summaries (make with defconfigs/fractal-optim-*)
    python3 bench/fractal_optim_maps.py figure --maps bench/results/fractal_optim_maps.npz \\
        --zoom results/fractal-optim-adam ... --png docs/img/fractal_optimizers.png

Both write JSON beside their output: per optimizer the backend, run time, converged
fraction and the opening window's box-counting dimension (the paper's estimator on one
image); the figure's JSON adds each zoom sequence's pooled dimension, its 16-84% bootstrap
spread, the frames done and the deepest width, and the same over the frames the noise test
does not call arithmetic (where the summary recorded them).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fractal.common import OPTIMIZERS  # noqa: E402
from kmatrix.files import write_atomic, write_json_atomic  # noqa: E402


def maps(args):
    import torch

    from fractal import dimension
    from fractal.common import EXPERIMENTS, OPENING_WINDOW
    from fractal.engine import compute_image

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
           "resolution": args.resolution, "steps": args.steps, "window": OPENING_WINDOW,
           "experiment": "tanh, seeded data (seed 0), float64", "maps": {}}  # fmt: skip
    arrays = {}
    for opt in args.optimizers:
        res = compute_image(**EXPERIMENTS["tanh"], window=OPENING_WINDOW, device=device,
                            resolution=args.resolution, steps=args.steps, optimizer=opt)  # fmt: skip
        v = res["values"]
        bc = dimension.box_count(v, method="paper")
        out["maps"][opt] = {
            "backend": res["backend"],
            "runtime_s": res["runtime_s"],
            "pixel_steps_trained": res["pixel_steps"],
            "converged_fraction": float(np.mean(v < 0)),
            "dimension_opening": float(np.median(bc["slopes"])) if bc["slopes"] else None,
            "optim": res.get("optim", {}),
        }
        arrays[opt] = v.astype(np.float32)  # the colours need far less than float64
        print(opt, json.dumps(out["maps"][opt]), flush=True)
    d = Path(args.out_dir)
    write_atomic(d / "fractal_optim_maps.npz", lambda f: np.savez_compressed(f, **arrays))
    write_json_atomic(d / "fractal_optim_maps.json", out)


def figure(args):
    from fractal.optim_figures import optimizer_figure

    meta = json.loads(Path(args.maps).with_suffix(".json").read_text())
    with np.load(args.maps) as f:
        arrays = {k: f[k] for k in f.files}
    dims = {}
    for entry in args.zoom:  # DIR, or OPTIMIZER=DIR where DIR keeps no config/
        opt, _, root = entry.rpartition("=")
        summary = json.loads((Path(root) / "summary" / "summary.json").read_text())
        if not opt:
            cfg = json.loads((Path(root) / "config" / "config.json").read_text())
            opt = cfg.get("fractal_optimizer") or "gd"
        for key, s in (summary.get("workload_summary") or {}).items():
            keep = ("dimension", "spread_16_84", "dimension_resolved", "spread_resolved_16_84",
                    "frames_resolved", "frames_done", "deepest_width", "runtime_s", "centre")  # fmt: skip
            dims[opt] = {k: s.get(k) for k in keep}
            dims[opt]["path"] = key
            dims[opt]["summary"] = str(Path(root) / "summary" / "summary.json")
    order = [o for o in OPTIMIZERS if o in arrays]
    panels = [
        {"name": o, "values": arrays[o], "window": meta["window"],
         "dimension": meta["maps"][o]["dimension_opening"]}
        for o in order
    ]  # fmt: skip
    title = (f"tanh network, {meta['resolution']} x {meta['resolution']}, {meta['steps']} steps,"
             f" per optimizer ({meta['device']})")  # fmt: skip
    optimizer_figure(panels, dims, args.png, title)
    write_json_atomic(Path(args.png).with_suffix(".json"), {"opening": meta, "zoom": dims})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("maps")
    m.add_argument("--out-dir", default="bench/results")
    m.add_argument("--resolution", type=int, default=513)
    m.add_argument("--steps", type=int, default=500)
    m.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    f = sub.add_parser("figure")
    f.add_argument("--maps", default="bench/results/fractal_optim_maps.npz")
    f.add_argument("--zoom", nargs="*", default=[], help="zoom runs: DIR or OPTIMIZER=DIR")
    f.add_argument("--png", default="docs/img/fractal_optimizers.png")
    args = ap.parse_args()
    started = time.perf_counter()
    (maps if args.cmd == "maps" else figure)(args)
    print(f"{args.cmd}: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
