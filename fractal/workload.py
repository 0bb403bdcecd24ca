"""The fractal workload (docs/workload-interface.md).

Paper mode (FRACTAL_ENGINE_MLP, fractal/paper.py): a cell is one experiment's image, or,
for the paper's zoom protocol, a path's centre (stage 0) and then each of its frames
(stage 1, next_stage), every frame a whole image computed by fractal.engine in one call,
so the sweep grid is vectorised inside the cell. The LLM mode (FRACTAL_ENGINE_LLM) has
its marked place at the bottom of this file.
"""

from fractal import paper


def _mode(cfg):
    return cfg.get("fractal_engine", "mlp")


# ----------------------------------------------------------------------------------------
# paper mode


def axes(cfg):
    if _mode(cfg) == "llm":
        return llm_axes(cfg)
    return paper.axes(cfg)


def validate(cfg):
    if _mode(cfg) == "llm":
        return llm_validate(cfg)
    return paper.validate(cfg)


def cell_params(cfg, point):
    if _mode(cfg) == "llm":
        return llm_cell_params(cfg, point)
    return paper.cell_params(cfg, point)


def next_stage(cfg, stage, cells, results):
    """The cells of `stage` (1, 2, ...) from the results of those planned so far; an
    empty list when the matrix is complete. Zoom frames need their path's centre."""
    if _mode(cfg) == "llm":
        return []
    return paper.next_stage(cfg, stage, cells, results)


def run(cell, ctx):
    if cell.params.get("engine") == "llm":
        return llm_run(cell, ctx)
    return paper.run(cell, ctx)


def dry_run(cell, ctx):
    if cell.params.get("engine") == "llm":
        return llm_dry_run(cell, ctx)
    return paper.dry_run(cell, ctx)


def summarize(summary_dir, cells, results, cfg):
    if _mode(cfg) == "llm":
        return llm_summarize(summary_dir, cells, results, cfg)
    return paper.summarize(summary_dir, cells, results, cfg)


# ----------------------------------------------------------------------------------------
# LLM mode (FRACTAL_ENGINE_LLM): each grid point is one gpt2 run; see fractal/llm.py.


def _llm():
    from fractal import llm  # imports gpt2 only when an LLM grid is configured

    return llm


def llm_axes(cfg):
    return _llm().axes(cfg)


def llm_validate(cfg):
    return _llm().validate(cfg)


def llm_cell_params(cfg, point):
    return {**_llm().cell_params(cfg, point), "engine": "llm"}


def llm_run(cell, ctx):
    return _llm().run(cell, ctx)


def llm_dry_run(cell, ctx):
    return _llm().dry_run(cell, ctx)


def llm_summarize(summary_dir, cells, results, cfg):
    return _llm().summarize(summary_dir, cells, results, cfg)


def preflight(cfg, cells):
    if _mode(cfg) == "llm":
        _llm().preflight(cfg, cells)


def probe(cell, ctx):
    if cell.params.get("engine") == "llm":
        return _llm().probe(cell, ctx)
    return paper.probe(cell, ctx)


def VECTORISED_AXES(cfg):  # noqa: N802 - the interface name; per configuration here
    """A paper-mode cell computes the whole image; an LLM grid cell is one grid point."""
    return () if _mode(cfg) == "llm" else ("x", "y")
