"""The uncertainty exponent (fractal/uncertainty.py) of zoom frames whose box-counting
dimension or noise test is known from committed runs: how a boundary behaves below the
pixel, and where the arithmetic takes over.

    python bench/uncertainty_frames.py --out bench/results/uncertainty_frames_cpu.json
    python bench/uncertainty_frames.py --probes adam-edge --m 32 --out /tmp/u.json
    python bench/uncertainty_frames.py --device cuda --m 512 --out $OUT/uncertainty_gpu.json
    # the fits again, from the flips a run recorded, with the current fractal/uncertainty.py
    python bench/uncertainty_frames.py --refit bench/results/uncertainty_frames_cpu.json \
        --out bench/results/uncertainty_frames_cpu.json

First the instrument on boundaries of known dimension (uncertainty.known_checks: a
line, two Weierstrass graphs, a line made noisy below 1e-7). Each probe is one frame of a
committed zoom (its centre, the path's widest width and the frame's index, the pixel
that of RESOLUTION pixels across unless the probe names its own): m x m random points in
the middle SAMPLE share of the frame are labelled (converged or not) as they are and
moved along the input-layer axis by each of fractal.uncertainty.EPS_PIXELS pixels.
"""

import argparse
import json
import os
import sys
import time
from collections import namedtuple
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fractal import uncertainty  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402

RESOLUTION = 257  # the frames' pixels across, as committed, unless a probe says otherwise
SAMPLE = 0.25  # the share of the frame's width the points are drawn from, around its centre
Probe = namedtuple(
    "Probe",
    "experiment optimizer data steps centre width0 frame known resolution",
    defaults=(RESOLUTION,),
)
# name: (experiment, optimizer, data, steps, centre, widest width, frame, what is known
# [, the frame's pixels across])
PROBES = {
    "tanh-paper-f4": ("tanh", "gd", "notebook", 500, (1.1238442669, 2.3018075671), 6.5003323392, 4,
                      "paper path; box counting 1.39 to 1.54 over frames 0-7 at 257 to 1025 "
                      "pixels (paper_resolution_h200.json), not arithmetic"),
    "paraminit-paper-f4": ("paraminit", "gd", "notebook", 500, (-0.7076069516, 1.5913480399),
                           10.8078557036544, 4,
                           "paper path; the noise test calls frame 4 arithmetic at 257, 513 "
                           "and 1025 pixels (paper_resolution_h200.json)"),
    "identity-paper-f4": ("identity", "gd", "notebook", 500, (2.2787786522, 0.679198384),
                          8.436842496, 4, "paper path; box counting of frames 0-7 1.034, "
                          "1.095, 1.097 at 257, 513, 1025 pixels: settled"),
    "single_datapoint-paper-f4": ("single_datapoint", "gd", "notebook", 500,
                                  (1.683937604, 1.2602310346), 7.751073792, 4,
                                  "paper path; box counting of frames 0-7 1.045, 1.052, 1.067 "
                                  "at 257, 513, 1025 pixels: settled"),
    "relu-paper-f4": ("relu", "gd", "notebook", 500, (-0.2383546474, 1.9108561363),
                      9.000976384, 4, "paper path; box counting of frames 0-7 1.135, 1.133, "
                      "1.197 at 257, 513, 1025 pixels: not settled"),
    "minibatch-paper-f4": ("minibatch", "gd", "notebook", 1000,
                           (-0.5728404884, 2.2412214093), 11.122659626582015, 4,
                           "paper path; box counting of frames 0-7 1.282, 1.355, 1.347 at "
                           "257, 513, 1025 pixels: settled from 513"),
    "adam-edge": ("tanh", "adam", "seeded", 500, (-0.6550911935811197, 2.3603108915471527), 9.0, 20,
                  "Adam's structure-seeking path, frame 20: one straight edge (box counting "
                  "1.03), noise from frame 35 on (fractal_optim_adam_h200)"),
    "adam-f34": ("tanh", "adam", "seeded", 500, (-0.6550911935811197, 2.3603108915471527), 9.0,
                 34, "Adam's structure-seeking path, frame 34: the last frame of the straight "
                 "edge (box counting 1.03) before the noise test calls frames 35-43 "
                 "arithmetic (fractal_optim_adam_h200)"),
    "gd-f20": ("tanh", "gd", "seeded", 500, (2.402017233997759, 2.1164056556899897), 9.0, 20,
               "gradient descent's structure-seeking path at 513 pixels, frame 20: box "
               "counting 1.92, noise ratio 0.95, called arithmetic (optim_zooms_513_h100)", 513),
    "momentum-f30": ("tanh", "momentum", "seeded", 500, (0.9824758875747985, 2.315544791013709),
                     9.0, 30, "momentum's structure-seeking path at 513 pixels, frame 30: box "
                     "counting 1.90, noise ratio 0.64, not arithmetic (optim_zooms_513_h100)", 513),
    "rmsprop-f4": ("tanh", "rmsprop", "seeded", 500, (-0.9796205487081284, 0.860269386794899),
                   9.0, 4, "RMSprop's structure-seeking path at 513 pixels, frame 4 (0.56 "
                   "decades wide): box counting 1.80, noise ratio 0.97, called arithmetic "
                   "(optim_zooms_513_rmsprop_h100)", 513),
    "adamw-f10": ("tanh", "adamw", "seeded", 500, (1.9458571127436972, 2.3945370969038056), 9.0,
                  10, "AdamW's structure-seeking path at 513 pixels, frame 10 (0.0088 decades "
                  "wide): box counting 1.57, noise ratio 1.01, called arithmetic "
                  "(optim_zooms_513_h100)", 513),
    "relu-auto-f27": ("relu", "gd", "notebook", 500, (2.8137038441072857, 0.17748424130132712),
                      9.0, 27, "relu's structure-seeking path on the notebook's data, frame "
                      "27: box counting 1.86 as every frame from 6 on, noise ratio 0.91, the "
                      "one frame of the path called arithmetic (fractal_paper_paths_h100)"),
    "paraminit-auto-f4": ("paraminit", "gd", "seeded", 500,
                          (-0.716909758756282, 1.3682640469294878), 9.0, 4,
                          "paraminit's structure-seeking path on seeded data, frame 4: box "
                          "counting 1.73, called arithmetic (fractal_paper_paths_h100)"),
}  # fmt: skip
PROBES = {name: Probe(*p) for name, p in PROBES.items()}


