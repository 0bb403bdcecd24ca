"""`make repro-check`: the same cell twice on one GPU and once on every other GPU.

Each run is a fresh worker process. Under paper_repro the loss curves (and any .npy
arrays the cell writes) must be bitwise identical; otherwise this prints where they
first differ and by how much.
"""

import dataclasses
import time

import numpy as np

from kmatrix import results, stages
from kmatrix.executor import LocalExecutor, detect_gpus, local_slots
from kmatrix.job import make_job
from kmatrix.plan import plan
from kmatrix.progress import Progress
from kmatrix.schedule import schedule
from kmatrix.seeding import PROFILE_ENV
from kmatrix.batches import make_batches


def _arrays(root, cell_id):
    """Everything repro-check compares: the loss curve and every .npy array."""
    directory = results.cell_dir(root, cell_id)
    result = results.read_result(root, cell_id) or {}
    arrays = {"losses": np.asarray(result.get("losses") or [], dtype=np.float64)}
    for path in sorted(directory.glob("*.npy")):
        arrays[path.name] = np.load(path, allow_pickle=False)
    return result, arrays


def compare(a, b):
    """None when bitwise equal, else a one-line description of the first difference."""
    if a.shape != b.shape:
        return f"shapes differ: {a.shape} vs {b.shape}"
    same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b
    if same.all():
        return None
    flat = np.flatnonzero(~same.reshape(-1))
    first = int(flat[0])
    with np.errstate(invalid="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).reshape(-1)
    return (
        f"{len(flat)} of {a.size} values differ; first at index {first} "
        f"({a.reshape(-1)[first]!r} vs {b.reshape(-1)[first]!r}); "
        f"max abs diff {np.nanmax(diff[flat]):.3e}"
    )


REPRO_BATCH = 4  # a batched cell is checked in a batch of this many (batch-size bugs show)


def repro_check(cfg, cell_id=None, gpus=None, out=print):
    # The cells `make plan` lists: a staged plan's later stages too, as far as the
    # results decide them.
    cells = plan(cfg)
    if cell_id and not any(c.id == cell_id for c in cells):
        cells, _, _ = stages.known_cells(cfg, cells, results.results_dir(cfg))
    cell = next((c for c in cells if c.id == cell_id), None) if cell_id else cells[0]
    if cell is None:
        out(f"error: no cell {cell_id!r} in the plan (see `make plan`)")
        return 2
    gpus = detect_gpus(cfg.get("exec_gpus")) if gpus is None else gpus
    profile = cfg.get("profile") or "paper_repro"
    results.open_dir(results.results_dir(cfg))  # one make made, or a new one
    root = results.subdir(results.results_dir(cfg), "repro-check", fresh=True)
    # (label, slot): twice on the first device, once on each other GPU.
    if gpus:
        runs = [("a", gpus[0]), ("b", gpus[0])] + [(f"gpu{g}", g) for g in gpus[1:]]
    else:
        runs = [("a", None), ("b", None)]
    # as `make` runs it: in a batch (of up to REPRO_BATCH cells of its own) when batching
    batch = next(b for b in make_batches(cfg, cells) if cell in b)
    batch = [cell] + [c for c in batch if c is not cell][: REPRO_BATCH - 1]
    together = f", in a batch of {len(batch)}" if len(batch) > 1 else ""
    out(f"  REPRO   {cell.id} ({profile}): {len(runs)} runs, each in a fresh worker{together}")
    job = make_job(cfg, "run", root, manifest=False)
    for label, gpu in runs:
        copies = [dataclasses.replace(c, id=f"{c.id}--{label}") for c in batch]
        if gpu is None:
            slots = local_slots(cfg, cpu_only=True)[:1]
        else:
            slots = local_slots(cfg, gpus=[gpu])[:1]
        started = time.time()
        with LocalExecutor(slots, env=PROFILE_ENV.get(profile, {})) as executor:
            progress = Progress(len(copies), quiet=True)
            reply = schedule(cfg, copies, executor, job, progress, [copies])[copies[0].id]
        where = slots[0][0]
        out(
            f"  RUN     {label:<6} on {where:<6} {reply['status']:<8} {time.time() - started:.1f} s"
        )
        if reply["status"] == "failed":
            out(f"  FAIL    run {label} failed: {reply.get('error')}")
            return 1
    reference, ref_arrays = _arrays(root, f"{cell.id}--a")
    failures = 0
    for label, _ in runs[1:]:
        _, arrays = _arrays(root, f"{cell.id}--{label}")
        for name in sorted(set(ref_arrays) | set(arrays)):
            if name not in arrays or name not in ref_arrays:
                out(f"  DIFF    {label} vs a: {name} present in only one run")
                failures += 1
                continue
            problem = compare(ref_arrays[name], arrays[name])
            if problem:
                out(f"  DIFF    {label} vs a: {name}: {problem}")
                failures += 1
    compared = ", ".join(f"{k} ({v.size})" for k, v in ref_arrays.items())
    if failures:
        verdict = "bitwise reproducibility is only promised under paper_repro"
        out(f"  FAIL    {failures} difference(s); {verdict if profile != 'paper_repro' else ''}")
        return 1
    out(f"  PASS    bitwise identical across {len(runs)} runs: {compared}")
    return 0
