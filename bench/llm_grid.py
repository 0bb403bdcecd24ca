"""Benchmark an LLM trainability grid end to end through `make`: wall time, per-cell
overhead against training time, and GPU utilisation.

    python bench/llm_grid.py --defconfig fractal-16x16-gpu --gpus "0 1" --out grid.json
    python bench/llm_grid.py --defconfig fractal-16x16 --set "SWEEP_X_POINTS=4" --out cpu.json

Overhead per cell = the worker's runtime for the cell minus its training loop's time
(model build, data, labels, result writing); the worker start is the time from the
driver's start to the first finished cell minus that cell's runtime.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def gpu_utilisation(samples, stop):
    """Poll nvidia-smi once a second: mean utilisation per GPU while the grid runs."""
    while not stop.is_set():
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.split()
            samples.append([float(x) for x in out])
        except (OSError, subprocess.SubprocessError, ValueError):
            return
        stop.wait(1.0)


def make(*args):
    cmd = ["make", "--no-print-directory", f"PYTHON={sys.executable}", *args]
    return subprocess.run(cmd, cwd=ROOT, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defconfig", default="fractal-16x16-gpu")
    ap.add_argument("--gpus", default="auto", help='EXEC_GPUS, e.g. "0" or "0 1"')
    ap.add_argument("--name", default=None, help="matrix name (default: derived)")
    ap.add_argument("--set", default="", help="more setconfig assignments")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    name = args.name or f"{args.defconfig}-bench-{args.gpus.replace(' ', '')}"
    make(f"defconfig-{args.defconfig}")
    make("setconfig", f"SET=NAME={name} EXEC_GPUS='{args.gpus}' TRACK_WANDB_DISABLED=y {args.set}")
    make("clean-results")
    samples, stop = [], threading.Event()
    poller = threading.Thread(target=gpu_utilisation, args=(samples, stop), daemon=True)
    poller.start()
    start = time.time()
    make()
    wall = time.time() - start
    stop.set()

    cfg = json.loads((ROOT / "config.json").read_text())
    root = ROOT / cfg["exec_results_root"] / name
    results = [json.loads(p.read_text()) for p in sorted(root.glob("cells/*/result.json"))]
    train = [r["metrics"].get("train_seconds", 0.0) for r in results]
    runtime = [r["runtime_s"] for r in results]
    overhead = [rt - tr for rt, tr in zip(runtime, train)]
    finished = sorted(
        time.mktime(time.strptime(r["finished_at"][:19], "%Y-%m-%dT%H:%M:%S")) for r in results
    )
    util = [sum(s) / len(s) for s in zip(*samples)] if samples else []
    report = {
        "defconfig": args.defconfig,
        "name": name,
        "gpus": args.gpus,
        "jobs_per_gpu": cfg.get("exec_jobs_per_gpu"),
        "cells": len(results),
        "statuses": {
            s: sum(r["status"] == s for r in results) for s in ("ok", "diverged", "failed")
        },
        "trainable": sum(bool(r["metrics"].get("trainable")) for r in results),
        "wall_s": round(wall, 1),
        "cells_per_min": round(len(results) / wall * 60, 1),
        "mean_cell_runtime_s": round(sum(runtime) / len(runtime), 3),
        "mean_train_s": round(sum(train) / len(train), 3),
        "mean_overhead_s": round(sum(overhead) / len(overhead), 3),
        "overhead_fraction": round(sum(overhead) / sum(runtime), 4),
        "first_cell_finished_after_s": round(finished[0] - start, 1) if finished else None,
        "gpu_util_mean_pct": [round(u, 1) for u in util],
        "device": (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
            ).stdout.split("\n")[0]
            if os.path.exists("/usr/bin/nvidia-smi") or samples
            else "cpu"
        ),
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