def report(name, fit, rows):
    print(f"{name}: alpha {fit['alpha']} D {fit['dimension']} floor {fit['floor_eps']}", flush=True)
    print("  flips", [r["flips"] for r in rows], flush=True)


def probe(name, m, device, seed):
    experiment, optimizer, data, steps, centre, width0, k, known, resolution = PROBES[name]
    width = width0 / 2**k
    pixel = width / (resolution - 1)
    gx, gy = uncertainty.sample_grid(centre, width * SAMPLE, m, seed)
    label = uncertainty.engine_labeller(experiment, steps, optimizer, data, device)
    t0 = time.perf_counter()
    rows = uncertainty.flip_fractions(label, gx, gy, [e * pixel for e in uncertainty.EPS_PIXELS])
    for r in rows:
        r["eps_pixels"] = r["eps"] / pixel
    fit = uncertainty.fit(rows)
    report(name, fit, rows)
    return {"experiment": experiment, "optimizer": optimizer, "data": data, "steps": steps,
            "centre": list(centre), "frame": k, "frame_width_decades": width,
            "resolution": resolution,
            "pixel_decades": pixel, "sample_width_decades": width * SAMPLE, "points": m * m,
            "known": known, "rows": rows, **fit,
            "seconds": time.perf_counter() - t0}  # fmt: skip


def refit(path, out_path):
    """The probes' fits from their recorded rows (the training is not redone), the known
    checks run again; the run that trained them is kept under "trained_by"."""
    old = json.loads(Path(path).read_text())
    out = {k: v for k, v in old.items() if k not in ("provenance", "known", "probes")}
    out["trained_by"] = old["provenance"]
    out["known"] = uncertainty.known_checks()
    out["probes"] = {}
    for name, p in old["probes"].items():
        fit = uncertainty.fit(p["rows"])
        out["probes"][name] = {**p, **fit}
        report(name, fit, p["rows"])
    write_bench_result(out_path, out, device=old["provenance"].get("device") or "cpu")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", nargs="+", default=list(PROBES), choices=list(PROBES))
    ap.add_argument("--m", type=int, default=64, help="points per axis (m x m in all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refit", help="a result file: fit its recorded flips again")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.refit:
        return refit(args.refit, args.out)
    out = {"resolution": RESOLUTION, "sample_share": SAMPLE,
           "eps_pixels": list(uncertainty.EPS_PIXELS),
           "known": uncertainty.known_checks(), "probes": {}}  # fmt: skip
    for name, c in out["known"].items():
        print(f"{name}: D {c['dimension']} (expected {c['expected']}), floor {c['floor_eps']}")
    for name in args.probes:
        out["probes"][name] = probe(name, args.m, args.device, args.seed)
        write_bench_result(args.out, out, device=args.device)  # a cut run keeps what ended


if __name__ == "__main__":
    main()
