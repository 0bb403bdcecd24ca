"""The same LLM map with shared seeds and with a seed per point, side by side.

    python bench/compare_seeds.py --shared results/fractal-16x16/summary/grid-muon-fp32-0.npz \
        --per-point results/fractal-16x16-per-point/summary/grid-muon-fp32-0.npz \
        --png docs/img/llm_seeds.png --out bench/results/llm_seeds.json

Both are a summary's grid-*.npz of one configuration run twice: with SWEEP_SEEDS_SHARED
(every point starts from the same weights and batches) and SWEEP_SEEDS_PER_POINT (point
(i, j) uses seed + i*1000 + j). Counts the points whose labels differ, the final losses'
difference, how much the loss jumps between neighbouring points in each map, and the
boundary pixels and dimension of each.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmmap import grid_figures, maps as llm  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", required=True)
    ap.add_argument("--per-point", required=True)
    ap.add_argument("--png", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--x-name", default="matrix_lr")
    ap.add_argument("--y-name", default="unembedding_lr")
    args = ap.parse_args()
    maps = {"shared seeds": np.load(args.shared), "a seed per point": np.load(args.per_point)}
    report = {}
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, (name, g) in zip(axs, maps.items()):
        dim, pixels, how = llm.boundary_dimension(g["trainable"])
        report[name] = {
            "trainable": int((g["trainable"] == 1).sum()),
            "points": int(g["trainable"].size),
            "boundary_pixels": pixels,
            "fractal_dimension": dim,
            "estimator": how["estimator"],
            # how much the final loss jumps between neighbouring points along x (median of
            # |log loss| differences): seed noise adds to what the lrs change
            "neighbour_log_loss_jump": float(
                np.nanmedian(np.abs(np.diff(np.log(g["loss"]), axis=1)))
            ),
        }
        xe, ye = grid_figures.cell_edges(g["xs"]), grid_figures.cell_edges(g["ys"])
        ax.pcolormesh(xe, ye, g["trainable"], cmap=grid_figures.BINARY_CMAP, vmin=0, vmax=1)
        ax.set_xlabel(f"{args.x_name} (log10)")
        ax.set_ylabel(f"{args.y_name} (log10)")
        ax.set_title(f"{name}: {report[name]['trainable']} trainable, {pixels} boundary pixels")
    a, b = (g["trainable"] for g in maps.values())
    report["labels_that_differ"] = int((a != b).sum())
    la, lb = (np.log(g["loss"]) for g in maps.values())
    report["median_log_loss_difference"] = float(np.nanmedian(np.abs(la - lb)))
    fig.suptitle(
        f"the same map, two seedings: {report['labels_that_differ']} of {a.size} labels differ"
        " (blue: trainable, red: not)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    write_bench_result(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
