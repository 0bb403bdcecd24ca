"""A persistent worker process: runs jobs one after another, keeping heavy state.

Started by the executor as `python -m kmatrix.worker REPLY_FD`, pinned to one GPU with
CUDA_VISIBLE_DEVICES. Jobs (kmatrix.job.Job.to_dict()) arrive as JSON lines on stdin;
`{"started": job id}` goes back on REPLY_FD when a job starts, and `{"replies": [one
reply per cell]}` when it ends. While a cell runs, file descriptors 1 and 2 point at the
cell's log.txt, so prints, warnings and even a C-level crash message land there.
"""

import contextlib
import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from kmatrix import progress
from kmatrix.cell import RunContext
from kmatrix.errors import Diverged
from kmatrix.job import Job
from kmatrix.results import cell_dir, make_cell_dir, write_result


def _die_with_parent():
    """Ask Linux to kill us when the driver dies, so no orphan keeps writing results."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(1)


@contextlib.contextmanager
def _output_to(log_fd):
    """Point fds 1 and 2 (Python and C output alike) at the open log for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_job(job, cache, workloads):
    """Run a job's cells one after another; return one reply per cell.

    job.kind "run" writes each cell's result.json; "dry_run" calls the workload's
    dry_run; "probe" (`make estimate`) goes through a run's every step (manifest,
    tracking) but calls the workload's probe, whose answer is the reply's "probe". A run
    of several cells whose workload has run_batch trains them together
    (kmatrix/batch_run.py)."""
    if job.kind == "run" and len(job.cells) > 1:
        wl = _workload(job.cells[0].workload, workloads)
        if hasattr(wl, "run_batch"):
            from kmatrix.batch_run import run_batch

            return run_batch(job, wl, cache, _device(), _output_to, _write)
    return [run_cell(job, cell, cache, workloads) for cell in job.cells]


def run_cell(job, cell, cache, workloads):
    """One cell of a job: prepare its directory and log, run it by kind, write its result."""
    out_dir = cell_dir(job.root, cell.id)
    try:  # the results tree can be read-only, full or hold planted symlinks: fail the cell
        make_cell_dir(job.root, cell.id)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        log_fd = os.open(out_dir / "log.txt", flags, 0o644)
    except OSError as e:
        error = f"cannot write the cell's directory {out_dir}: {e.strerror or e}"
        return {"id": cell.id, "status": "failed", "error": error, "errno": e.errno}
    start = time.time()
    reply = {"id": cell.id, "status": "ok", "error": None}
    outcome = {"metrics": {}, "extra": {}}
    with _output_to(log_fd):
        _run_by_kind(job, cell, out_dir, cache, workloads, reply, outcome)
    reply["runtime_s"] = round(time.time() - start, 3)
    if job.kind == "run":
        _write(job, cell, out_dir, reply, outcome)
    return reply


def _workload(name, workloads):
    if name not in workloads:
        workloads[name] = importlib.import_module(name)
    return workloads[name]


def _run_by_kind(job, cell, out_dir, cache, workloads, reply, outcome):
    """Seed, apply the profile and run the cell as job.kind says; fills `reply` (status,
    error, probe) and `outcome` (metrics and the workload's extra result keys)."""
    from kmatrix import gpu_usage, manifest, seeding, tracking

    tracker = sampler = None
    try:
        wl = _workload(cell.workload, workloads)
        seeding.seed_everything(cell.run_seed)
        knobs = seeding.apply_profile(job.profile)
        ctx = RunContext(_device(), out_dir, cache, job.profile, root=Path(job.root))
        ctx.dry_run = job.kind == "dry_run"
        if ctx.dry_run:
            wl.dry_run(cell, ctx)
            return
        print(f"== cell {cell.id} attempt {job.attempt} on {ctx.device}", flush=True)
        if job.manifest:
            manifest.write(out_dir, cell, job, knobs, ctx.device)
        tracker = ctx.tracker = tracking.Tracker.for_cell(job.tracking, cell)
        if job.kind == "probe":
            reply["probe"] = wl.probe(cell, ctx)
            return
        sampler = gpu_usage.Sampler(ctx.device).start()
        extra = dict(wl.run(cell, ctx) or {})
        reply["status"] = extra.pop("status", "ok")
        outcome["metrics"] = extra.pop("metrics", {})
        outcome["extra"] = extra
        if job.manifest and extra.get("knobs"):
            manifest.add_knobs(out_dir, extra["knobs"])
        if job.manifest and extra.get("ran_with"):  # e.g. gpt2's out-of-memory fallback
            manifest.add(out_dir, ran_with=extra["ran_with"])
    except Diverged as e:
        reply["status"], reply["error"], outcome["metrics"] = "diverged", str(e), e.metrics
        outcome["extra"] = {"losses": e.losses, "val_losses": e.val_losses}
        if e.ran_with:
            outcome["extra"]["ran_with"] = e.ran_with
            if job.manifest:
                manifest.add(out_dir, ran_with=e.ran_with)
        print(f"diverged: {e}", flush=True)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # even sys.exit() in a cell fails the cell, not the worker
        reply["status"] = "failed"
        reply["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        if sampler is not None:
            outcome["extra"]["gpu_usage"] = sampler.stop()
        if tracker is not None:
            tracker.finish(reply["status"], outcome["metrics"])


def _write(job, cell, out_dir, reply, outcome):
    """The cell's result.json; a full disk fails the cell and says why."""
    try:
        write_result(
            out_dir,
            cell,
            reply["status"],
            runtime_s=reply["runtime_s"],
            error=reply["error"],
            metrics=outcome["metrics"],
            job=job,
            **outcome["extra"],
        )
    except OSError as e:
        reply.update(status="failed", errno=e.errno)
        reply["error"] = f"could not write {out_dir / 'result.json'}: {e.strerror or e}"


def main():
    reply = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    # Every cell needs torch (seeding, device); load it before taking any, and pay now for
    # the ~2 s that the first use_deterministic_algorithms call spends importing.
    import torch

    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
    # A smaller GPU, simulated: the caching allocator refuses more than this share of it
    # (out-of-memory fallbacks shown on a large GPU; docs/gpt2.md).
    fraction = os.environ.get("KMATRIX_GPU_MEMORY_FRACTION")
    if fraction and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(float(fraction))
    cache, workloads = {}, {}
    for line in sys.stdin:
        if not line.strip():
            continue
        job = Job.from_dict(json.loads(line))
        # The job's clock (and its timeout) starts now, not while this worker started up.
        reply.write(json.dumps({"started": job.id}) + "\n")
        # The workload's progress.report() calls reach the driver's heartbeat.
        progress.listen(lambda part: reply.write(json.dumps({"progress": job.id, **part}) + "\n"))
        reply.write(json.dumps({"replies": run_job(job, cache, workloads)}) + "\n")
        progress.listen(None)


if __name__ == "__main__":
    main()
