"""Running a list of cells on an executor until each has ended: hand-off to free slots,
retries of transient failures with backoff, lost workers recorded, and a full disk that
stops everything cleanly. `make`, `make check`, `make estimate` and `make repro-check`
all run their cells through schedule()."""

import dataclasses
import errno
import os
import re
import tempfile
import time
from collections import deque

from kmatrix import results
from kmatrix.batches import halves
from kmatrix.executor import LocalExecutor, local_slots
from kmatrix.seeding import PROFILE_ENV

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _log_tail(root, cell_id, lines=60):
    try:
        text = (results.cell_dir(root, cell_id) / "log.txt").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def is_transient(cfg, root, reply):
    pattern = cfg.get("exec_retry_pattern")
    if not pattern:
        return False
    text = (reply.get("error") or "") + "\n" + _log_tail(root, reply["id"])
    return re.search(pattern, text) is not None


def _record_lost(root, cell, job, reply):
    """A worker died or timed out: write the failed result unless it had finished. If
    even that cannot be written (a full disk, a read-only directory), the reply says so
    and the cell simply has no result: it runs again next time."""
    existing = results.read_cell(root, cell)
    if results.is_done(existing):
        return {**reply, "status": existing["status"], "error": None}
    try:
        _write_lost(root, cell, job, reply)
    except OSError as e:
        return {**reply, "error": f"{reply['error']} (not recorded: {e.strerror or e})"}
    return reply


def _write_lost(root, cell, job, reply):
    directory = results.make_cell_dir(root, cell.id)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    with os.fdopen(os.open(directory / "log.txt", flags, 0o644), "a") as f:
        f.write(f"\n== driver: {reply['error']}\n")
    results.write_result(
        directory,
        cell,
        "failed",
        runtime_s=round(time.time() - job.submitted, 3),
        error=reply["error"],
        job=job,
    )


def full_disk(final):
    """The reply that found the disk full (or over quota), if any."""
    return next((r for r in final.values() if r.get("errno") in DISK_FULL), None)


def schedule(cfg, cells, executor, job, progress, batches=None):
    """Run `cells` on `executor` until each has ended (retries included).

    `job` (kmatrix.job.make_job) says what to do with them and where their results go;
    the files of a dry run or a probe go to a throw-away directory instead. Each cell is a
    job of its own unless `batches` (lists of cells of one grid) says which run
    together; a batch whose every cell failed runs again as two halves, down to single
    cells (kmatrix/batches.py), and a failed cell of a batch is retried on its own.
    Returns {cell id: final reply}.
    """
    by_id = {c.id: c for c in cells}
    pending = deque((list(b), 1) for b in (batches or [[c] for c in cells]))
    sizes = {}  # job id -> its number of cells, for the ETA
    delayed = []  # (ready time, cells, attempt)
    final = {}
    retries = cfg.get("exec_retries") or 0
    backoff = cfg.get("exec_retry_backoff") or 0
    run = job.kind == "run"
    scratch = None if run else tempfile.TemporaryDirectory(prefix="kmatrix-check-")
    if scratch is not None:
        job = dataclasses.replace(job, root=scratch.name)
    root = job.root
    try:
        while pending or delayed or executor.busy():
            if full_disk(final):  # nothing more can be written: let running cells end
                pending.clear()
                delayed.clear()
            now = time.time()
            for item in [d for d in delayed if d[0] <= now]:
                delayed.remove(item)
                pending.append(item[1:])
            for slot in executor.free_slots():
                if not pending:
                    break
                batch, attempt = pending.popleft()
                submitted = job.for_cells(batch, attempt, time.time())
                sizes[submitted.id] = len(batch)
                executor.submit(slot, submitted)
            progress.set_running(executor.running(), executor.cell_progress(), sizes)
            for done, replies in executor.poll(timeout=0.25):
                failed = [r for r in replies if r["status"] == "failed"]
                if run and len(done.cells) > 1 and failed and len(failed) == len(replies):
                    for half in halves(done.cells):  # the batch failed: in halves, so one
                        pending.append((half, done.attempt))  # bad cell fails alone
                    continue
                for reply in replies:
                    cell = by_id[reply["id"]]
                    if reply.get("lost") and run:
                        reply = _record_lost(root, cell, done, reply)
                    status = reply["status"]
                    runtime = reply.get("runtime_s")
                    runtime = time.time() - done.submitted if runtime is None else runtime
                    slot = done.slot or "?"
                    if status == "failed" and run and done.attempt <= retries:
                        if is_transient(cfg, root, reply):
                            wait = backoff * 2 ** (done.attempt - 1)
                            delayed.append((time.time() + wait, [cell], done.attempt + 1))
                            progress.finished(
                                cell.id,
                                "retry",
                                runtime,
                                slot,
                                f"  transient, again in {wait}s",
                                len(done.cells),
                            )
                            continue
                    final[cell.id] = reply
                    error = reply.get("error")
                    note = f"  {error.splitlines()[0][:120]}" if error else ""
                    progress.finished(cell.id, status, runtime, slot, note, len(done.cells))
    finally:
        if scratch is not None:
            scratch.cleanup()
    return final


def make_executor(cfg, cpu_only=False, gpus=None, max_cells=None):
    """The executor for `cfg`: Ray (EXEC_EXECUTOR_RAY) or local workers, one per slot.
    Every worker gets the run profile's environment (CUBLAS_WORKSPACE_CONFIG) before CUDA
    starts."""
    env = dict(PROFILE_ENV.get(cfg.get("profile") or "paper_repro", {}))
    if cfg.get("exec_executor") == "ray" and not cpu_only:  # `make check` stays on this machine
        from kmatrix.ray_executor import RayExecutor
        from kmatrix.workloads import gpus_per_cell

        return RayExecutor(
            address=cfg.get("exec_ray_address"),
            jobs_per_gpu=cfg.get("exec_jobs_per_gpu"),
            timeout=cfg.get("exec_cell_timeout"),
            env=env,
            cpu_only=cfg.get("exec_gpus") == ["none"],
            start_timeout=cfg.get("exec_start_timeout"),
            gpus_per_cell=gpus_per_cell(cfg),
        )
    slots = local_slots(cfg, gpus=gpus, cpu_only=cpu_only, max_cells=max_cells)
    return LocalExecutor(
        slots,
        timeout=0 if cpu_only else cfg.get("exec_cell_timeout"),
        env=env,
        start_timeout=cfg.get("exec_start_timeout"),
    )
