"""A batch job in a worker: its cells trained together by the workload's run_batch.

Every cell keeps what a cell run alone has: its directory, log.txt (the workload's
ctx.log writes there; output addressed to no cell, such as warnings, goes to the first
cell's log), manifest.json, tracker and result.json. A cell whose directory cannot be
written fails alone; an exception out of run_batch fails every cell of the batch (the
scheduler then runs it again in halves, kmatrix/batches.py).
"""

import os
import time
import traceback
from pathlib import Path

from kmatrix.cell import RunContext
from kmatrix.errors import Diverged
from kmatrix.results import cell_dir, make_cell_dir

LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW


def run_batch(job, wl, cache, device, output_to, write):
    """Run job.cells (kind "run") as one batch; returns one reply per cell, in order.
    output_to(fd) points fds 1 and 2 at an open log for a block; write(job, cell,
    out_dir, reply, outcome) writes a cell's result.json (both kmatrix.worker's)."""
    from kmatrix import gpu_usage, manifest, seeding, tracking

    start = time.time()
    replies, logs, live = {}, {}, []
    for cell in job.cells:
        out_dir = cell_dir(job.root, cell.id)
        try:
            make_cell_dir(job.root, cell.id)
            logs[cell.id] = os.fdopen(os.open(out_dir / "log.txt", LOG_FLAGS, 0o644), "a")
        except OSError as e:
            error = f"cannot write the cell's directory {out_dir}: {e.strerror or e}"
            replies[cell.id] = {"id": cell.id, "status": "failed", "error": error}
            replies[cell.id]["errno"] = e.errno
            continue
        live.append(cell)
    outcomes, ctxs, trackers, error, usage = {}, [], {}, None, None
    if live:
        with output_to(os.dup(logs[live[0].id].fileno())):
            try:
                seeding.seed_everything(live[0].run_seed)
                knobs = seeding.apply_profile(job.profile)
                for cell in live:
                    out_dir = cell_dir(job.root, cell.id)
                    ctx = RunContext(device, out_dir, cache, job.profile, root=Path(job.root))
                    ctx.log = lambda *a, f=logs[cell.id]: print(*a, file=f, flush=True)
                    ctx.log(
                        f"== cell {cell.id} attempt {job.attempt} on {device}, one of "
                        f"{len(live)} cells trained together (the first: {live[0].id})"
                    )
                    if job.manifest:
                        manifest.write(out_dir, cell, job, knobs, device)
                    ctx.tracker = trackers[cell.id] = tracking.Tracker.for_cell(job.tracking, cell)
                    ctxs.append(ctx)
                sampler = gpu_usage.Sampler(device).start()  # the batch's, for each cell
                try:
                    outcomes = dict(zip((c.id for c in live), wl.run_batch(live, ctxs)))
                finally:
                    usage = sampler.stop()
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # the batch fails, the worker lives on
                error = f"{type(e).__name__}: {e}"
                traceback.print_exc()
    runtime = round(time.time() - start, 3)
    for cell in live:
        log = logs[cell.id]
        reply = {"id": cell.id, "status": "ok", "error": None, "runtime_s": runtime}
        outcome = {"metrics": {}, "extra": {}}
        out = outcomes.get(cell.id)
        if error is not None or out is None:
            reply.update(status="failed", error=error or "the batch returned no result")
            print(f"the batch failed: {reply['error']}", file=log, flush=True)
        elif isinstance(out, Diverged):
            reply.update(status="diverged", error=str(out))
            outcome = {"metrics": out.metrics, "extra": {"losses": out.losses}}
            outcome["extra"]["val_losses"] = out.val_losses
            if out.ran_with:
                outcome["extra"]["ran_with"] = out.ran_with
                if job.manifest:
                    manifest.add(cell_dir(job.root, cell.id), ran_with=out.ran_with)
            print(f"diverged: {out}", file=log, flush=True)
        else:
            extra = dict(out)
            reply["status"] = extra.pop("status", "ok")
            outcome = {"metrics": extra.pop("metrics", {}), "extra": extra}
            if job.manifest and extra.get("knobs"):
                manifest.add_knobs(cell_dir(job.root, cell.id), extra["knobs"])
            if job.manifest and extra.get("ran_with"):
                manifest.add(cell_dir(job.root, cell.id), ran_with=extra["ran_with"])
        if usage is not None:
            outcome["extra"]["gpu_usage"] = usage
        if cell.id in trackers:
            trackers[cell.id].finish(reply["status"], outcome["metrics"])
        log.close()
        write(job, cell, cell_dir(job.root, cell.id), reply, outcome)
        replies[cell.id] = reply
    return [replies[c.id] for c in job.cells]
