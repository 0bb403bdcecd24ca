"""The matrix driver: plan -> run every cell on the executor -> summary.

Resume is by result files alone: a cell with an ok/diverged result.json never runs
again; failed or missing cells do. Transient failures are retried with backoff.
"""

import os
import re
import tempfile
import time
from collections import deque
from pathlib import Path

from kmatrix import manifest, results, tracking
from kmatrix.executor import LocalExecutor, local_slots
from kmatrix.plan import plan, write_plan
from kmatrix.progress import Progress
from kmatrix.summary import summarize


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
    """A worker died or timed out: write the failed result unless it had finished."""
    if results.is_done(results.read_result(root, cell.id)):
        existing = results.read_result(root, cell.id)
        return {**reply, "status": existing["status"], "error": None}
    log = results.cell_dir(root, cell.id) / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
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
    return reply


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
        )
    slots = local_slots(cfg, gpus=gpus, cpu_only=cpu_only, max_cells=max_cells)
    return LocalExecutor(slots, timeout=0 if cpu_only else cfg.get("exec_cell_timeout"), env=env)


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
    with results.Lock(root):
        results.claim(root, cfg, force=force)
        write_plan(cells, root / "plan.json")
        done = [c for c in cells if results.is_done(results.read_result(root, c.id))]
        todo = [c for c in cells if c not in done]
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
            executor = executor or _executor(cfg, max_cells=len(todo))
            progress = Progress(len(cells), len(done), cfg.name, live, len(executor.slots))
            with executor, progress:
                out(f"  SLOTS   {', '.join(s.name for s in executor.slots)}")
                final = schedule(cfg, todo, executor, root, job_base, progress)
        summary = summarize(cfg, cells, root)
        out(f"  SUMMARY {root / 'summary'}  {summary['counts']}")
        failed = failure_table(root, cells, final)
        if failed:
            out(f"\n{len(failed)} cell(s) failed (rerun `make` to retry them):")
            for line in failed:
                out(line)
            return 1
        return 0


def check_matrix(cfg, out=print, live=False):
    """`make check`: every planned cell's dry run on CPU workers; 0 iff all pass."""
    started = time.time()
    cells = plan(cfg)
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


def summary_only(cfg, out=print):
    root = results.results_dir(cfg)
    cells = plan(cfg)
    summary = summarize(cfg, cells, root)
    out(f"  SUMMARY {root / 'summary'}  {summary['counts']}")
    return 0


def clean_results(cfg, out=print):
    root = results.results_dir(cfg)
    results.remove(root)
    out(f"  CLEAN   {root}")
    return 0


def estimate(cfg, out=print):
    """`make estimate`: cell count, work per cell and a time estimate from a probe.

    The workload's probe(cell, ctx) runs the first cell briefly on this machine's
    first GPU (or the CPU) and returns {"unit", "per_cell", "seconds_per_cell"}.
    """
    from kmatrix.cell import RunContext
    from kmatrix.plan import load_workload
    from kmatrix.seeding import apply_profile, seed_everything

    from kmatrix.seeding import PROFILE_ENV

    cells = plan(cfg)
    slots = local_slots(cfg)
    wl = load_workload(cells[0].workload)
    os.environ.update(PROFILE_ENV.get(cfg.get("profile") or "paper_repro", {}))  # before CUDA
    device = "cuda" if slots and slots[0][0].startswith("gpu") else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        seed_everything(cells[0].run_seed)
        apply_profile(cfg.get("profile") or "paper_repro")
        ctx = RunContext(device, Path(tmp), {}, cfg.get("profile") or "paper_repro")
        probe = wl.probe(cells[0], ctx)
    per_cell = probe["seconds_per_cell"]
    total = per_cell * len(cells) / max(1, len(slots))
    out(f"  CELLS   {len(cells)} ({cfg.workload}, {cfg.get('profile')})")
    out(f"  WORK    {probe['per_cell']:,} {probe['unit']} per cell")
    out(f"  PROBE   {per_cell:.1f} s per cell on {device} (from {probe['probe_seconds']:.1f} s)")
    out(f"  TOTAL   about {total / 60:.1f} min on {len(slots)} slot(s) ({slots[0][0]}...)")
    return 0
