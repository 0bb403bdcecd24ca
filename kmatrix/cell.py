"""A cell is one fully resolved training job of the matrix, and what it runs with."""

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

# How each matrix axis appears in a cell id. Axes not listed here print their value.
_ID_PREFIX = {"seed": "s", "i": "x", "j": "y", "frame": "f"}


def cell_id(point, axis_names, counts=None):
    """The one function that builds a cell id, e.g. `muon-bf16-s0-x03-y12`.

    `point` maps axis name -> value; `axis_names` gives the order. Index axes (`i`,
    `j`) are zero-padded to the width of their largest index (`counts`: axis -> number
    of values) so ids sort naturally.
    """
    counts = counts or {}
    parts = []
    for name in axis_names:
        value = point[name]
        prefix = _ID_PREFIX.get(name)
        if prefix is None:
            parts.append(str(value))
        elif name in ("i", "j"):
            width = len(str(counts.get(name, 100) - 1))
            parts.append(f"{prefix}{int(value):0{max(2, width)}d}")
        else:
            parts.append(f"{prefix}{value}")
    text = "-".join(parts) or "cell"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


@dataclass
class Cell:
    """One job: its id, the axis values that define it, and its resolved parameters."""

    id: str
    index: int
    workload: str  # importable module path of the workload, e.g. "gpt2.workload"
    point: dict  # axis name -> value, e.g. {"optimizer": "muon", "seed": 0, "i": 3}
    run_seed: int  # seed + i*1000 + j
    params: dict = field(default_factory=dict)  # everything the workload needs

    def to_dict(self):
        """Plain data for JSON (shallow: params are not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


@dataclass
class RunContext:
    """What a workload's run() and dry_run() get besides the cell.

    device:  "cuda" (the one GPU this worker is pinned to) or "cpu"
    out_dir: the cell's directory; write artefacts here (result.json is the driver's)
    root:    the matrix's results directory: another cell's files are
             kmatrix.results.cell_file(ctx.root, cell_id, name)
    cache:   a dict that lives as long as the worker process: keep heavy state here
             (tokenizer, token memmaps, compiled kernels) so the next cell reuses it
    profile: "paper_repro" or "maxout_speed"
    tracker: a kmatrix.tracking.Tracker; tracker.log(dict, step=...) is always safe
    batch:   for probe() in a batch job (`make estimate` under EXEC_BATCH): the job's
             cells, which the probe times trained together; None otherwise
    """

    device: str
    out_dir: Path
    cache: dict = field(default_factory=dict)
    profile: str = "paper_repro"
    tracker: object = None
    dry_run: bool = False
    root: Path = None
    batch: list = None

    def log(self, *args):
        """One line into the cell's log (stdout is redirected to log.txt)."""
        print(*args, flush=True)
