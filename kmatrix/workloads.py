"""The workload registry: a WORKLOAD name -> the module that implements
docs/workload-interface.md, loaded with a clear error when it is missing."""

import importlib

from kmatrix.errors import ConfigError

# Workload name (a member of the WORKLOAD choice) -> its module (docs/workload-interface.md).
WORKLOADS = {"gpt2": "gpt2.workload", "fractal": "fractal.workload", "llmmap": "llmmap.workload"}


def workload_module(cfg):
    """The workload's module path: a WORKLOADS name, or a dotted path (tests)."""
    return WORKLOADS.get(cfg.workload, cfg.workload)


def load_workload(module_path):
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as e:
        if e.name and module_path.startswith(e.name):
            raise ConfigError("WORKLOAD", f"no workload module {module_path!r}") from None
        raise


def gpus_per_cell(cfg):
    """How many GPUs one cell of cfg's workload uses (its gpus_per_cell(cfg); 1 without)."""
    if not cfg.get("workload"):
        return 1
    wl = load_workload(workload_module(cfg))
    return max(1, getattr(wl, "gpus_per_cell", lambda cfg: 1)(cfg))
