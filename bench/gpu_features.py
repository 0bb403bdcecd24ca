"""What the cells of a finished matrix ran with and used of their GPU: per cell the
out-of-memory fallback's "ran_with" (from result.json and manifest.json, which must
agree), the GPU usage the worker sampled (peak memory, mean utilisation and power, the
number of samples) and the slot and executor that ran it, and what the summary's
apples-to-apples check found (summary.json). Reads a results directory; runs nothing.

    python bench/gpu_features.py --results results/gpu-features --label local \
        --out bench/results/gpu_features_local.json
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kmatrix.manifest import write_bench_result  # noqa: E402


def cell_row(directory):
    result = json.loads((directory / "result.json").read_text())
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    usage = result.get("gpu_usage")
    row = {
        "cell": result["id"],
        "status": result["status"],
        "error": result.get("error"),
        "configured": {k: result["params"].get(k) for k in ("batch_size", "grad_accum")},
        "ran_with": result.get("ran_with"),
        "manifest_ran_with": manifest.get("ran_with"),
        "tokens": result["metrics"].get("tokens"),
        "steps": result["metrics"].get("steps"),
        "final_val_loss": result["metrics"].get("final_val_loss"),
        "runtime_s": result.get("runtime_s"),
        "gpu": (manifest.get("gpu") or {}).get("name"),
        "cuda_visible_devices": (manifest.get("env") or {}).get("CUDA_VISIBLE_DEVICES"),
    }
    if isinstance(usage, dict):
        row["gpu_usage"] = {k: v for k, v in usage.items() if k != "samples"}
        row["gpu_usage"]["n_samples"] = len((usage.get("samples") or {}).get("t", []))
    else:
        row["gpu_usage"] = usage
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, help="a matrix's results directory")
    ap.add_argument("--label", default="", help="what this run shows")
    ap.add_argument("--log", help="the make log to keep the last lines of")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cells = sorted(p for p in (Path(args.results) / "cells").iterdir() if p.is_dir())
    rows = [cell_row(p) for p in cells if (p / "result.json").exists()]
    report = {"label": args.label, "results": str(args.results), "cells": rows}
    report["all_ran_with_recorded"] = all(
        r["ran_with"] is not None and r["ran_with"] == r["manifest_ran_with"] for r in rows
    )
    summary = Path(args.results) / "summary" / "summary.json"
    if summary.exists():  # what the summary's apples-to-apples check found
        summary = json.loads(summary.read_text())
        report["counts"] = summary.get("counts")
        report["apples_to_apples"] = summary.get("apples_to_apples")
    if args.log and Path(args.log).exists():
        report["make_log_tail"] = Path(args.log).read_text(errors="replace").splitlines()[-40:]
    write_bench_result(args.out, report, device="cuda" if rows and rows[0]["gpu"] else "cpu")
    print(json.dumps({k: v for k, v in report.items() if k != "make_log_tail"}, indent=1))


if __name__ == "__main__":
    main()
