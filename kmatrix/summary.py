"""After the matrix: results.csv, summary.json and the workload's figures."""

import csv
import io
import os
import shutil
import sys
from pathlib import Path

from kmatrix import compare, refine, tracking
from kmatrix.grid import axis_titles
from kmatrix.workloads import load_workload
from kmatrix.results import SAFE_FILE, read_cell
from kmatrix.files import replace_dir, write_atomic, write_json_atomic


def _row(cell, result, cfg):
    row = {"id": cell.id, "status": result["status"] if result else "missing"}
    row.update(zip(axis_titles(cfg, cell.point), cell.point.values()))
    if result:
        for name, value in (result.get("metrics") or {}).items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                row[name] = value
        row["runtime_s"] = result.get("runtime_s")
        row["error"] = (
            (result.get("error") or "").splitlines()[0][:200] if result.get("error") else ""
        )
    return row


def write_csv(path, rows):
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, lambda f: f.write(text.getvalue().encode()))


def summarize(cfg, cells, root, warn=None, found=None):
    """Render summary/ from whatever results exist now (missing cells stay missing);
    `found`, the cells' results already read (id -> result or None), spares reading them
    again. A refined grid's inferred points come in as cells whose result has status
    "inferred" (results.csv marks them so), and summary.json reports the refinement.

    It is rendered into a fresh directory beside summary/ and renamed into place: nothing
    is written through a link planted in summary/, and a failure (a full disk) leaves the
    last summary as it was."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".summary.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        summary, rows = _render(cfg, cells, root, tmp, warn, found)
        replace_dir(tmp, root / "summary")
    except OSError as e:  # a full disk in a figure library: still say where
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(root / "summary")) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tracking.log_summary(tracking.settings(cfg, root), root / "summary", rows, summary)
    return summary


def not_shown(root, cells):
    """Result files in cells/ of cells this plan does not hold: a later stage the plan
    cannot reach (an earlier cell has no valid result) or cells of another plan."""
    planned = {c.id for c in cells}
    try:
        names = os.listdir(Path(root) / "cells")
    except OSError:
        return []
    return sorted(
        n
        for n in names
        if n not in planned
        and SAFE_FILE.match(n)
        and (Path(root) / "cells" / n / "result.json").is_file()
    )


def _render(cfg, cells, root, out, warn, found=None):
    if found is None:
        found = {cell.id: read_cell(root, cell) for cell in cells}
    results = {cell.id: found[cell.id] for cell in cells}
    refinement = None
    if refine.enabled(cfg) and cells:  # the points a refined grid decided without computing
        virtual, inferred, refinement = refine.inferred_cells(cfg, cells, results)
        cells, results = cells + virtual, {**results, **inferred}
    rows = [_row(cell, results[cell.id], cfg) for cell in cells]
    write_csv(out / "results.csv", rows)
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = {
        "name": cfg.name,
        "workload": cfg.workload,
        "profile": cfg.get("profile"),
        "config_hash": cfg.hash,
        "cells": len(cells),
        "counts": counts,
    }
    hidden = not_shown(root, cells)
    if hidden:
        summary["not_shown"] = len(hidden)
        missing = [
            c.id for c in cells if results[c.id] is None or results[c.id].get("status") == "failed"
        ]
        (warn or (lambda t: print(t, file=sys.stderr, flush=True)))(
            f"warning: {len(hidden)} cell result(s) in {Path(root) / 'cells'} are not in this "
            f"summary (e.g. {hidden[0]}): they are not in the plan these results decide. "
            f"A later stage is only planned once every earlier cell has a valid result, and "
            f"{len(missing)} planned cell(s) have none (e.g. {missing[0] if missing else '-'}): "
            "`make` runs them, and the later stages come back"
        )
    if refinement is not None:
        summary["refinement"] = refinement
    # what differs between the compared cells besides their axes (kmatrix/compare.py)
    summary["apples_to_apples"] = compare.differences(root, cells, results)
    if cells:
        wl = load_workload(cells[0].workload)
        summary["workload_summary"] = wl.summarize(out, cells, results, cfg) or {}
    differ = list(summary["apples_to_apples"]["differences"])
    if differ:  # and each figure says so itself
        figures = sorted(p.name for p in out.glob("*.png"))
        for name in figures:
            compare.stamp(
                out / name,
                f"not apples to apples: these cells also differ in {', '.join(differ)} "
                "(summary.json: apples_to_apples)",
            )
        summary["apples_to_apples"]["stamped"] = figures
    write_json_atomic(out / "summary.json", summary)
    return summary, rows
