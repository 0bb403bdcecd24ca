"""What every pixel of an image shares, and what a pixel's training comes to.

The problem: data X, Y and initial weights W0, W1 (seeded, or injected from a file such as
the reference notebook's arrays), the minibatch sequence, and the log-spaced grid of
hyperparameters. The label: a pixel's value from its normalised losses, converged or not
(the notebook's formula), and the running sums the engines keep instead of trajectories.
"""

import numpy as np
import torch

from fractal.common import DECAY_KNOBS, MAX_VAL, OPTIMIZERS, TAIL, WIDTH

NONLINEARITIES = ("tanh", "relu", "identity")
AXES = ("lr_vs_lr", "paraminit_vs_lr")  # and "<knob>_vs_lr" (knob_axis)
BATCHES = ("full", "minibatch")
# paraminit_vs_lr: the notebook adds the offset to W0 inside train_step, and the updated
# weights keep it, so the offset is added again before every step ("every_step", the
# default, as the paper's images were made). "init" adds it once, to the initial W0.
OFFSET_MODES = ("every_step", "init")

# ----------------------------------------------------------------------------------------
# the problem every pixel shares: data, initial weights, minibatch sequence


def make_problem(
    *,
    n_points,
    steps,
    seed=0,
    batch="full",
    minibatch_size=16,
    dtype="float64",
    device="cpu",
    data=None,
):
    """X [n, 16], Y [n], W0 [16, 16], W1 [16] ~ N(0, 1) and the minibatch indices
    [steps, minibatch_size] (or None), drawn on the CPU in float64 so that every device
    and dtype trains from the same numbers. `data` (a dict of arrays X, Y, W0, W1 and, for
    the minibatch experiment, idx with at least `steps` rows) replaces the draw: the
    notebook's arrays (fractal/notebook.py) or a file's (load_data)."""
    if data is not None:
        check_data(data, batch, steps)
        as64 = lambda k: torch.as_tensor(np.asarray(data[k], dtype=np.float64))  # noqa: E731
        X, Y, W0, W1 = (as64(k) for k in ("X", "Y", "W0", "W1"))
        idx = None
        if batch == "minibatch":
            idx = torch.as_tensor(np.asarray(data["idx"], dtype=np.int64)[:steps]).to(device)
    else:
        g = torch.Generator().manual_seed(seed)
        W0 = torch.randn(WIDTH, WIDTH, generator=g, dtype=torch.float64)
        W1 = torch.randn(WIDTH, generator=g, dtype=torch.float64)
        X = torch.randn(n_points, WIDTH, generator=g, dtype=torch.float64)
        Y = torch.randn(n_points, generator=g, dtype=torch.float64)
        idx = None
        if batch == "minibatch":
            # one fixed random sequence shared by all pixels (notebook: PRNGKey(42) per step)
            gi = torch.Generator().manual_seed(seed + 42)
            idx = torch.randint(0, n_points, (steps, minibatch_size), generator=gi)
            idx = idx.to(device)
    dt = getattr(torch, dtype)
    move = lambda t: t.to(device=device, dtype=dt).contiguous()  # noqa: E731
    return dict(X=move(X), Y=move(Y), W0=move(W0), W1=move(W1), idx=idx)


def check_data(data, batch, steps):
    """Raises ValueError naming what is wrong with injected data (shapes, finiteness)."""
    shapes = {"X": (None, WIDTH), "Y": (None,), "W0": (WIDTH, WIDTH), "W1": (WIDTH,)}
    for key, shape in shapes.items():
        if key not in data:
            raise ValueError(f"the data have no array {key!r} (need X, Y, W0, W1)")
        a = np.asarray(data[key])
        if a.ndim != len(shape) or any(w is not None and w != n for w, n in zip(shape, a.shape)):
            raise ValueError(f"{key} has shape {a.shape}; expected {shape} (None: any)")
        if not np.isfinite(a).all():
            raise ValueError(f"{key} holds non-finite values")
    n = np.shape(data["X"])[0]
    if np.shape(data["Y"])[0] != n or n < 1:
        raise ValueError(f"X has {n} rows and Y {np.shape(data['Y'])[0]}: they must match")
    if batch == "minibatch":
        idx = data.get("idx")
        if idx is None or np.ndim(idx) != 2 or np.shape(idx)[0] < steps:
            have = None if idx is None else np.shape(idx)
            raise ValueError(f"the minibatch experiment needs idx [>= {steps}, size]; got {have}")
        if np.min(idx) < 0 or np.max(idx) >= n:
            raise ValueError(f"idx holds rows outside 0 .. {n - 1}")


