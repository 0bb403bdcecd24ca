"""The matrix driver: plan -> run every cell on the executor -> summary.

Resume is by result files alone: a cell with an ok/diverged result.json never runs
again; failed or missing cells do. Transient failures are retried with backoff.
"""

import contextlib
import time

from kmatrix import compare, manifest, refine, results, stages, tracking
from kmatrix.grid import axis_titles, combination
from kmatrix.batches import make_batches
from kmatrix.job import make_job
from kmatrix.plan import plan, write_plan
from kmatrix.progress import Progress
from kmatrix.schedule import full_disk, make_executor, schedule
from kmatrix.summary import summarize


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
    """`make`: run every cell that has no ok/diverged result, stage after stage (a plan
    whose later cells depend on earlier results, kmatrix/stages.py); 0 iff none failed."""
    cells = plan(cfg)
    root = results.results_dir(cfg)
    from kmatrix import preflight

    preflight.check(cfg, cells, root)
    with results.Lock(root), contextlib.ExitStack() as stack:
        early = executor is None and cfg.get("exec_executor") != "ray"
        if early:  # local workers start now, importing torch while results are read
            executor = stack.enter_context(make_executor(cfg, max_cells=len(cells)))
        results.claim(root, cfg, force=force)
        final, job, stage, new, found = {}, None, 0, cells, {}
        while True:
            write_plan(cells, root / "plan.json")
            found.update({c.id: results.read_cell(root, c) for c in new})
            todo = [c for c in new if not results.is_done(found[c.id])]
            head = (
                f"{cfg.name}: {len(cells)} cells"
                if stage == 0
                else f"stage {stage}: {len(new)} more cells"
            )
            out(
                f"  RUN     {head}, {len(new) - len(todo)} already done, {len(todo)} to run -> {root}"
            )
            if todo:
                job = job or make_job(
                    cfg,
                    "run",
                    root,
                    environment_hash=manifest.write_environment_snapshot(root),
                    tracking=tracking.settings(cfg, root),
                )
                if executor is None or early and executor.cpu and len(todo) < len(executor.slots):
                    if executor is not None:  # fewer cells than CPU workers: fewer workers,
                        executor.close()  # each with more threads
                    executor = stack.enter_context(make_executor(cfg, max_cells=len(todo)))
                done = len(cells) - len(todo)
                progress = Progress(len(cells), done, cfg.name, live, len(executor.slots))
                with progress:
                    if stage == 0:
                        out(f"  SLOTS   {', '.join(s.name for s in executor.slots)}")
                    batches = make_batches(cfg, todo, len(executor.slots), executor.cpu)
                    final.update(schedule(cfg, todo, executor, job, progress, batches))
                found.update({c.id: results.read_cell(root, c) for c in todo})
            if full_disk(final) or any(r["status"] == "failed" for r in final.values()):
                break  # the next stage is planned from complete results only
            new = stages.next_stage(cfg, cells, found)
            if not new:
                break
            cells, stage = cells + new, stage + 1
        full = full_disk(final)
        if full:
            out(f"\nerror: the disk is full: {full['error']}")
            out("  finished cells are kept; free some space and run `make` again")
            return 1
        _summary(cfg, cells, root, out, found)
        failed = failure_table(root, cells, final)
        if failed:
            later = " and plan the stages after them" if stages.staged(cfg, cells) else ""
            out(f"\n{len(failed)} cell(s) failed (rerun `make` to retry them{later}):")
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
        key = tuple(combination(cell.point).items())
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
    executor = make_executor(cfg, cpu_only=True, max_cells=len(cells))
    job = make_job(cfg, "dry_run", results.results_dir(cfg))
    with executor:
        final = schedule(cfg, cells, executor, job, Progress(len(cells), quiet=True))
    for cell in cells:
        error = final[cell.id].get("error")
        note = f"  {error.splitlines()[0][:120]}" if error else ""
        out(f"  {'PASS' if final[cell.id]['status'] == 'ok' else 'FAIL'}  {cell.id}{note}")
    failed = [c for c in cells if final[c.id]["status"] != "ok"]
    out(
        f"  CHECK   {len(cells) - len(failed)}/{len(cells)} cells pass the dry run "
        f"({time.time() - started:.1f} s, {len(executor.slots)} CPU workers)"
    )
    for cell in failed:
        out(f"  FAIL    {cell.id}: {final[cell.id].get('error')}")
    return 1 if failed else 0


def plan_table(cfg, cells, full=False, head=20, tail=5):
    """The lines of `make plan`: a header, then one row per cell (the first `head` and
    last `tail` unless `full`), as plain text sized to its contents."""
    names = list(cells[0].point) if cells else []
    titles = axis_titles(cfg, names)
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
    """`make plan`: the cells known in advance (a staged plan's first stage, and the
    stages that finished results already decide)."""
    root = results.results_dir(cfg)
    cells, _, complete = stages.known_cells(cfg, plan(cfg), root)
    for line in plan_table(cfg, cells, full=full):
        out(line)
    if not complete and stages.staged(cfg, cells):
        later = refine.later_cells(cfg, cells)
        more = f"up to {later:,} more cells" if later else "more cells"
        out(f"\nlater stages: {more}, planned from the results of these")
    return 0


def count_text(counts):
    """{"ok": 250, "diverged": 6} -> "256 cells: 250 ok, 6 diverged" (the usual order)."""
    order = ["ok", "diverged", "failed", "inferred", "missing"]
    names = order + sorted(set(counts) - set(order))
    parts = [f"{counts[n]:,} {n}" for n in names if counts.get(n)]
    total = sum(counts.values())
    return f"{total:,} cell{'' if total == 1 else 's'}: " + (", ".join(parts) or "none")


def _summary(cfg, cells, root, out, found=None):
    summary = summarize(cfg, cells, root, found=found)
    out(f"  SUMMARY {root / 'summary'}  {count_text(summary['counts'])}")
    for line in compare.warning_lines(summary["apples_to_apples"]):
        out(line)


def summary_only(cfg, out=print, force=False):
    """`make summary`: only of results made with this configuration (as `make` checks)."""
    root = results.results_dir(cfg)
    results.check_for_summary(root, cfg, force=force)
    cells, found, _ = stages.known_cells(cfg, plan(cfg), root)
    _summary(cfg, cells, root, out, found)
    return 0


def clean_results(cfg, out=print):
    root = results.results_dir(cfg)
    removed = results.remove(root, results.results_root(cfg))
    out(f"  CLEAN   {root}" + ("" if removed else " (nothing there)"))
    return 0
