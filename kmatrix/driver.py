"""The matrix driver: plan -> run every cell on the executor -> summary.

Resume is by result files alone: a cell with an ok/diverged result.json never runs
again; failed or missing cells do. Transient failures are retried with backoff.
"""

import contextlib
import errno
import math
import os
import random
import re
import tempfile
import time
from collections import deque
from statistics import fmean
from pathlib import Path

from kmatrix import manifest, results, tracking
from kmatrix.executor import LocalExecutor, local_slots
from kmatrix.plan import plan, write_plan
from kmatrix.progress import Progress
from kmatrix.summary import summarize

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
    existing = results.read_result(root, cell.id)
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
    results.write_json_atomic(
        results.cell_dir(root, cell.id) / "result.json",
        {
            "id": cell.id,
            "status": "failed",
            "error": reply["error"],
            "metrics": {},
            "runtime_s": round(time.time() - job["submitted"], 3),
            "attempt": job["attempt"],
            "profile": job.get("profile"),
            "point": cell.point,
            "run_seed": cell.run_seed,
            "params": cell.params,
        },
    )


def full_disk(final):
    """The reply that found the disk full (or over quota), if any."""
    return next((r for r in final.values() if r.get("errno") in DISK_FULL), None)


def schedule(cfg, cells, executor, root, job_base, progress, kind="run"):
    """Run `cells` on `executor` until each has ended (retries included).

    Returns {cell id: final reply}. For kind="run" the cell's directory is its
    results directory; dry runs go to a throw-away directory.
    """
    by_id = {c.id: c for c in cells}
    pending = deque((c, 1) for c in cells)
    delayed = []  # (ready time, cell, attempt)
    final = {}
    retries = cfg.get("exec_retries") or 0
    backoff = cfg.get("exec_retry_backoff") or 0
    scratch = None if kind == "run" else tempfile.TemporaryDirectory(prefix="kmatrix-check-")
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
                cell, attempt = pending.popleft()
                out = results.cell_dir(root if scratch is None else scratch.name, cell.id)
                job = {
                    **job_base,
                    "kind": kind,
                    "cell": cell.to_dict(),
                    "out_dir": str(out),
                    "attempt": attempt,
                    "submitted": time.time(),
                }
                executor.submit(slot, job)
            progress.set_running(executor.running())
            for job, reply in executor.poll(timeout=0.25):
                cell = by_id[reply["id"]]
                if reply.get("lost") and kind == "run":
                    reply = _record_lost(root, cell, job, reply)
                status = reply["status"]
                runtime = reply.get("runtime_s")
                runtime = time.time() - job["submitted"] if runtime is None else runtime
                slot = job.get("slot", "?")
                if status == "failed" and kind == "run" and job["attempt"] <= retries:
                    if is_transient(cfg, root, reply):
                        wait = backoff * 2 ** (job["attempt"] - 1)
                        delayed.append((time.time() + wait, cell, job["attempt"] + 1))
                        progress.finished(
                            cell.id, "retry", runtime, slot, f"  transient, again in {wait}s"
                        )
                        continue
                final[cell.id] = reply
                note = f"  {reply['error'].splitlines()[0][:120]}" if reply.get("error") else ""
                progress.finished(cell.id, status, runtime, slot, note)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return final


def _executor(cfg, cpu_only=False, gpus=None, max_cells=None):
    env = {}
    profile = cfg.get("profile") or "paper_repro"
    from kmatrix.seeding import PROFILE_ENV

    env.update(PROFILE_ENV.get(profile, {}))
    if cfg.get("exec_executor") == "ray" and not cpu_only:  # `make check` stays on this machine
        from kmatrix.ray_executor import RayExecutor

        return RayExecutor(
            address=cfg.get("exec_ray_address"),
            jobs_per_gpu=cfg.get("exec_jobs_per_gpu"),
            timeout=cfg.get("exec_cell_timeout"),
            env=env,
            cpu_only=cfg.get("exec_gpus") == ["none"],
            start_timeout=cfg.get("exec_start_timeout"),
        )
    slots = local_slots(cfg, gpus=gpus, cpu_only=cpu_only, max_cells=max_cells)
    return LocalExecutor(
        slots,
        timeout=0 if cpu_only else cfg.get("exec_cell_timeout"),
        env=env,
        start_timeout=cfg.get("exec_start_timeout"),
    )


def failure_table(root, cells, final):
    lines = []
    for cell in cells:
        reply = final.get(cell.id)
        if reply and reply["status"] == "failed":
            error = (reply.get("error") or "").splitlines()
            reason = error[-1] if error else "unknown"
            log = results.cell_dir(root, cell.id) / "log.txt"
            lines.append(f"  {cell.id:<32} {reason[:90]:<90}  {log}")
    return lines


