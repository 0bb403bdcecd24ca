"""The noise test of committed zoom frames, by the 1/8-pixel ratio and by the fall test
(FRACTAL_NOISE_FALL), on frames whose behaviour below the pixel the uncertainty exponent
measured (bench/uncertainty_frames.py's probes): do the two tests call them as that
measurement does?

    python bench/fall_test_frames.py --out bench/results/fall_test_frames_cpu.json
    python bench/fall_test_frames.py --probes relu-auto-f27 --out /tmp/f.json

Each probe's frame (its centre, the path's widest width, the frame's index, the probe's
resolution) has its noise test block (fractal.paper_cells.noise_block: the middle
quarter of the width) computed by the engine with the uncertainty probes' settings
(fractal.uncertainty.engine_image: the engine's defaults, float64, seed 0): on the grid,
on the grid moved by 1/8 of a pixel, and on the grid moved by zoom.deep_shift() of a
pixel; zoom.noise_test then gives both verdicts.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uncertainty_frames import PROBES  # noqa: E402

from fractal import zoom  # noqa: E402
from fractal.uncertainty import engine_image  # noqa: E402
from fractal.paper_cells import noise_block  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402


def probe(name, device):
    experiment, optimizer, data, steps, centre, width0, k, known, resolution = PROBES[name]
    grid = zoom.frame_grid(centre, width0, k, resolution)
    block = noise_block(resolution)
    gx, gy = np.asarray(grid[0])[block], np.asarray(grid[1])[block]
    jitter = max(zoom.grid_jitter(grid[0]), zoom.grid_jitter(grid[1]))
    px = zoom.deep_shift(jitter)
    image = engine_image(experiment, steps, optimizer, data, device)
    t0 = time.perf_counter()
    values, shifted = image(gx, gy), image(*zoom.shifted_grid(gx, gy))
    deep = image(*zoom.shifted_grid(gx, gy, px)) if px is not None else None
    out = {
        "experiment": experiment, "optimizer": optimizer, "data": data, "steps": steps,
        "centre": list(centre), "frame": k, "resolution": resolution,
        "block_pixels": int(len(gx) * len(gy)), "known": known,
        "ratio_test": zoom.noise_test(values, shifted, jitter),
        "fall_test": zoom.noise_test(values, shifted, jitter, deep, px),
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    r, f = out["ratio_test"], out["fall_test"]
    print(f"{name}: ratio {r['noise_ratio']} -> arithmetic {r['arithmetic']}; fall "
          f"{f['fall']} at {px} px -> arithmetic {f['arithmetic']} {f['causes']}", flush=True)  # fmt: skip
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", nargs="+", choices=list(PROBES),
                    default=["relu-auto-f27", "paraminit-auto-f4", "tanh-paper-f4",
                             "paraminit-paper-f4"])  # fmt: skip
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = {"deep_shift": zoom.DEEP_SHIFT, "fall_ratio": zoom.FALL_RATIO,
           "noise_ratio": zoom.NOISE_RATIO, "probes": {}}  # fmt: skip
    for name in args.probes:
        out["probes"][name] = probe(name, args.device)
        write_bench_result(args.out, out, device=args.device)  # a cut run keeps what ended


if __name__ == "__main__":
    main()
