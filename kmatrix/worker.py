"""A persistent worker process: runs cells one after another, keeping heavy state.

Started by the executor as `python -m kmatrix.worker REPLY_FD`, pinned to one GPU with
CUDA_VISIBLE_DEVICES. Jobs arrive as JSON lines on stdin; one JSON line per finished
job goes back on REPLY_FD. While a cell runs, file descriptors 1 and 2 point at the
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
from kmatrix.cell import Cell, RunContext
from kmatrix.errors import Diverged
from kmatrix.results import make_cell_dir, write_result


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
    """Run one cell; return a reply. job["kind"]: "run" writes result.json; "dry_run"
    calls the workload's dry_run; "probe" (`make estimate`) goes through a run's every
    step (manifest, tracking) but calls the workload's probe, whose answer is the reply's
    "probe"."""
    from kmatrix import manifest, seeding, tracking

    cell = Cell.from_dict(job["cell"])
    out_dir = Path(job["out_dir"])
    try:  # the results tree can be read-only, full or hold planted symlinks: fail the cell
        make_cell_dir(out_dir.parent.parent, out_dir.name)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        log_fd = os.open(out_dir / "log.txt", flags, 0o644)
    except OSError as e:
        error = f"cannot write the cell's directory {out_dir}: {e.strerror or e}"
        return {"id": cell.id, "status": "failed", "error": error, "errno": e.errno}
    dry = job.get("kind") == "dry_run"
    probing = job.get("kind") == "probe"
    start = time.time()
    reply = {"id": cell.id, "status": "ok", "error": None}
    metrics, extra, tracker = {}, {}, None
    with _output_to(log_fd):
        try:
            if cell.workload not in workloads:
                workloads[cell.workload] = importlib.import_module(cell.workload)
            wl = workloads[cell.workload]
            seeding.seed_everything(cell.run_seed)
            knobs = seeding.apply_profile(job.get("profile", "paper_repro"))
            ctx = RunContext(_device(), out_dir, cache, job.get("profile", "paper_repro"))
            ctx.dry_run = dry
            if dry:
                wl.dry_run(cell, ctx)
            else:
                print(
                    f"== cell {cell.id} attempt {job.get('attempt', 1)} on {ctx.device}", flush=True
                )
                if job.get("manifest", True):
                    manifest.write(out_dir, cell, job, knobs, ctx.device)
                tracker = tracking.Tracker.for_cell(job.get("tracking"), cell)
                ctx.tracker = tracker
                if probing:
                    reply["probe"] = wl.probe(cell, ctx)
                extra = {} if probing else dict(wl.run(cell, ctx) or {})
                reply["status"] = extra.pop("status", "ok")
                metrics = extra.pop("metrics", {})
                if job.get("manifest", True) and extra.get("knobs"):
                    manifest.add_knobs(out_dir, extra["knobs"])
        except Diverged as e:
            reply["status"], reply["error"], metrics = "diverged", str(e), e.metrics
            extra = {"losses": e.losses, "val_losses": e.val_losses}
            print(f"diverged: {e}", flush=True)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # even sys.exit() in a cell fails the cell, not the worker
            reply["status"] = "failed"
            reply["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            if tracker is not None:
                tracker.finish(reply["status"], metrics)
    reply["runtime_s"] = round(time.time() - start, 3)
    if not dry and not probing:
        try:
            write_result(
                out_dir,
                cell,
                reply["status"],
                runtime_s=reply["runtime_s"],
                error=reply["error"],
                metrics=metrics,
                job=job,
                **extra,
            )
        except OSError as e:  # a full disk: the cell has no result, and says why
            reply.update(status="failed", errno=e.errno)
            reply["error"] = f"could not write {out_dir / 'result.json'}: {e.strerror or e}"
    return reply


def main():
    reply = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    # Every cell needs torch (seeding, device); load it before taking any, and pay now for
    # the ~2 s that the first use_deterministic_algorithms call spends importing.
    import torch

    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
    cache, workloads = {}, {}
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        # The cell's clock (and its timeout) starts now, not while this worker started up.
        cell_id = job["cell"]["id"]
        reply.write(json.dumps({"started": cell_id}) + "\n")
        # The workload's progress.report() calls reach the driver's heartbeat.
        progress.listen(lambda part: reply.write(json.dumps({"progress": cell_id, **part}) + "\n"))
        reply.write(json.dumps(run_job(job, cache, workloads)) + "\n")
        progress.listen(None)


if __name__ == "__main__":
    main()