def run_matrix(cfg, force=False, executor=None, live=None, out=print):
    """`make`: run every cell that has no ok/diverged result; 0 iff none failed."""
    cells = plan(cfg)
    root = results.results_dir(cfg)
    from kmatrix import preflight

    preflight.check(cfg, cells, root)
    with results.Lock(root), contextlib.ExitStack() as stack:
        early = executor is None and cfg.get("exec_executor") != "ray"
        if early:  # local workers start now, importing torch while results are read
            executor = stack.enter_context(_executor(cfg, max_cells=len(cells)))
        results.claim(root, cfg, force=force)
        write_plan(cells, root / "plan.json")
        done = {c.id for c in cells if results.is_done(results.read_result(root, c.id))}
        todo = [c for c in cells if c.id not in done]
        out(
            f"  RUN     {cfg.name}: {len(cells)} cells, {len(done)} already done, "
            f"{len(todo)} to run -> {root}"
        )
        final = {}
        if todo:
            job_base = {
                "profile": cfg.get("profile"),
                "config_hash": cfg.hash,
                "environment_hash": manifest.write_environment_snapshot(root),
                "git": manifest.git_info(),
                "tracking": tracking.settings(cfg, root),
            }
            cpu = all(s.name.startswith("cpu") for s in getattr(executor, "slots", []))
            if executor is None or early and cpu and len(todo) < len(executor.slots):
                if executor is not None:  # fewer cells than CPU workers: fewer workers,
                    executor.close()  # each with more threads
                executor = stack.enter_context(_executor(cfg, max_cells=len(todo)))
            progress = Progress(len(cells), len(done), cfg.name, live, len(executor.slots))
            with progress:
                out(f"  SLOTS   {', '.join(s.name for s in executor.slots)}")
                final = schedule(cfg, todo, executor, root, job_base, progress)
        full = full_disk(final)
        if full:
            out(f"\nerror: the disk is full: {full['error']}")
            out("  finished cells are kept; free some space and run `make` again")
            return 1
        _summary(cfg, cells, root, out)
        failed = failure_table(root, cells, final)
        if failed:
            out(f"\n{len(failed)} cell(s) failed (rerun `make` to retry them):")
            for line in failed:
                out(line)
            return 1
        return 0


def covering_cells(cells):
    """Cells that between them hold every value of every axis: all of them, except that of
    each X x Y grid only the diagonal and the two other corners are kept. Grid points
    differ only in the two swept numbers, so these exercise every value each takes
    (a structural knob such as n_embd included) in linear, not quadratic, time."""
    grids, chosen = {}, []
    for cell in cells:
        if "i" not in cell.point:
            chosen.append(cell)
            continue
        key = tuple((k, v) for k, v in cell.point.items() if k not in ("i", "j", "x", "y"))
        grids.setdefault(key, []).append(cell)
    for grid in grids.values():
        at = {(c.point["i"], c.point["j"]): c for c in grid}
        nx, ny = max(i for i, _ in at) + 1, max(j for _, j in at) + 1
        keep = {(min(k, nx - 1), min(k, ny - 1)) for k in range(max(nx, ny))}
        keep |= {(0, ny - 1), (nx - 1, 0)}
        chosen += [at[p] for p in sorted(keep) if p in at]
    return sorted(chosen, key=lambda c: c.index)


def check_matrix(cfg, out=print, live=False, full=False):
    """`make check`: the dry run of every planned cell (of a grid's covering cells unless
    `full`) on CPU workers; 0 iff all pass."""
    started = time.time()
    planned = plan(cfg)
    cells = planned if full else covering_cells(planned)
    if len(cells) < len(planned):
        out(
            f"  CHECK   {len(cells)} of {len(planned)} cells hold every value of every axis "
            "(the grid's diagonal and corners); FULL=1 dry-runs all"
        )
    executor = _executor(cfg, cpu_only=True, max_cells=len(cells))
    lines = []

    class Report(Progress):
        def finished(self, cell_id, status, runtime_s, slot, note=""):
            self.done += 1
            verdict = "PASS" if status == "ok" else "FAIL"
            lines.append((cell_id, verdict, note))
            out(f"  {verdict}  {cell_id}{note}")

    with executor, Report(len(cells), live=False) as progress:
        final = schedule(
            cfg, cells, executor, None, {"profile": cfg.get("profile")}, progress, "dry_run"
        )
    failed = [c for c in cells if final[c.id]["status"] != "ok"]
    out(
        f"  CHECK   {len(cells) - len(failed)}/{len(cells)} cells pass the dry run "
        f"({time.time() - started:.1f} s, {len(executor.slots)} CPU workers)"
    )
    for cell in failed:
        out(f"  FAIL    {cell.id}: {final[cell.id].get('error')}")
    return 1 if failed else 0


def _axis_names(cfg, cells):
    """Column names of a plan: the matrix axes, with x/y named after the swept knobs."""
    names = list(cells[0].point) if cells else []
    swept = {"x": cfg.get("sweep_x_param") or "x", "y": cfg.get("sweep_y_param") or "y"}
    return names, [swept.get(n, n) for n in names]


