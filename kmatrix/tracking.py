"""Weights & Biases: one run per cell, grouped by matrix, plus one summary run.

The mode (disabled / offline / online) is decided from the configuration before the
first wandb.init; `disabled` never imports wandb, sends nothing and writes nothing.
"""

from pathlib import Path


def settings(cfg, root):
    """The tracking settings a worker needs, as plain data."""
    return {
        "mode": cfg.get("track_wandb") or "disabled",
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
        return cls(_init(tracking, name=cell.id, job_type="cell", tags=tags, config=cell.params))

    def log(self, metrics, step=None):
        if self.run is not None:
            self.run.log(metrics, step=step)

    def finish(self, status="ok", metrics=None):
        if self.run is not None:
            self.run.summary.update({"status": status, **(metrics or {})})
            self.run.finish(exit_code=0 if status != "failed" else 1)
            self.run = None


def _init(tracking, **kwargs):
    import wandb

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
    import wandb

    run = _init(tracking, name=f"{tracking['group']}-summary", job_type="summary")
    images = {p.stem: wandb.Image(str(p)) for p in sorted(Path(summary_dir).glob("*.png"))}
    columns = sorted({k for row in rows for k in row})
    table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
    run.log({**images, "results": table})
    run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
    run.finish()
    return run
