"""Check a refined LLM map against a grid computed in full at a coarser, nested resolution.

    python bench/compare_maps.py --refined bench/results/llm_refine_129_grid.npz \
        --full bench/results/llm_full_65_grid.npz --out bench/results/llm_refine_check_65.json

Both are a summary's grid-*.npz of the same configuration (shared seeds: every point is
a function of its two learning rates alone). The full grid's points are every k-th point
of the refined one. On the points the refined run computed, the labels (and losses) must
be the same; on the points it inferred, the full grid says how often inference was wrong.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix.manifest import write_bench_result  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refined", required=True)
    ap.add_argument("--full", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    fine, full = np.load(args.refined), np.load(args.full)
    step = (len(fine["xs"]) - 1) // (len(full["xs"]) - 1)
    at = {k: fine[k][::step, ::step] for k in ("trainable", "stable", "loss", "inferred")}
    assert np.allclose(fine["xs"][::step], full["xs"]) and np.allclose(
        fine["ys"][::step], full["ys"]
    )
    computed, inferred = ~at["inferred"], at["inferred"]
    same = lambda k, mask: bool(np.array_equal(at[k][mask], full[k][mask]))  # noqa: E731
    report = {
        "refined": args.refined,
        "full": args.full,
        "refined_points": int(fine["trainable"].size),
        "refined_computed": int((~fine["inferred"]).sum()),
        "full_points": int(full["trainable"].size),
        "nested_every": step,
        "shared_points_computed_by_both": int(computed.sum()),
        "labels_equal_where_both_computed": same("trainable", computed)
        and same("stable", computed),
        "losses_bitwise_equal_where_both_computed": same("loss", computed),
        "shared_points_inferred": int(inferred.sum()),
        "inferred_trainable_wrong": int(
            (at["trainable"][inferred] != full["trainable"][inferred]).sum()
        ),
        "inferred_stable_wrong": int((at["stable"][inferred] != full["stable"][inferred]).sum()),
    }
    write_bench_result(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
