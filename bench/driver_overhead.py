"""Per-cell dispatch overhead of the local executor, with the fake test workload.

    python bench/driver_overhead.py --cells 400 --out bench/results/driver_overhead.json

Every cell does nothing, so the time per cell is the driver's own cost: handing the job
to a persistent worker, seeding, the manifest, writing result.json atomically, the reply,
and the progress line. Worker start-up (importing torch) is measured separately.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix import driver, results  # noqa: E402
from kmatrix.config import Config  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(
            dict(
                name="overhead",
                workload="tests.fake_workload",
                seeds=list(range(args.cells)),
                behaviours=["ok"],
                exec_results_root=tmp,
                exec_gpus=["none"],
                exec_cpu_workers=args.workers,
                exec_retries=0,
                track_wandb="disabled",
                profile="paper_repro",
            )
        )
        start = time.time()
        code = driver.run_matrix(cfg, live=False, out=lambda *a: None)
        wall = time.time() - start
        root = results.results_dir(cfg)
        finished = sorted(p.stat().st_mtime for p in root.glob("cells/*/result.json"))
    first = finished[0] - start
    steady = (finished[-1] - finished[0]) or wall
    report = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "cells": args.cells,
        "workers": args.workers,
        "exit_code": code,
        "wall_s": round(wall, 2),
        "first_result_after_s": round(first, 2),
        "cells_per_s_overall": round(args.cells / wall, 1),
        "cells_per_s_steady": round((args.cells - 1) / steady, 1) if steady else None,
        "ms_per_cell_per_worker_steady": round(1000 * steady * args.workers / (args.cells - 1), 1),
    }
    write_bench_result(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
