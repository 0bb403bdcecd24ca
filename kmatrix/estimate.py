"""`make estimate`: how long `make` will take, from probes that run like `make` runs cells."""

import contextlib
import io
import math
import os
import random
import tempfile
import time
from pathlib import Path
from statistics import fmean

from kmatrix import manifest, refine, results, stages, tracking
from kmatrix.job import make_job
from kmatrix.plan import plan
from kmatrix.progress import Progress
from kmatrix.schedule import make_executor, schedule
from kmatrix.summary import summarize


def _probe_round(cfg, cells, executor, job, tag):
    """Probe `cells` on the executor's workers; {cell id: reply} (ids tagged)."""
    import dataclasses

    tagged = [dataclasses.replace(c, id=f"{c.id}--{tag}") for c in cells]
    return schedule(cfg, tagged, executor, job, Progress(len(tagged), quiet=True))


def estimate(cfg, out=print, samples_per_slot=2):
    """`make estimate`: a time estimate from probes that run like `make` runs cells.

    On the slots `make` would use: one warm-up probe per worker (imports, one-time data
    preparation, the first model build and compile), then `samples_per_slot` probes per
    slot of cells spread over the plan. A probe goes through the worker's whole per-cell
    path (seeding, profile, manifest, W&B) and calls the workload's probe(cell, ctx), which
    runs the cell briefly and returns {"unit", "per_cell", "seconds_per_cell",
    "probe_seconds"}: its own estimate of the cell's run time on this device. Per cell:
    that estimate plus the worker's overhead around it. The summary at the end is timed by
    rendering it from no results. The range is the spread over the
    sampled cells; cells that stop early (divergence) make the real run shorter.
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
            k = min(len(todo), samples_per_slot * len(slots))
            sample = sorted(random.Random(0).sample(todo, k), key=lambda c: c.index)  # spread
            warm = _probe_round(cfg, todo[: len(slots)], executor, job, "warm")
            first = time.time() - started - snapshot
            timed = _probe_round(cfg, sample, executor, job, "probe")
        summary_s = _summary_seconds(cfg, cells, Path(scratch) / cfg.name, out)
    failed = [r for r in list(warm.values()) + list(timed.values()) if r["status"] == "failed"]
    if failed:
        out(f"  FAIL    a probe failed: {failed[0].get('error')}")
        return 1
    per_cell = [r["runtime_s"] - r["probe"]["probe_seconds"] + r["probe"]["seconds_per_cell"]
                for r in timed.values()]  # fmt: skip
    probe = next(iter(timed.values()))["probe"]
    warm_s = max(r["runtime_s"] for r in warm.values())
    start_s = snapshot + max(0.0, first - warm_s)  # environment snapshot, worker start
    rounds = math.ceil(len(todo) / len(slots))
    low, mean, high = (
        start_s + rounds * v + summary_s for v in (min(per_cell), fmean(per_cell), max(per_cell))
    )
    where = f"{len(slots)} slot(s): {', '.join(slots[:4])}"
    out(f"  WORK    {probe['per_cell']:,} {probe['unit']} per cell")
    out(
        f"  PROBE   {len(per_cell)} cells: {min(per_cell):.2f} .. {max(per_cell):.2f} s per cell "
        f"(mean {fmean(per_cell):.2f}) on {where}"
    )
    out(f"  START   {start_s:.1f} s (environment snapshot, workers' start-up)")
    out(f"  SUMMARY {summary_s:.1f} s (figures, tables, the W&B summary run)")
    out(f"  TOTAL   about {_minutes(mean)} (range {_minutes(low)} .. {_minutes(high)})")
    out(
        f"  COVERS  the spread of the {len(per_cell)} probed cells' times, on this machine at "
        f"its load now (1-min load average {_load()}); not a change of load (other jobs "
        "starting or stopping shift every cell), nor cells slower than every probed one"
    )
    if later:
        most = start_s + math.ceil((len(todo) + later) / len(slots)) * max(per_cell)
        out(f"  AT MOST {_minutes(most)} if the later stages ran every cell they may")
    return 0


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
