"""A fake workload for the driver's tests: each cell does what its params say.

params["behaviour"]: "ok" | "diverge" | "raise" | "transient" | "hang" | "exit" | "segfault"
| "progress" (reports 4 steps, 0.3 s apart) | "die_once" (the worker process dies on the cell's first run only) | "disk_full" (writing
its result fails with ENOSPC); any other name behaves like "ok".
"""

import errno
import json
import os
import time
from pathlib import Path

from kmatrix.errors import ConfigError, Diverged


def axes(cfg):
    return [("behaviour", list(cfg.get("behaviours", ["ok"]))), ("seed", list(cfg.seeds), "SEEDS")]


def validate(cfg):
    if cfg.get("fail_validate"):
        raise ConfigError("FAKE_OPTION", "deliberately broken", "unset it")


def cell_params(cfg, point):
    return {
        "behaviour": point["behaviour"],
        "lr": 0.1,
        "momentum": 0.9,
        "steps": 3,
        "sleep": cfg.get("sleep", 0.0),
        "counter_dir": cfg.get("counter_dir"),
        "broken_dry_run": cfg.get("broken_dry_run", False),
        "prepare": cfg.get("prepare", 0.0),
        "boundary": cfg.get("boundary"),
        "seconds": cfg.get("seconds", 1.0) * (1 + point["seed"]),
        "gate": cfg.get("gate"),  # cells of seed >= gate_seed wait for this file to exist
        "gate_seed": cfg.get("gate_seed", 0),
        "batched": cfg.get("batched", False),
    }


def _count(cell):
    """Count executions per cell in a file, so tests can tell what ran."""
    if cell.params.get("counter_dir"):
        path = Path(cell.params["counter_dir"]) / cell.id
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
        return len(path.read_text().split())
    return 1


def run(cell, ctx):
    runs = _count(cell)
    behaviour = cell.params["behaviour"]
    print(f"fake cell {cell.id} run {runs} in pid {os.getpid()}")
    if cell.params["sleep"]:
        time.sleep(cell.params["sleep"])
    if cell.params.get("gate") and cell.point["seed"] >= cell.params["gate_seed"]:
        while not Path(cell.params["gate"]).exists():  # a test decides when, not the clock
            time.sleep(0.05)
    if behaviour == "diverge":
        raise Diverged("loss became nan at step 2", {"steps": 2})
    if behaviour == "raise":
        raise ValueError("deliberate failure")
    if behaviour == "transient" and runs < 2:
        raise ConnectionError("hub time-out (simulated)")
    if behaviour == "hang":
        time.sleep(3600)
    if behaviour == "progress":
        from kmatrix import progress

        for step in range(1, 5):
            progress.report(step, 4, "steps")
            time.sleep(0.3)
    if behaviour == "exit" or (behaviour == "die_once" and runs < 2):
        os._exit(7)  # the worker process dies mid-cell, like an OOM kill or a lost machine
    if behaviour == "disk_full":  # the disk fills up while the cell writes its result
        import kmatrix.files

        def full(path, write):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        kmatrix.files.write_atomic = full
    if behaviour == "segfault":
        import ctypes

        ctypes.string_at(0)
    if cell.params.get("boundary") == "line":  # a grid's label: which side of lr = momentum
        inside = cell.params["lr"] < cell.params["momentum"]
        return {"metrics": {"inside": inside}, "losses": [1.0]}
    losses = [3.0, 2.0, 1.0]
    if behaviour == "noisy":  # not reproducible: the last loss depends on the process
        losses[-1] += os.getpid() * 1e-12
    return {
        "metrics": {"final_loss": 1.0 / (1 + cell.run_seed), "pid": os.getpid()},
        "losses": losses,
        "env": {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")},
        "knobs": {"fake_knob": "resolved at run time"},
    }


def gpus_per_cell(cfg):
    """GPUs per cell (a DDP workload's): cfg's gpus_per_cell, 1 by default."""
    return cfg.get("gpus_per_cell") or 1


def batch_key(cell):
    """With cfg `batched` every cell may share a batch (run_batch)."""
    return "fake" if cell.params.get("batched") else None


def run_batch(cells, ctxs):
    """Cells trained together: the batch's ids go to counter_dir/batches, one line a
    batch; a cell that raises fails the whole batch, as a bad cell in a real one would."""
    if cells[0].params.get("counter_dir"):
        Path(cells[0].params["counter_dir"]).mkdir(parents=True, exist_ok=True)
        with open(Path(cells[0].params["counter_dir"]) / "batches", "a") as f:
            f.write(" ".join(c.id for c in cells) + "\n")
    if any(c.params["behaviour"] == "raise" for c in cells):
        raise ValueError("deliberate failure of a batch")
    outs = []
    for cell, ctx in zip(cells, ctxs):
        try:
            outs.append(run(cell, ctx))
        except Diverged as e:
            outs.append(e)
    return outs


def label(result):
    """What a refined grid refines on."""
    return {"inside": (result.get("metrics") or {}).get("inside")}


def probe(cell, ctx):
    """`make estimate`: "seconds" per cell as this cell's own run-time estimate, plus, on a
    worker's first probe only, "prepare" seconds of one-time preparation (a download)."""
    prepare = 0.0
    if "prepared" not in ctx.cache:  # counted, not slept: a test asserts no time
        prepare = cell.params.get("prepare", 0.0)
        ctx.cache["prepared"] = True
    return {
        "unit": "steps",
        "per_cell": cell.params["steps"],
        "seconds_per_cell": cell.params["seconds"] + prepare,
        "probe_seconds": 0.0,
    }


def dry_run(cell, ctx):
    if cell.point["behaviour"] == "hang":
        time.sleep(3600)
    if cell.params["broken_dry_run"] and cell.point["behaviour"] == "ok":
        raise RuntimeError("broken option caught by the dry run")


def summarize(summary_dir, cells, results, cfg):
    done = [r for r in results.values() if r]
    (Path(summary_dir) / "fake.txt").write_text(json.dumps(sorted(r["id"] for r in done)))
    return {"finished": len(done)}
