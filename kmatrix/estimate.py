"""`make estimate`: how long `make` will take, from probes that run like `make` runs cells."""

import contextlib
import heapq
import io
import math
import os
import random
import tempfile
import time
from pathlib import Path
from statistics import fmean

from kmatrix import manifest, refine, results, stages, tracking
from kmatrix.batches import make_batches
from kmatrix.job import make_job
from kmatrix.plan import plan
from kmatrix.progress import Progress
from kmatrix.schedule import make_executor, schedule
from kmatrix.summary import summarize


def _probe_round(cfg, batches, executor, job, tag):
    """Probe `batches` (lists of cells, one job each, as `make` would run them) on the
    executor's workers; one list of replies per batch (ids tagged). Every cell of a
    batch carries the batch's one answer (kmatrix/batch_run.py)."""
    import dataclasses

    tagged = [[dataclasses.replace(c, id=f"{c.id}--{tag}") for c in b] for b in batches]
    cells = [c for b in tagged for c in b]
    final = schedule(cfg, cells, executor, job, Progress(len(cells), quiet=True), tagged)
    return [[final[c.id] for c in b] for b in tagged]


def _batch_seconds(batch, replies):
    """A probed job's run time: the worker's overhead around the probe plus the probe's
    estimate, scaled to the job's cells where the answer covers fewer of them ("cells":
    a workload that times one chunk of a batch, or probes one cell only)."""
    r = replies[0]
    covered = r["probe"].get("cells", 1)
    return (
        r["runtime_s"]
        - r["probe"]["probe_seconds"]
        + r["probe"]["seconds_per_cell"] * (len(batch) / covered)
    )


def _makespan(durations, n_slots):
    """When the last of these jobs ends if each, in order, goes to the slot free first
    (as kmatrix.schedule hands them out)."""
    free = [0.0] * n_slots
    for d in durations:
        heapq.heapreplace(free, free[0] + d)
    return max(free)


