"""Seeds and run profiles, applied at the start of every cell."""

import os
import random

import numpy as np

# What each run profile sets. CUBLAS_WORKSPACE_CONFIG only works when set before CUDA
# starts, so the executor puts PROFILE_ENV into each worker's environment.
PROFILE_ENV = {"paper_repro": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}, "maxout_speed": {}}


def seed_everything(seed):
    """Seed python, numpy, torch and every CUDA device from one number."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def apply_profile(profile):
    """Set torch's global numerics for a run profile and return what was set."""
    repro = profile == "paper_repro"
    knobs = {
        "profile": profile,
        "deterministic_algorithms": repro,
        "cudnn_benchmark": not repro,
        "tf32": not repro,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    import torch

    torch.use_deterministic_algorithms(repro, warn_only=False)
    torch.backends.cudnn.deterministic = repro
    torch.backends.cudnn.benchmark = not repro
    torch.backends.cuda.matmul.allow_tf32 = not repro
    torch.backends.cudnn.allow_tf32 = not repro
    torch.set_float32_matmul_precision("highest" if repro else "high")
    return knobs
