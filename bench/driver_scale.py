"""How the driver scales with the number of cells: planning, plan.json, `make plan`, and
how soon a resumed, half-finished grid starts its first new cell.

    python bench/driver_scale.py --out bench/results/driver_scale.json

1. The flagship LLM grid (fractal-16x16's configuration) at 512 x 512 = 262,144 cells:
   time and peak memory of plan(), of writing plan.json, and the lines `make plan` prints.
2. A 128 x 128 grid of the fake test workload with every other cell already finished
   (result.json files as a real run leaves them): `make` in a fresh process, timed from its
   start to the first new cell's result.json.
"""

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kmatrix import files, kconfig, results  # noqa: E402
from kmatrix.config import Config  # noqa: E402
from kmatrix.driver import plan_table  # noqa: E402
from kmatrix.plan import plan, write_plan  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402


def bench_plan(side, tmp):
    values = kconfig.apply_defconfig("fractal-16x16", dotconfig=Path(tmp) / ".config")
    cfg = Config(values).replace(sweep_x_points=side, sweep_y_points=side)
    t0 = time.perf_counter()
    cells = plan(cfg)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_plan(cells, Path(tmp) / "plan.json")
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    lines = plan_table(cfg, cells)
    t_table = time.perf_counter() - t0
    return {
        "cells": len(cells),
        "plan_s": round(t_plan, 2),
        "write_plan_s": round(t_write, 2),
        "plan_json_mb": round((Path(tmp) / "plan.json").stat().st_size / 1e6, 1),
        "make_plan_lines": len(lines),
        "make_plan_bytes": len("\n".join(lines)),
        "make_plan_table_s": round(t_table, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


RESUME = """
import sys
sys.path.insert(0, {root!r})
from kmatrix import driver
from kmatrix.config import Config
driver.run_matrix(Config({values!r}), live=False)
"""


def bench_resume(side, tmp):
    values = dict(
        name="scale",
        workload="tests.fake_workload",
        seeds=[0],
        behaviours=["ok"],
        sweep=True,
        sweep_x_param="lr",
        sweep_x_min=1e-3,
        sweep_x_max=1.0,
        sweep_x_points=side,
        sweep_y_param="momentum",
        sweep_y_min=1e-3,
        sweep_y_max=1.0,
        sweep_y_points=side,
        exec_results_root=str(Path(tmp) / "results"),
        exec_gpus=["none"],
        exec_cpu_workers=2,
        track_wandb="disabled",
        profile="paper_repro",
    )
    cfg = Config(values)
    cells = plan(cfg)
    root = results.results_dir(cfg)
    results.claim(root, cfg, config_files=())
    losses = [3.0 - k / 20 for k in range(30)]
    for cell in cells[::2]:  # half finished, as a killed run leaves them
        files.write_json_atomic(
            results.make_cell_dir(root, cell.id) / "result.json",
            {"id": cell.id, "status": "ok", "metrics": {"final_loss": 1.5}, "losses": losses,
             "point": cell.point, "params": cell.params, "runtime_s": 1.0},
        )  # fmt: skip
    first_new = results.cell_dir(root, cells[1].id) / "result.json"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", RESUME.format(root=str(ROOT), values=values)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while not first_new.exists() and proc.poll() is None and time.perf_counter() - t0 < 600:
        time.sleep(0.01)
    seconds = time.perf_counter() - t0
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return {"cells": len(cells), "done": len(cells[::2]), "first_new_cell_s": round(seconds, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan-side", type=int, default=512)
    ap.add_argument("--resume-side", type=int, default=128)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        resume = bench_resume(args.resume_side, tmp)
    with tempfile.TemporaryDirectory() as tmp:
        planning = bench_plan(args.plan_side, tmp)
    out = {
        "machine": f"{platform.node()}: {os.cpu_count()} CPU cores, {platform.processor()}",
        "python": platform.python_version(),
        "plan": planning,
        "resume": resume,
    }
    write_bench_result(args.out, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
