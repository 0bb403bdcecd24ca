"""After the matrix: results.csv, summary.json and the workload's figures."""

import csv
import io
from pathlib import Path

from kmatrix import refine, tracking
from kmatrix.grid import axis_titles
from kmatrix.workloads import load_workload
from kmatrix.results import read_result
from kmatrix.files import write_atomic, write_json_atomic


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


def summarize(cfg, cells, root):
    """Render summary/ from whatever results exist now (missing cells stay missing). A
    refined grid's inferred points come in as cells whose result has status "inferred"
    (results.csv marks them so), and summary.json reports the refinement."""
    root = Path(root)
    out = root / "summary"
    out.mkdir(parents=True, exist_ok=True)
    results = {cell.id: read_result(root, cell.id) for cell in cells}
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
    if refinement is not None:
        summary["refinement"] = refinement
    if cells:
        wl = load_workload(cells[0].workload)
        summary["workload_summary"] = wl.summarize(out, cells, results, cfg) or {}
    write_json_atomic(out / "summary.json", summary)
    tracking.log_summary(tracking.settings(cfg, root), out, rows, summary)
    return summary
