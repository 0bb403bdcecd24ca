"""The gpt2 workload: one cell = one GPT-2 training run (optimizer x precision x seed).

The interface of docs/workload-interface.md, each part in the module of its concept:
configuration -> cell parameters and their checks (gpt2/params.py), the data sources
a preflight checks (gpt2/sources.py), building and training a cell (gpt2/runner.py), and
the figures and tables of a finished matrix (gpt2/report.py).
"""

from gpt2.params import axes, cell_params, preflight, sweep_symbol, validate  # noqa: F401
from gpt2.report import summarize  # noqa: F401

# Running imports torch, which only workers need: planning never does.


def run(cell, ctx):
    from gpt2 import runner

    return runner.run(cell, ctx)


def probe(cell, ctx):
    from gpt2 import runner

    return runner.probe(cell, ctx)


def dry_run(cell, ctx):
    from gpt2 import runner

    return runner.dry_run(cell, ctx)


def gpus_per_cell(cfg):
    """GPUs one cell trains on (GPT2_DDP_GPUS): each worker slot gets that many."""
    return cfg.get("gpt2_ddp_gpus") or 1


def batch_key(cell):
    """Cells with the same key may train together in one batch (run_batch); None: this
    cell trains alone. Planning calls it: no torch here."""
    from gpt2.params import batch_key, unbatchable

    return None if unbatchable(cell.params) else batch_key(cell.params, cell.run_seed)


def batch_limit(cell, device_kind):
    """The most cells worth one batch job on a "cpu" or "gpu" worker (None: no limit of
    the workload's own; 1: each cell alone). Planning calls it: no torch here."""
    from gpt2.params import batch_limit

    return batch_limit(cell.params, device_kind)


def run_batch(cells, ctxs):
    """Train cells of one batch_key together; one outcome per cell: run()'s result, or
    the kmatrix.errors.Diverged it would raise."""
    from gpt2 import runner

    return runner.run_batch(cells, ctxs)
