"""Weights & Biases: one run per cell, grouped by matrix, plus one summary run.

The mode (disabled / offline / online) is decided from the configuration before the
first wandb.init, except that WANDB_MODE=disabled in the environment turns it off as it
does for any W&B program; `disabled` never imports wandb, sends nothing and writes
nothing. Tracking is never worth a run: if wandb cannot be imported, cells and the
summary go on without it and say so.
"""

import os
import sys
from pathlib import Path

_MISSING = []  # the import error, once wandb failed to import in this process


def _wandb():
    """The wandb module, or None (with one warning) when it cannot be imported."""
    if _MISSING:
        return None
    try:
        import wandb
    except Exception as e:  # noqa: BLE001 - any import failure: run without tracking
        _MISSING.append(e)
        print(f"warning: W&B tracking is off: wandb cannot be imported ({e})", file=sys.stderr)
        return None
    return wandb


def settings(cfg, root):
    """The tracking settings a worker needs, as plain data."""
    return {
        "mode": (
            "disabled"
            if os.environ.get("WANDB_MODE") == "disabled"
            else cfg.get("track_wandb") or "disabled"
        ),
        "entity": cfg.get("track_wandb_entity") or None,
        "project": cfg.get("track_wandb_project") or "kmatrix",
        "tags": list(cfg.get("track_wandb_tags") or []),
        "group": cfg.name,
        "dir": str(Path(root).resolve()),
        "profile": cfg.get("profile"),
    }


class Tracker:
    """log(metrics, step) and finish(); a no-op when tracking is disabled."""

    def __init__(self, run=None):
        self.run = run

    @classmethod
    def for_cell(cls, tracking, cell):
        if not tracking or tracking.get("mode", "disabled") == "disabled":
            return cls()
        tags = tracking["tags"] + [f"{k}={v}" for k, v in cell.point.items() if k not in "xy"]
        try:
            run = _init(tracking, name=cell.id, job_type="cell", tags=tags, config=cell.params)
        except Exception as e:  # noqa: BLE001 - W&B down: the cell trains all the same
            print(f"warning: no W&B run for this cell: {type(e).__name__}: {e}", flush=True)
            run = None
        return cls(run)

    def log(self, metrics, step=None):
        if self.run is not None:
            self.run.log(metrics, step=step)

    def finish(self, status="ok", metrics=None):
        if self.run is not None:
            self.run.summary.update({"status": status, **(metrics or {})})
            self.run.finish(exit_code=0 if status != "failed" else 1)
            self.run = None


def _init(tracking, **kwargs):
    wandb = _wandb()
    if wandb is None:
        return None
    Path(tracking["dir"]).mkdir(parents=True, exist_ok=True)
    return wandb.init(
        mode=tracking["mode"],
        entity=tracking["entity"],
        project=tracking["project"],
        group=tracking["group"],
        dir=tracking["dir"],
        reinit="create_new",
        settings=wandb.Settings(silent=True, console="off"),
        **kwargs,
    )


def log_summary(tracking, summary_dir, rows, summary):
    """The summary run: figures as images and results.csv as a table."""
    if not tracking or tracking.get("mode", "disabled") == "disabled":
        return None
    try:
        run = _init(tracking, name=f"{tracking['group']}-summary", job_type="summary")
        if run is None:
            return None
        wandb = _wandb()
        images = {p.stem: wandb.Image(str(p)) for p in sorted(Path(summary_dir).glob("*.png"))}
        columns = sorted({k for row in rows for k in row})
        data = [[row.get(c) for c in columns] for row in rows]
        run.log({**images, "results": wandb.Table(columns=columns, data=data)})
        run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
        run.finish()
        return run
    except Exception as e:  # noqa: BLE001 - the summary files are written: never fail here
        print(f"warning: the W&B summary run was not logged: {type(e).__name__}: {e}")
        return None
