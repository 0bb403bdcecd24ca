"""The default job as a new user meets it: `make` on a fresh checkout, timed, with the
machine's load recorded, since on a shared machine the load sets the time.

    python bench/default_job.py --out bench/results/default_job.json [--note TEXT]

In a scratch copy of this checkout (no .config, no results; .venv skipped: this Python
is used): `make` from start to exit, its output kept. Records the wall time, the cell's
own run time (result.json), the CPU time of make and everything it ran (under load it grows
too: measured, not assumed constant), the 1-minute load average before, during (sampled every 5 s)
and after, the CPU count and the commit.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kmatrix.manifest import write_bench_result  # noqa: E402

from scratch import copy_checkout  # noqa: E402  (bench/scratch.py)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    loads, done = [], threading.Event()

    def sample():
        while not done.wait(5.0):
            loads.append(os.getloadavg()[0])

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "kmatrix"
        copy_checkout(tree, share_data=False)
        load_before = os.getloadavg()
        threading.Thread(target=sample, daemon=True).start()
        started, cpu_before = time.time(), os.times()
        proc = subprocess.run(
            ["make", "--no-print-directory", f"PYTHON={sys.executable}"],
            cwd=tree,
            capture_output=True,
            text=True,
        )
        wall = time.time() - started
        cpu_after = os.times()  # make and everything under it (all waited for)
        cpu = sum(
            getattr(cpu_after, f) - getattr(cpu_before, f)
            for f in ("children_user", "children_system")
        )
        done.set()
        result = json.loads(
            next((tree / "results" / "default" / "cells").glob("*/result.json")).read_text()
        )
    report = {
        "machine": f"{platform.node()}: {os.cpu_count()} CPU cores",
        "python": platform.python_version(),
        "commit": commit,
        "note": args.note,
        "make_exit": proc.returncode,
        "wall_s": round(wall, 1),
        "cell_runtime_s": result.get("runtime_s"),
        "cpu_s": round(cpu, 1),  # CPU time of make and all it ran
        "load_avg_1m_before": round(load_before[0], 2),
        "load_avg_1m_during": {
            "min": round(min(loads), 2) if loads else None,
            "mean": round(sum(loads) / len(loads), 2) if loads else None,
            "max": round(max(loads), 2) if loads else None,
        },
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "output": proc.stdout.splitlines() + proc.stderr.splitlines(),
    }
    write_bench_result(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "output"}, indent=1))


if __name__ == "__main__":
    main()
