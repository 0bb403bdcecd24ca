"""Maps of the trainability boundary: two workloads, chosen by FRACTAL_ENGINE.

fractal.workload  the paper's one-hidden-layer networks, one image per cell (engine.py)
fractal.llm       LLM trainability grids, one GPT-2 training run per grid point
"""


def workload_module(cfg):
    """The module of the workload this configuration runs (kmatrix.plan asks)."""
    return "fractal.llm" if cfg.get("fractal_engine") == "llm" else "fractal.workload"
