"""Checkpoints of the training loop: model, optimizers, scaler, step counters and every
RNG state, written atomically and loaded without ever unpickling code."""

import pickle
import random

import numpy as np
import torch

from kmatrix.files import write_atomic


def rng_state():
    v, keys, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": (v, list(keys), gauss),
        "numpy": (torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(st):
    v, keys, gauss = st["python"]
    random.setstate((v, tuple(keys), gauss))
    keys_np, pos, has_gauss, cached = st["numpy"]
    np.random.set_state(
        ("MT19937", keys_np.numpy().astype(np.uint32), int(pos), int(has_gauss), cached)
    )
    torch.set_rng_state(st["torch"])
    if st["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path, state):
    """torch.save to a temp file then rename: a crash never leaves a half checkpoint."""
    write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path, map_location="cpu"):
    """Load with weights_only=True: tensors and plain containers only, never code.

    A checkpoint that needs arbitrary unpickling (e.g. a crafted file whose __reduce__
    calls a function) is refused with a clear error instead of being executed.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise RuntimeError(
            f"refusing to load checkpoint {path}: it contains objects other than tensors and "
            f"plain containers, which could run code when unpickled ({str(e).splitlines()[0]}). "
            "Delete it, or re-create it with gpt2.checkpoint.save_checkpoint."
        ) from None
