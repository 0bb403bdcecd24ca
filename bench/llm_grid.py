"""Benchmark an LLM trainability grid end to end through `make`: wall time, per-cell
overhead against training time, and GPU utilisation.

    python bench/llm_grid.py --defconfig fractal-16x16-gpu --gpus "0 1" --out grid.json
    python bench/llm_grid.py --defconfig fractal-16x16 --set "SWEEP_X_POINTS=4" --out cpu.json

It runs in a scratch copy of this checkout (--tree, default a directory under the system's
temporary one, named after the matrix; kept after the run), never in the developer's own
tree: its .config and results are not touched. A run cut short by --limit keeps its cells
there; --resume continues it (wall time and cells per minute count the cells this run
finished; the JSON says it resumed).

Per cell: train = the training loop's steps; setup = model (re)build, data and validation
batches before the loop; overhead = the worker's runtime for the cell minus train (setup,
final evaluation, labels, result writing). The worker start (imports, the first cell's
torch.compile) is paid once per worker: the time from the driver's start to the first
finished cell minus that cell's runtime.
"""

import argparse
import calendar
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kmatrix.manifest import nvidia_smi  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402

from scratch import copy_checkout  # noqa: E402  (bench/scratch.py)


def gpu_utilisation(samples, stop):
    """Poll nvidia-smi once a second: mean utilisation per GPU while the grid runs."""
    while not stop.is_set():
        out = nvidia_smi("--query-gpu=utilization.gpu", "--format=csv,noheader,nounits")
        try:
            samples.append([float(x) for x in out.split()])
        except (AttributeError, ValueError):  # no nvidia-smi (None) or no number
            return
        stop.wait(1.0)


MAKE = ["make", "--no-print-directory", f"PYTHON={sys.executable}"]


def make(tree, *args):
    return subprocess.run([*MAKE, *args], cwd=tree, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defconfig", default="fractal-16x16-gpu")
    ap.add_argument("--gpus", default="auto", help='EXEC_GPUS, e.g. "0" or "0 1"')
    ap.add_argument("--name", default=None, help="matrix name (default: derived)")
    ap.add_argument("--set", default="", help="more setconfig assignments")
    ap.add_argument("--limit", type=float, default=0, help="stop the run after N seconds")
    ap.add_argument("--resume", action="store_true", help="keep finished cells (no clean)")
    ap.add_argument("--tree", default=None, help="the scratch copy (default: under $TMPDIR)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    name = args.name or f"{args.defconfig}-bench-{args.gpus.replace(' ', '')}"
    tree = copy_checkout(args.tree or Path(tempfile.gettempdir()) / f"kmatrix-{name}")
    print(f"scratch copy: {tree}", flush=True)
    out = Path(args.out).resolve()
    make(tree, f"defconfig-{args.defconfig}")
    sets = f"SET=NAME={name} EXEC_GPUS='{args.gpus}' TRACK_WANDB_DISABLED=y {args.set}"
    make(tree, "setconfig", sets)
    if not args.resume:
        make(tree, "clean-results")
    samples, stop = [], threading.Event()
    poller = threading.Thread(target=gpu_utilisation, args=(samples, stop), daemon=True)
    poller.start()
    start = time.time()
    proc = subprocess.Popen(MAKE, cwd=tree, start_new_session=True)
    try:
        proc.wait(timeout=args.limit or None)
        stopped = False
    except subprocess.TimeoutExpired:  # SIGTERM: the driver stops its workers, keeps results
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        stopped = True
    wall = time.time() - start
    if stopped:
        make(tree, "summary")  # summarise what finished
    stop.set()

    cfg = json.loads((tree / "config.json").read_text())
    root = tree / cfg["exec_results_root"] / name
    summary = json.loads((root / "summary" / "summary.json").read_text())
    results = [json.loads(p.read_text()) for p in sorted(root.glob("cells/*/result.json"))]
    timed = [r for r in results if "train_seconds" in r["metrics"]]  # not failed cells
    train = [r["metrics"]["train_seconds"] for r in timed]
    setup = [r["metrics"].get("setup_seconds", 0.0) for r in timed]
    runtime = [r["runtime_s"] for r in timed]
    overhead = [rt - tr for rt, tr in zip(runtime, train)]
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None  # noqa: E731
    finished_at = lambda r: calendar.timegm(  # noqa: E731  (UTC, whole seconds)
        time.strptime(r["finished_at"][:19], "%Y-%m-%dT%H:%M:%S")
    )
    this_run = [r for r in results if finished_at(r) >= int(start)]
    first = min(this_run, key=finished_at) if this_run else None
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
        "stopped_at_limit": stopped,
        "resumed": args.resume,
        "cells_this_run": len(this_run),
        "cells_per_min": round(len(this_run) / wall * 60, 1),
        "mean_cell_runtime_s": mean(runtime),
        "mean_train_s": mean(train),
        "mean_setup_s": mean(setup),
        "mean_overhead_s": mean(overhead),
        "overhead_fraction": round(sum(overhead) / sum(runtime), 4) if runtime else None,
        "first_cell_finished_after_s": round(finished_at(first) - start, 1) if first else None,
        "worker_start_s": (
            round(finished_at(first) - start - first["runtime_s"], 1) if first else None
        ),
        "gpu_util_mean_pct": [round(u, 1) for u in util],
        "refinement": summary.get("refinement"),
        "maps": summary.get("workload_summary"),
        "device": (nvidia_smi("--query-gpu=name", "--format=csv,noheader") or "cpu").split("\n")[0],
    }
    write_bench_result(out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
