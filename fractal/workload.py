"""The fractal workload: the paper's "boundary of trainability is fractal" experiments.

The interface of docs/workload-interface.md, each part in the module of its concept:
configuration -> cells, the zoom protocol's stages and their checks (fractal/paper.py),
computing a cell's image, zoom centre or frame (fractal/paper_cells.py, over the engine
in fractal/engine.py), and the figures and the fractal dimension of a finished matrix
(fractal/paper_summary.py).
"""

from fractal.paper import axes, cell_params, next_stage, validate  # noqa: F401

# Running imports torch and the summary matplotlib, which planning never needs: a plan
# imports this module and fractal/paper.py only.


def run(cell, ctx):
    from fractal import paper_cells

    return paper_cells.run(cell, ctx)


def probe(cell, ctx):
    from fractal import paper_cells

    return paper_cells.probe(cell, ctx)


def dry_run(cell, ctx):
    from fractal import paper_cells

    return paper_cells.dry_run(cell, ctx)


def summarize(summary_dir, cells, results, cfg):
    from fractal import paper_summary

    return paper_summary.summarize(summary_dir, cells, results, cfg)