def estimate(cfg, out=print, samples_per_slot=2):
    """`make estimate`: a time estimate from probes that run like `make` runs cells.

    On the slots `make` would use, in the jobs `make` would form (one cell each, or the
    batches of cells trained together under EXEC_BATCH, kmatrix/batches.py): one warm-up
    probe per worker (imports, one-time data preparation, the first model build and
    compile), then `samples_per_slot` probes per slot of jobs spread over the plan. A probe
    goes through the worker's whole per-cell path (seeding, profile, manifest, W&B) and
    calls the workload's probe(cell, ctx) (for a batch once, with ctx.batch = its cells),
    which runs briefly and returns {"unit", "per_cell", "seconds_per_cell",
    "probe_seconds"} and, for a batch, "cells" (how many of them its seconds cover): its
    own estimate of the run time on this device. Per job: that estimate plus the
    worker's overhead around it; the total places every job of the plan on the first free
    slot, each taking its cells times a probed job's seconds per cell. The summary at the
    end is timed by rendering it from no results. The range is the spread over the
    sampled jobs; cells that stop early (divergence) make the real run shorter.
    """
    root = results.results_dir(cfg)
    cells, found, complete = stages.known_cells(cfg, plan(cfg), root)
    todo = [c for c in cells if not results.is_done(found[c.id])]
    out(f"  CELLS   {len(cells)} ({cfg.workload}, {cfg.get('profile')}), {len(todo)} to run")
    later = refine.later_cells(cfg, cells) if not complete else 0
    if later:
        out(f"  LATER   up to {later:,} more cells in later stages, planned from these results")
    if not todo:
        return 0
    with tempfile.TemporaryDirectory(prefix="kmatrix-estimate-") as scratch:
        tracks = {**tracking.settings(cfg, root), "dir": scratch}
        job = make_job(cfg, "probe", scratch, tracking=tracks)
        started = time.time()
        snapshot = time.time()
        manifest.write_environment_snapshot(Path(scratch))
        snapshot = time.time() - snapshot
        with make_executor(cfg, max_cells=len(todo)) as executor:
            slots = [s.name for s in executor.slots]  # the executor's, Ray's included
            jobs = make_batches(cfg, todo, len(slots), executor.cpu)
            k = min(len(jobs), samples_per_slot * len(slots))
            sample = [jobs[i] for i in sorted(random.Random(0).sample(range(len(jobs)), k))]
            warm = _probe_round(cfg, jobs[: len(slots)], executor, job, "warm")
            first = time.time() - started - snapshot
            timed = _probe_round(cfg, sample, executor, job, "probe")
        summary_s = _summary_seconds(cfg, cells, Path(scratch) / cfg.name, out)
    failed = [r for rs in warm + timed for r in rs if r["status"] == "failed"]
    if failed:
        out(f"  FAIL    a probe failed: {failed[0].get('error')}")
        return 1
    seconds = [_batch_seconds(b, rs) for b, rs in zip(sample, timed)]
    per_cell = [t / len(b) for t, b in zip(seconds, sample)]
    probe = timed[0][0]["probe"]
    warm_s = max(r["runtime_s"] for rs in warm for r in rs)
    start_s = snapshot + max(0.0, first - warm_s)  # environment snapshot, worker start
    low, mean, high = (
        start_s + _makespan([len(b) * v for b in jobs], len(slots)) + summary_s
        for v in (min(per_cell), fmean(per_cell), max(per_cell))
    )
    where = f"{len(slots)} slot(s): {', '.join(slots[:4])}"
    out(f"  WORK    {probe['per_cell']:,} {probe['unit']} per cell")
    batched = max(len(b) for b in jobs) > 1
    if batched:
        out(
            f"  BATCHES {len(todo)} cells in {len(jobs)} jobs of up to {max(map(len, jobs))} "
            "cells trained together (EXEC_BATCH)"
        )
        out(
            f"  PROBE   {len(seconds)} batches of {_sizes(sample)} cells: {min(seconds):.2f} .. "
            f"{max(seconds):.2f} s per batch, {min(per_cell):.3f} .. {max(per_cell):.3f} s per "
            f"cell (mean {fmean(per_cell):.3f}) on {where}"
        )
    else:
        out(
            f"  PROBE   {len(per_cell)} cells: {min(per_cell):.2f} .. {max(per_cell):.2f} s per "
            f"cell (mean {fmean(per_cell):.2f}) on {where}"
        )
    out(f"  START   {start_s:.1f} s (environment snapshot, workers' start-up)")
    out(f"  SUMMARY {summary_s:.1f} s (figures, tables, the W&B summary run)")
    out(f"  TOTAL   about {_minutes(mean)} (range {_minutes(low)} .. {_minutes(high)})")
    what = (
        f"{len(seconds)} probed batches' times per cell (a batch of another size is "
        "counted as its cells times that)"
        if batched
        else f"{len(per_cell)} probed cells' times"
    )
    out(
        f"  COVERS  the spread of the {what}, on this machine at its load now (1-min load "
        f"average {_load()}); not a change of load (other jobs starting or stopping shift "
        "every cell), nor cells slower than every probed one"
    )
    if later:
        most = start_s + math.ceil((len(todo) + later) / len(slots)) * max(per_cell)
        out(f"  AT MOST {_minutes(most)} if the later stages ran every cell they may")
    return 0


def _sizes(batches):
    low, high = min(map(len, batches)), max(map(len, batches))
    return f"{low}" if low == high else f"{low}-{high}"


def _summary_seconds(cfg, cells, scratch_root, out):
    """How long the summary at the end of `make` takes: the real one, rendered here from
    no results (every cell drawn as missing) into a scratch directory."""
    started = time.time()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            summarize(cfg, cells, scratch_root)
    except Exception as e:  # noqa: BLE001 - an estimate, not a run: say so and go on
        out(f"  SUMMARY not timed ({type(e).__name__}: {e})")
        return 0.0
    return time.time() - started


def _load():
    try:
        return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return "unknown"


def _minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
