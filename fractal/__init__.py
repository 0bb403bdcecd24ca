"""Maps of the trainability boundary: two workloads, chosen by FRACTAL_ENGINE.

fractal.paper     the paper's one-hidden-layer networks: images, zoom centres, frames
fractal.llm       LLM trainability grids, one GPT-2 training run per grid point
"""


def workload_module(cfg):
    """The module of the workload this configuration runs (kmatrix.plan asks)."""
    return "fractal.llm" if cfg.get("fractal_engine") == "llm" else "fractal.paper"
