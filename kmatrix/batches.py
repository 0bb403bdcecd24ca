"""Which cells run together: batches of cells that the workload trains in one job.

A workload that can train several cells at once defines `batch_key(cell)` (cells with
equal keys may share a batch; None: the cell runs alone) and `run_batch(cells, ctxs)`.
The core only groups by that key: what makes cells compatible is the workload's
business. EXEC_BATCH turns batching off; EXEC_BATCH_CELLS caps a batch (0: each group
spread evenly over the workers, at most AUTO_MAX cells).
"""

import math

from kmatrix.workloads import load_workload

AUTO_MAX = {"gpu": 256, "cpu": 16}


def batch_key(cell):
    """The workload's batch key of a cell, or None where it has none."""
    key = getattr(load_workload(cell.workload), "batch_key", None)
    return None if key is None else key(cell)


def make_batches(cfg, cells, n_slots=1, cpu=False):
    """Lists of cells, one job each, every cell in exactly one list, in plan order of
    each list's first cell. Without EXEC_BATCH every cell is its own list."""
    if not cfg.get("exec_batch"):
        return [[c] for c in cells]
    groups = {}  # (workload, key) -> cells; an unbatchable cell is a group of its own
    for c in cells:
        key = batch_key(c)
        groups.setdefault((c.workload, key) if key is not None else ("", c.id), []).append(c)
    cap = cfg.get("exec_batch_cells") or 0
    out = []
    for group in groups.values():
        size = cap or min(AUTO_MAX["cpu" if cpu else "gpu"], math.ceil(len(group) / n_slots))
        out += [group[i : i + size] for i in range(0, len(group), max(1, size))]
    order = {c.id: n for n, c in enumerate(cells)}
    return sorted(out, key=lambda b: order[b[0].id])


def halves(cells):
    """A failed batch runs again as two, down to single cells: one bad cell then fails
    alone, never its neighbours."""
    mid = (len(cells) + 1) // 2
    return [cells[:mid], cells[mid:]]
