"""Preflight: settings that would fail mid-matrix are refused before any cell runs."""

import os
import shutil
from pathlib import Path

from kmatrix.errors import ConfigError
from kmatrix.workloads import load_workload

MIN_FREE_GB = 1.0


def check_results_dir(root, min_free_gb=MIN_FREE_GB):
    root = Path(root)
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        raise ConfigError(
            "EXEC_RESULTS_ROOT",
            f"{existing} is not writable",
            'choose a directory you can write, e.g. CONFIG_EXEC_RESULTS_ROOT="results"',
        )
    free_gb = shutil.disk_usage(existing).free / 2**30
    if free_gb < min_free_gb:
        raise ConfigError(
            "EXEC_RESULTS_ROOT",
            f"only {free_gb:.2f} GiB free on {existing} (need {min_free_gb} GiB)",
            "free some disk or point EXEC_RESULTS_ROOT at a larger disk",
        )


def check_gpus(cfg):
    requested = cfg.get("exec_gpus") or ["auto"]
    if requested in (["auto"], ["none"]):
        return
    import torch

    present = torch.cuda.device_count()
    missing = [g for g in requested if not g.isdigit() or int(g) >= present]
    if missing:
        raise ConfigError(
            "EXEC_GPUS",
            f"GPU(s) {' '.join(missing)} requested but {present} present",
            'use CONFIG_EXEC_GPUS="auto" or ids below the GPU count',
        )


def check(cfg, cells, root, gpus=None):
    """Every rule, in the order a user would want to hear about them."""
    from kmatrix.executor import detect_gpus

    check_results_dir(root)
    check_gpus(cfg)
    gpus = detect_gpus(cfg.get("exec_gpus")) if gpus is None else gpus
    if cells:
        wl = load_workload(cells[0].workload)
        if hasattr(wl, "preflight"):
            wl.preflight(cfg, cells, gpus)  # gpus: the indices cells will run on, [] = CPU