def load_data(path):
    """X, Y, W0, W1 (and idx) from an .npz file (see docs/fractal.md, "Data")."""
    with np.load(path) as f:
        return {k: f[k] for k in ("X", "Y", "W0", "W1", "idx") if k in f}


def axis_values(window, resolution):
    """log10-spaced x and y values of the pixel grid (like jnp.logspace)."""
    nx, ny = (resolution, resolution) if isinstance(resolution, int) else resolution
    x0, x1, y0, y1 = window
    return np.logspace(x0, x1, nx), np.logspace(y0, y1, ny)


def knob_axis(axes):
    """The optimizer knob on the x axis of "<knob>_vs_lr" axes, or None."""
    if axes in AXES or not axes.endswith("_vs_lr"):
        return None
    return axes[: -len("_vs_lr")]


def check_optimizer(optimizer, optim, axes):
    """The optimizer's knobs: its defaults (common.OPTIMIZERS) updated by `optim`; raises
    ValueError naming an unknown optimizer, knob or axis, or a knob out of its domain."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}; expected one of {tuple(OPTIMIZERS)}")
    knobs = dict(OPTIMIZERS[optimizer])
    for k, v in (optim or {}).items():
        if k not in knobs:
            raise ValueError(f"{optimizer} has no knob {k!r}; its knobs: {tuple(knobs)}")
        v = float(v)
        bad = not 0 <= v < 1 if k in DECAY_KNOBS else not (v > 0 if k == "eps" else v >= 0)
        if bad or v != v:
            raise ValueError(f"{optimizer} knob {k}={v} is outside its domain")
        knobs[k] = v
    k = knob_axis(axes)
    if axes not in AXES and k not in knobs:
        extra = [f"{name}_vs_lr" for name in knobs]
        raise ValueError(f"axes={axes!r}; expected one of {AXES + tuple(extra)}")
    return knobs


def pixel_hparams(axes, x, y):
    """Per-pixel (lr0, lr1, offset) from the x and y values of each pixel."""
    if axes == "lr_vs_lr":
        return x, y, torch.zeros_like(x)
    if axes == "paraminit_vs_lr" or knob_axis(axes):  # one lr for both layers on y
        return y, y.clone(), x if axes == "paraminit_vs_lr" else torch.zeros_like(x)
    raise ValueError(f"unknown axes {axes!r}; expected one of {AXES}")


def pixel_knobs(knobs, axes, x):
    """The optimizer knobs with the x axis' knob per pixel: 1 - x for a decay rate
    (DECAY_KNOBS), x otherwise; the others stay floats."""
    k = knob_axis(axes)
    out = dict(knobs)
    if k is not None:
        out[k] = 1.0 - x if k in DECAY_KNOBS else x.clone()
    return out


# ----------------------------------------------------------------------------------------
# labels and values


def pixel_value(normalised_losses, tail=TAIL):
    """(value, converged) of one trajectory of losses divided by the first loss.

    Non-finite -> MAX_VAL, clipped at MAX_VAL; converged iff mean of the last `tail` < 1.
    Value -sum(v) if converged, +sum(1/v) if diverged: both are small in magnitude near the
    boundary (slow convergence, slow divergence), so the darkest colours meet there.
    """
    v = np.asarray(normalised_losses, dtype=np.float64)
    v = np.where(np.isfinite(v), v, MAX_VAL)
    v = np.minimum(v, MAX_VAL)
    converged = bool(np.mean(v[-tail:]) < 1)
    with np.errstate(divide="ignore"):
        value = -np.sum(v) if converged else np.sum(1.0 / v)
    return float(value), converged


def sanitise_(v):
    """In place on a tensor of normalised losses: non-finite -> MAX_VAL, clip at MAX_VAL."""
    v.nan_to_num_(nan=MAX_VAL, posinf=MAX_VAL).clamp_(max=MAX_VAL)
    return v


def finalise(sum_v, sum_inv, tail_sum, n_tail):
    """Values and labels from the running sums of the label formula (same as pixel_value)."""
    converged = tail_sum / n_tail < 1
    return torch.where(converged, -sum_v, sum_inv), converged
