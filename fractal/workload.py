"""The fractal paper workload (docs/workload-interface.md), in fractal/paper.py.

A cell is one experiment's image, or, for the paper's zoom protocol, a path's centre
(stage 0) and then each of its frames (the next stage, next_stage), every frame a whole
image computed by fractal.engine in one call, so the sweep grid is vectorised inside the
cell. LLM trainability grids are their own workload, fractal/llm.py; fractal/__init__.py
picks one of the two by FRACTAL_ENGINE.
"""

from fractal import paper


def axes(cfg):
    return paper.axes(cfg)


def validate(cfg):
    return paper.validate(cfg)


def cell_params(cfg, point):
    return paper.cell_params(cfg, point)


def next_stage(cfg, cells, results):
    """The next stage's cells ({"point", "params", "run_seed"} each) from the results of
    those planned so far; [] when the matrix is complete. Zoom frames need their path's
    centre."""
    return paper.next_stage(cfg, cells, results)


def run(cell, ctx):
    return paper.run(cell, ctx)


def dry_run(cell, ctx):
    return paper.dry_run(cell, ctx)


def summarize(summary_dir, cells, results, cfg):
    return paper.summarize(summary_dir, cells, results, cfg)


def probe(cell, ctx):
    return paper.probe(cell, ctx)
