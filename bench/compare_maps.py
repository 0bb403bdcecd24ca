"""Check a refined LLM map against a grid of the same window computed in full.

    python bench/compare_maps.py --refined bench/results/llm_refine_129_grid.npz \
        --full bench/results/llm_full_65_grid.npz --out bench/results/llm_refine_check_65.json

Both are a summary's grid-*.npz of the same configuration (shared seeds: every point is
a function of its two learning rates alone). Every point the two grids share (equal
coordinates, whichever is finer) is compared: where the refined run computed it, the
labels (and losses) must be the same; where it inferred it, the full grid says how
often inference was wrong, by the distance of the point to the full grid's nearest label
change (in refined points), so a wrong label inside the band shows.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix.manifest import write_bench_result  # noqa: E402

DISTANCES = (1, 2, 4, 8, 16, 32)  # report bins: within d refined points of a change


def shared(a, b):
    """Indices (ia, ib) of the values two sorted coordinate arrays share."""
    ia, ib = [], []
    for n, v in enumerate(a):
        m = np.flatnonzero(np.isclose(b, v, rtol=1e-9, atol=0))
        if len(m):
            ia.append(n)
            ib.append(int(m[0]))
    return np.array(ia, dtype=int), np.array(ib, dtype=int)


def change_distance(trainable, stable):
    """Per point of a full grid: Chebyshev distance (in its points) to the nearest point
    with a 4-neighbour of another label (stable or trainable); large where none."""
    lab = np.where(np.isfinite(trainable), trainable * 2 + stable, -1)
    change = np.zeros(lab.shape, dtype=bool)
    for axis in (0, 1):
        lo, hi = np.swapaxes(lab, 0, axis)[:-1], np.swapaxes(lab, 0, axis)[1:]
        d = (lo != hi) & (lo >= 0) & (hi >= 0)
        c = np.swapaxes(change, 0, axis)
        c[:-1] |= d
        c[1:] |= d
    dist = np.full(lab.shape, np.inf)
    ys, xs = np.nonzero(change)
    if len(ys):
        yy, xx = np.mgrid[0 : lab.shape[0], 0 : lab.shape[1]]
        for y, x in zip(ys, xs):
            dist = np.minimum(dist, np.maximum(abs(yy - y), abs(xx - x)))
    return dist


def compare(fine, full):
    ix, jx = shared(fine["xs"], full["xs"])
    iy, jy = shared(fine["ys"], full["ys"])
    if not len(ix) or not len(iy):
        raise SystemExit("the grids share no point: are they of the same window?")
    a = {k: fine[k][np.ix_(iy, ix)] for k in ("trainable", "stable", "loss", "inferred")}
    b = {k: full[k][np.ix_(jy, jx)] for k in ("trainable", "stable", "loss")}
    computed, inferred = ~a["inferred"], a["inferred"]
    same = lambda k, mask: bool(np.array_equal(a[k][mask], b[k][mask]))  # noqa: E731
    wrong = inferred & ((a["trainable"] != b["trainable"]) | (a["stable"] != b["stable"]))
    # distance to a change, in refined points: the full grid's distance x its spacing
    scale = (len(fine["xs"]) - 1) / max(1, len(full["xs"]) - 1)
    dist = change_distance(full["trainable"], full["stable"])[np.ix_(jy, jx)] * scale
    by_distance = [
        {
            "within_points": d,
            "inferred": int((inferred & (dist <= d)).sum()),
            "wrong": int((wrong & (dist <= d)).sum()),
        }
        for d in DISTANCES
    ]
    return {
        "refined_points": int(fine["trainable"].size),
        "refined_computed": int((~fine["inferred"]).sum()),
        "full_points": int(full["trainable"].size),
        "shared_points": int(computed.size),
        "shared_points_computed_by_both": int(computed.sum()),
        "labels_equal_where_both_computed": same("trainable", computed)
        and same("stable", computed),
        "losses_bitwise_equal_where_both_computed": same("loss", computed),
        "shared_points_inferred": int(inferred.sum()),
        "inferred_trainable_wrong": int((inferred & (a["trainable"] != b["trainable"])).sum()),
        "inferred_stable_wrong": int((inferred & (a["stable"] != b["stable"])).sum()),
        "inferred_wrong_by_distance_to_change": by_distance,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refined", required=True)
    ap.add_argument("--full", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    report = {"refined": args.refined, "full": args.full}
    report.update(compare(np.load(args.refined), np.load(args.full)))
    write_bench_result(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
