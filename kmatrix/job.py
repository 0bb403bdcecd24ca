"""A job: what the driver hands a worker across the process boundary.

A job carries one cell, or several cells of one grid that a worker runs together, and
everything the worker needs besides the cells: what to do with them (`kind`), where the
matrix's results live (`root`), the run profile and what the manifest records. Each cell
of a job keeps its own directory, result.json, manifest.json, log.txt and progress line.

`make_job()` is the only place a job is built; schedule() derives each attempt from it
with `for_cells()`. A job is plain data: JSON lines to a local worker (`to_dict`,
`from_dict`), pickled to a Ray actor.
"""

import dataclasses
from dataclasses import dataclass, field

from kmatrix.cell import Cell

KINDS = ("run", "dry_run", "probe")  # run writes result.json; see kmatrix.worker.run_job


@dataclass
class Job:
    """One or more cells of one grid, and how to run them.

    kind:             "run", "dry_run" (`make check`) or "probe" (`make estimate`)
    root:             the matrix's results directory (results/<name>), or a scratch one;
                      a cell's files are under root/cells/<cell id>/ (kmatrix.results)
    cells:            the cells to run, in order; usually one
    profile:          the run profile (kmatrix.seeding)
    attempt:          1 for the first try, counting retries
    manifest:         write manifest.json for each cell
    config_hash, environment_hash, git: recorded in each cell's manifest
    tracking:         kmatrix.tracking.settings(), or None (no W&B)
    submitted, slot:  set by the scheduler and the executor
    """

    kind: str
    root: str
    cells: list = field(default_factory=list)
    profile: str = "paper_repro"
    attempt: int = 1
    manifest: bool = True
    config_hash: str = None
    environment_hash: str = None
    git: dict = None
    tracking: dict = None
    submitted: float = 0.0
    slot: str = None

    @property
    def id(self):
        """A name for progress displays: the cell's id, or the first one's and a count."""
        if len(self.cells) == 1:
            return self.cells[0].id
        return f"{self.cells[0].id} +{len(self.cells) - 1}" if self.cells else "empty job"

    def for_cells(self, cells, attempt=1, submitted=0.0):
        """This job's settings for these cells (one attempt of them)."""
        return dataclasses.replace(
            self, cells=list(cells), attempt=attempt, submitted=submitted, slot=None
        )

    def lost(self, reason):
        """The replies for every cell of this job when its worker died or overran."""
        return [{"id": c.id, "status": "failed", "error": reason, "lost": True} for c in self.cells]

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["cells"] = [c.to_dict() for c in self.cells]
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**{**d, "cells": [Cell.from_dict(c) for c in d["cells"]]})


def make_job(cfg, kind, root, *, environment_hash=None, tracking=None, manifest=True):
    """The job template of a `make` command: `kind` for cells under `root`, with `cfg`'s
    profile and hash; schedule() fills in the cells of each attempt."""
    if kind not in KINDS:
        raise ValueError(f"job kind {kind!r} is none of {', '.join(KINDS)}")
    git = None
    if manifest and kind != "dry_run":
        from kmatrix.manifest import git_info

        git = git_info()
    return Job(
        kind=kind,
        root=str(root),
        profile=cfg.get("profile") or "paper_repro",
        manifest=manifest,
        config_hash=cfg.hash,
        environment_hash=environment_hash,
        git=git,
        tracking=tracking,
    )
