"""Is the band of mixed labels the criterion's noise? One depth of the fp32 pre-training
transects (bench/results/llmmap_pretrain_transects_ns32_h100_results.csv, the points
rebuilt as the probe walked them) trained again on the CPU in fp32, as they are and with
every learning rate times 1 + 2^-20 (as bench/llmmap_fp32_rounding.py does), keeping
each run's per-step training losses, then labelled by "trainable" with averaging windows
of several lengths: the mean of the last W losses over the first loss, below 1 (the maps
use W = 20; W = the number of steps is the mean over the whole run).

If the band came from the noise of a 20-step mean of minibatch losses, a longer window
would narrow it: fewer label changes along a line and fewer labels flipped by the shift.
If it comes from the training itself (runs that rounding sends down different paths),
the changes and flips stay.

    OMP_NUM_THREADS=1 python bench/llmmap_criterion.py --depth 3 \\
        --out bench/results/llmmap_criterion_cpu_depth3.json
    python bench/llmmap_criterion.py --lines t0 --limit 6 --steps 30 --windows 5,30 \\
        --out /tmp/x.json
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from kmatrix.manifest import write_bench_result  # noqa: E402
from llmmap.labels import label_run  # noqa: E402
from llmmap_fp32_rounding import SHIFT, TRANSECTS, train_all  # noqa: E402
from llmmap_framecheck import Runner, depth_rows  # noqa: E402


def relabel(rows, window, threshold):
    """Each row's ratio and trainable label under a window of `window` losses (stable as
    the run was labelled)."""
    out = []
    for r in rows:
        lab = label_run(r["losses"], window=window, threshold=threshold)
        out.append({"ratio": lab["ratio"], "trainable": bool(r["stable"] and lab["trainable"])})
    return out


def compare(line, shifted):
    """Label changes along the line, flips under the shift, and the median ratio change
    between neighbours and between the two runs of a point."""
    ra = np.array([np.nan if r["ratio"] is None else r["ratio"] for r in line])
    rb = np.array([np.nan if r["ratio"] is None else r["ratio"] for r in shifted])
    step = np.abs(np.diff(ra))
    both = np.isfinite(ra) & np.isfinite(rb)
    return {
        "trainable_changes": sum(a["trainable"] != b["trainable"] for a, b in zip(line, line[1:])),
        "trainable_flips": sum(a["trainable"] != b["trainable"] for a, b in zip(line, shifted)),
        "trainable": sum(r["trainable"] for r in line),
        "median_neighbour_ratio_change": float(np.nanmedian(step)) if len(step) else None,
        "median_shift_ratio_change": (
            float(np.median(np.abs(ra - rb)[both])) if both.any() else None
        ),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", default="t0,t1", help="transect lines of the CSV")
    ap.add_argument("--depth", type=int, default=3, help="the depth (0: the widest; -1: deepest)")
    ap.add_argument("--limit", type=int, default=0, help="points a line (0: all)")
    ap.add_argument("--steps", type=int, default=0, help="GPT2_MAX_STEPS (0: the defconfig's)")
    ap.add_argument("--windows", default="20,100,300", help="averaging windows, in steps")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from gpt2.params import cpu_batch_models

    probe = Runner("llmmap-pretrain-transects", "cpu", steps=args.steps)
    level = args.depth % probe.cfg.llmmap_depths
    depth = depth_rows(TRANSECTS, args.lines.split(","), level)
    if args.limit:
        depth = {
            n: rows[(len(rows) - args.limit) // 2 :][: args.limit] for n, rows in depth.items()
        }
    names = sorted(depth)
    k = cpu_batch_models(probe.grid0.params, 256)  # the driver's bound for characters
    lines = [[(float(r["matrix_lr"]), float(r["unembedding_lr"])) for r in depth[n]] for n in names]
    runs = {
        "as_committed": lines,
        "shifted": [[(x * SHIFT, y * SHIFT) for x, y in l] for l in lines],
    }
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "source": str(TRANSECTS.relative_to(ROOT)),
        "lines": names,
        "depth": level,
        "points_per_line": len(depth[names[0]]),
        "steps": probe.grid0.params["max_steps"],
        "shift": SHIFT,
        "models_per_batch": k,
        "seconds": {},
        "windows": {},
    }
    rows = {}
    for name, todo in runs.items():
        t0 = time.perf_counter()
        flat = train_all(todo, k, args.procs, args.steps, keep_losses=True)
        report["seconds"][name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {len(flat)} points in {report['seconds'][name]} s", flush=True)
        at, rows[name] = 0, {}
        for n in names:
            rows[name][n] = flat[at : at + len(depth[n])]
            at += len(depth[n])
    p = probe.grid0.params
    threshold, window = p["trainable_threshold"], p["trainable_window"]
    # the map's own window must give the labels the runs were given
    report["map_window"] = window
    report["map_labels_reproduced"] = all(
        a["trainable"] == b["trainable"]
        for run in rows.values()
        for n in names
        for a, b in zip(run[n], relabel(run[n], window, threshold))
    )
    for w in [int(x) for x in args.windows.split(",")]:
        report["windows"][str(w)] = {
            n: compare(
                relabel(rows["as_committed"][n], w, threshold),
                relabel(rows["shifted"][n], w, threshold),
            )
            for n in names
        }
        print(w, report["windows"][str(w)], flush=True)
    write_bench_result(Path(args.out), report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
