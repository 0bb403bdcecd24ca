"""Which cells run together: batches of cells that the workload trains in one job.

A workload that can train several cells at once defines `batch_key(cell)` (cells with
equal keys may share a batch; None: the cell runs alone) and `run_batch(cells, ctxs)`,
and may define `batch_limit(cell, device_kind)`: the most cells worth one job on a "cpu"
or "gpu" worker (1: each alone; gpt2 on a CPU, for models too large to gain). The core
only groups by these: what makes cells compatible is the workload's business.
EXEC_BATCH turns batching off; EXEC_BATCH_CELLS sets the cells of a batch (0: each group
spread evenly over the workers, at most AUTO_MAX cells and the workload's limit).
"""

import math

from kmatrix.workloads import load_workload

AUTO_MAX = {"gpu": 256, "cpu": 16}


def batch_key(cell):
    """The workload's batch key of a cell, or None where it has none."""
    key = getattr(load_workload(cell.workload), "batch_key", None)
    return None if key is None else key(cell)


def batch_limit(cell, device_kind):
    """The workload's limit on a batch of this cell on a "cpu" or "gpu" worker, or None."""
    limit = getattr(load_workload(cell.workload), "batch_limit", None)
    return None if limit is None else limit(cell, device_kind)


def make_batches(cfg, cells, n_slots=1, cpu=False):
    """Lists of cells, one job each, every cell in exactly one list, in plan order of
    each list's first cell. Without EXEC_BATCH every cell is its own list."""
    if not cfg.get("exec_batch"):
        return [[c] for c in cells]
    groups = {}  # (workload, key) -> cells; an unbatchable cell is a group of its own
    for c in cells:
        key = batch_key(c)
        groups.setdefault((c.workload, key) if key is not None else ("", c.id), []).append(c)
    cap, kind = cfg.get("exec_batch_cells") or 0, "cpu" if cpu else "gpu"
    out = []
    for group in groups.values():
        size = cap or min(AUTO_MAX[kind], math.ceil(len(group) / n_slots))
        if not cap:
            size = min(size, batch_limit(group[0], kind) or size)
        out += [group[i : i + size] for i in range(0, len(group), max(1, size))]
    order = {c.id: n for n, c in enumerate(cells)}
    return sorted(out, key=lambda b: order[b[0].id])


def halves(cells):
    """A failed batch runs again as two, down to single cells: one bad cell then fails
    alone, never its neighbours."""
    mid = (len(cells) + 1) // 2
    return [cells[:mid], cells[mid:]]
