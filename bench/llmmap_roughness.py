"""How rough the loss ratio is along the transects of an LLM map: smooth structure or noise?

    python bench/llmmap_roughness.py --summary bench/results/llmmap_pretrain_transects_h100 \
        --out bench/results/llmmap_pretrain_roughness_h100.json

Reads a transect run's summary.json and results.csv (a summary/ folder, or files with
that stem: <stem>_summary.json, <stem>_results.csv or .csv.gz), walks the lines again from the
labels, and per depth reports, for the loss ratio that decides "trainable" (mean of the
last K losses / the first; trainable below the threshold):

  median_step_change   the median |ratio difference| between neighbouring points;
  ratio_spread         the 16-84% range of the ratio over the depth's points;
  changes_span_decades from the first label change of the depth to its last (decades
                       along the line, one step per change pair counted): how wide the
                       band of mixed labels is where it fits in the window; where it
                       does not, the span is about the window's width.

A ratio that is a smooth function of the learning rate changes half as much per step at
each depth (exponent 1 in step_change ~ step^alpha); one that is rounding noise, or
chaotic at every scale below the step, changes as much between neighbours at every depth
(alpha 0). `roughness_exponent` is the least-squares slope of log median_step_change
against log step over the depths, for lines across the trainable boundary (where most
changes are trainable ones).
"""

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kmatrix.manifest import write_bench_result  # noqa: E402
from llmmap import transects  # noqa: E402
from llmmap_framecheck import open_csv  # noqa: E402


def load(stem):
    stem = Path(stem)
    if stem.is_dir():
        return stem / "summary.json", stem / "results.csv"
    csv_path = Path(f"{stem}_results.csv")
    if not csv_path.exists() and csv_path.with_suffix(".csv.gz").exists():
        csv_path = csv_path.with_suffix(".csv.gz")
    return Path(f"{stem}_summary.json"), csv_path


def truthy(text):
    return text == "True"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", required=True, help="a summary/ folder or a file stem")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    summary_path, csv_path = load(args.summary)
    probe = json.loads(summary_path.read_text())["workload_summary"]["probe"]
    with open_csv(csv_path) as f:
        rows = {(r["probe"], r["at"]): r for r in csv.DictReader(f) if r.get("probe")}

    def label_of(n, u):
        r = rows.get((f"t{n}", f"u{u:+d}"))
        if r is None or r["status"] not in ("ok", "diverged"):
            raise KeyError((n, u))
        return (("stable", truthy(r["stable"])), ("trainable", truthy(r["trainable"])))

    n_lines, points = len(probe["lines"]), probe["points"]
    walked = transects.walk(n_lines, points, probe["depths_planned"], label_of)
    report = {"source": str(summary_path), "points": points, "lines": []}
    for k, recs in enumerate(walked["lines"]):
        depths = []
        for rec in recs:
            ratio = np.array(
                [float(rows[(f"t{k}", f"u{u:+d}")]["ratio"] or "nan") for u in rec["positions"]]
            )
            ok = np.isfinite(ratio)
            steps = np.abs(np.diff(ratio))[ok[:-1] & ok[1:]]
            step = probe["width_decades"] / 2 ** rec["depth"] / (points - 1)
            found = rec["changes"]
            span = (found[-1] - found[0] + 1) * step if found else 0.0
            depths.append(
                {
                    "depth": rec["depth"],
                    "step_decades": step,
                    "label_changes": len(rec["changes"]),
                    "changes_span_decades": span,
                    "window_decades": step * (points - 1),
                    "finite_ratios": int(ok.sum()),
                    "median_step_change": float(np.median(steps)) if len(steps) else None,
                    "ratio_spread": (
                        [float(v) for v in np.percentile(ratio[ok], [16, 84])]
                        if ok.sum() > 1
                        else None
                    ),
                }
            )
        # the ratio decides the trainable boundary; across the stable one it is a blown-up
        # loss over the first (up to 1e32), whose differences say nothing of that boundary
        summary_depths = probe["lines"][k]["depths"]
        boundary = (
            "trainable"
            if sum(d["trainable_changes"] for d in summary_depths)
            >= sum(d["stable_changes"] for d in summary_depths)
            else "stable"
        )
        use = [d for d in depths if d["median_step_change"]]
        alpha = None
        if len(use) >= 3 and boundary == "trainable":
            x = np.log([d["step_decades"] for d in use])
            y = np.log([d["median_step_change"] for d in use])
            alpha = float(np.polyfit(x, y, 1)[0])
        report["lines"].append(
            {
                "anchor": probe["lines"][k]["anchor"],
                "boundary": boundary,
                "depths": depths,
                "roughness_exponent": alpha,
            }
        )
    write_bench_result(args.out, report, device="cpu")
    for line in report["lines"]:
        print(line["anchor"], line["roughness_exponent"])
        for d in line["depths"]:
            print("  ", d["depth"], d["label_changes"], d["median_step_change"], d["ratio_spread"])


if __name__ == "__main__":
    main()
