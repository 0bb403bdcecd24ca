"""The llmmap workload: maps of where LLM training works, one GPT-2 run per grid point.

The interface of docs/workload-interface.md. Planning, training and the dry run are the
gpt2 workload's (any numeric knob of its cell_params can be a grid axis); llmmap adds the
labels and the map, each in the module of its concept: a run's labels, stable and
trainable (llmmap/labels.py); the labelled runs and the grid's arrays, boundary and
box-counting dimension (llmmap/maps.py, with fractal/dimension.py's estimator); the
figures (llmmap/grid_figures.py, imported by summarize only: planning never loads
matplotlib).
"""

from llmmap.maps import (  # noqa: F401 - the interface
    axes,
    batch_key,
    batch_limit,
    cell_params,
    dry_run,
    label,
    next_stage,
    preflight,
    probe,
    run,
    run_batch,
    summarize,
    sweep_symbol,
    validate,
)