def plan_table(cfg, cells, full=False, head=20, tail=5):
    """The lines of `make plan`: a header, then one row per cell (the first `head` and
    last `tail` unless `full`), as plain text sized to its contents."""
    names, titles = _axis_names(cfg, cells)
    lines = [f"{cfg.name}: {len(cells)} cells ({cfg.workload}, profile {cfg.get('profile')})"]
    for name, title in zip(names, titles):
        if name in ("i", "j"):
            continue  # grid indices: the swept values below say it all
        values = list(dict.fromkeys(c.point[name] for c in cells))
        shown = ", ".join(_fmt(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        lines.append(f"  {title}: {len(values)} value(s): {shown}")
    rows = cells if full or len(cells) <= head + tail else cells[:head] + [None] + cells[-tail:]
    header = ["#", "cell id", *titles, "run_seed"]
    table = [
        (
            ["...", f"{len(cells) - head - tail} more (make plan FULL=1 lists all)"]
            if c is None
            else [str(c.index), c.id, *(_fmt(c.point[n]) for n in names), str(c.run_seed)]
        )
        for c in rows
    ]
    cols = [r for r in table if len(r) == len(header)]
    widths = [max([len(h)] + [len(r[k]) for r in cols]) for k, h in enumerate(header)]
    fmt_row = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    lines += ["", fmt_row(header)] + [
        fmt_row(r) if len(r) == len(header) else "  ".join(r) for r in table
    ]
    return lines


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_plan(cfg, out=print, full=False):
    for line in plan_table(cfg, plan(cfg), full=full):
        out(line)
    return 0


def _summary(cfg, cells, root, out):
    summary = summarize(cfg, cells, root)
    out(f"  SUMMARY {root / 'summary'}  {summary['counts']}")


def summary_only(cfg, out=print):
    _summary(cfg, plan(cfg), results.results_dir(cfg), out)
    return 0


def clean_results(cfg, out=print):
    root = results.results_dir(cfg)
    removed = results.remove(root, results.results_root(cfg))
    out(f"  CLEAN   {root}" + ("" if removed else " (nothing there)"))
    return 0


def _probe_round(cfg, cells, executor, scratch, job_base, tag):
    """Probe `cells` on the executor's workers; {cell id: reply} (ids tagged)."""
    import dataclasses

    tagged = [dataclasses.replace(c, id=f"{c.id}--{tag}") for c in cells]
    progress = Progress(len(tagged), live=False)
    progress.finished = lambda *a, **k: None
    return schedule(cfg, tagged, executor, scratch, job_base, progress, kind="probe")


def estimate(cfg, out=print, samples_per_slot=2):
    """`make estimate`: a time estimate from probes that run like `make` runs cells.

    On the slots `make` would use: one warm-up probe per worker (imports, one-time data
    preparation, the first model build and compile), then `samples_per_slot` probes per
    slot of cells spread over the plan. A probe goes through the worker's whole per-cell
    path (seeding, profile, manifest, W&B) and calls the workload's probe(cell, ctx), which
    runs the cell briefly and returns {"unit", "per_cell", "seconds_per_cell",
    "probe_seconds"}: its own estimate of the cell's run time on this device. Per cell:
    that estimate plus the worker's overhead around it. The range is the spread over the
    sampled cells; cells that stop early (divergence) make the real run shorter.
    """
    cells = plan(cfg)
    root = results.results_dir(cfg)
    todo = [c for c in cells if not results.is_done(results.read_result(root, c.id))]
    slots = local_slots(cfg, max_cells=max(1, len(todo)))
    out(f"  CELLS   {len(cells)} ({cfg.workload}, {cfg.get('profile')}), {len(todo)} to run")
    if not todo:
        return 0
    k = min(len(todo), samples_per_slot * len(slots))
    sample = sorted(random.Random(0).sample(todo, k), key=lambda c: c.index)  # spread, fixed
    with tempfile.TemporaryDirectory(prefix="kmatrix-estimate-") as scratch:
        job_base = {
            "profile": cfg.get("profile"),
            "config_hash": cfg.hash,
            "git": manifest.git_info(),
            "tracking": {**tracking.settings(cfg, root), "dir": scratch},
        }
        started = time.time()
        snapshot = time.time()
        manifest.write_environment_snapshot(Path(scratch))
        snapshot = time.time() - snapshot
        with _executor(cfg, max_cells=len(todo)) as executor:
            warm = _probe_round(cfg, todo[: len(slots)], executor, scratch, job_base, "warm")
            first = time.time() - started - snapshot
            timed = _probe_round(cfg, sample, executor, scratch, job_base, "probe")
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
        start_s + rounds * v for v in (min(per_cell), fmean(per_cell), max(per_cell))
    )
    where = f"{len(slots)} slot(s): {', '.join(s[0] for s in slots[:4])}"
    out(f"  WORK    {probe['per_cell']:,} {probe['unit']} per cell")
    out(
        f"  PROBE   {len(per_cell)} cells: {min(per_cell):.2f} .. {max(per_cell):.2f} s per cell "
        f"(mean {fmean(per_cell):.2f}) on {where}"
    )
    out(f"  START   {start_s:.1f} s (environment snapshot, workers' start-up)")
    out(f"  TOTAL   about {_minutes(mean)} (range {_minutes(low)} .. {_minutes(high)})")
    return 0


def _minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
