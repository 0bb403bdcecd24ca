"""One probe run of an LLM map (transects or a zoom sequence) as a benchmark result.

    python bench/llmmap_report.py --name llmmap-pretrain-transects --wall 112.4 \
        --out bench/results/llmmap_pretrain_transects.json

Reads results/<name>/summary/summary.json (make summary renders it) and keeps what the
docs quote: the grid's counts, the probe's per-depth label changes or per-frame
dimensions, the cells computed and inferred, and the wall time of `make` (capped by the
caller: `complete` says whether the probe finished), and what the cells ran on: the
commit and GPU in each cell's manifest, counted (a run resumed on another machine, or
reported on one, says so).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix import compare  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402


def ran_on(root):
    """[{"commit", "device", "cells"}]: the cells of a results directory that have a
    result, counted by the commit and GPU their manifests record (read as the summary's
    apples-to-apples check reads them; None where a cell has no manifest), most cells
    first. A cell cut off mid-batch has a manifest and no result: not counted."""
    counts = {}
    for cell in sorted(Path(root, "cells").iterdir()):
        if not (cell / "result.json").is_file():
            continue
        m = compare.read_manifest(root, cell.name) or {}
        key = (compare.ENVIRONMENT["code"](m, {}), compare.ENVIRONMENT["gpu"](m, {}))
        counts[key] = counts.get(key, 0) + 1
    rows = [{"commit": c, "device": d, "cells": n} for (c, d), n in counts.items()]
    return sorted(rows, key=lambda r: (-r["cells"], str(r["commit"]), str(r["device"])))


def compact(summary, wall):
    probe = summary["workload_summary"]["probe"]
    finished = summary["cells"] - summary["counts"].get("missing", 0)
    report = {
        "name": summary["name"],
        "config_hash": summary["config_hash"],
        "wall_s": wall,
        "cells": summary["cells"],
        "counts": summary["counts"],
        # the cells a capped run did not reach are planned, not computed: not in the rate
        "cells_finished": finished,
        "cells_per_s": finished / wall if wall else None,
        "probe": probe,
    }
    if "note" in probe:  # the grid did not finish: nothing probed
        pass
    elif probe["kind"] == "transects":
        report["label_changes_per_depth"] = [
            [d["label_changes"] for d in line["depths"]] for line in probe["lines"]
        ]
    else:
        report["dimension_per_frame"] = [f["dimension"] for f in probe["frames"]]
        report["stable_dimension_per_frame"] = [f["stable_dimension"] for f in probe["frames"]]
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--wall", type=float, required=True)
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    path = Path(args.results) / args.name / "summary" / "summary.json"
    report = compact(json.loads(path.read_text()), args.wall)
    report["ran_on"] = ran_on(Path(args.results) / args.name)
    device = None
    try:
        import torch

        if torch.cuda.is_available():
            device = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    write_bench_result(args.out, report, device=device)
    print(json.dumps({k: v for k, v in report.items() if k != "probe"}, indent=1))


if __name__ == "__main__":
    main()
