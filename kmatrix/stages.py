"""Plans built in stages: cells that can only be planned from earlier cells' results.

Stage 0 is plan(cfg). A workload may define

    next_stage(cfg, cells, results) -> list of {"point", "params", "run_seed"}

which the driver calls once every cell planned so far has a finished result (`results`:
cell id -> result dict): it returns the next stage's cells, or [] when there are none.
The fractal paper's zoom sequences use it (a cheap search finds a centre, then every
frame is a cell); a refined grid (kmatrix/refine.py) is planned the same way by the core.

Nothing about stages is stored: the plan is derived again from the results every time,
so `make` after a kill resumes at the stage it was on, and `make summary` sees every
stage that the results decide.
"""

from kmatrix import refine, results
from kmatrix.cell import Cell, cell_id
from kmatrix.workloads import load_workload


def cells_from(specs, module_path, start, counts=None):
    """Cells of a later stage, numbered from `start`, ids built by cell_id() as always."""
    cells = []
    for spec in specs:
        point = dict(spec["point"])
        cells.append(
            Cell(
                id=cell_id(point, list(point), counts),
                index=start + len(cells),
                workload=module_path,
                point=point,
                run_seed=int(spec.get("run_seed", point.get("seed", 0))),
                params=dict(spec["params"]),
            )
        )
    return cells


def staged(cfg, cells):
    """Whether this plan can grow stage by stage."""
    return refine.enabled(cfg) or bool(
        cells and hasattr(load_workload(cells[0].workload), "next_stage")
    )


def next_stage(cfg, cells, found):
    """The cells of the next stage, given every cell so far and `found` (id -> result of
    each, all done). [] when the plan is complete."""
    if not cells:
        return []
    if refine.enabled(cfg):
        return refine.next_level(cfg, cells, found)
    wl = load_workload(cells[0].workload)
    if not hasattr(wl, "next_stage"):
        return []
    new = cells_from(wl.next_stage(cfg, cells, found), cells[0].workload, len(cells))
    known = {c.id for c in cells}
    repeated = [c.id for c in new if c.id in known]
    if repeated:
        raise RuntimeError(f"next_stage planned {repeated[0]!r} again")
    return new


def known_cells(cfg, cells, root):
    """The stages that existing results decide: stage 0 and every later stage whose
    earlier cells all have a finished result. Returns (cells, found, complete)."""
    found = {c.id: results.read_result(root, c.id) for c in cells}
    while all(results.is_done(found[c.id]) for c in cells):
        new = next_stage(cfg, cells, found)
        if not new:
            return cells, found, True
        cells = cells + new
        found.update({c.id: results.read_result(root, c.id) for c in new})
    return cells, found, False
