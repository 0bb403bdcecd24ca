"""The reference notebook's data: X, Y, the initial weights and the minibatch index table.

The notebook draws them with JAX from `PRNGKey(0)` (data and weights) and `PRNGKey(42)`
(the minibatch table, one key per step). JAX 0.4.x on the CPU reproduces those arrays;
later JAX versions draw different numbers from the same keys. They are shipped in
`fractal/data/notebook.npz` (made by `generate`, below), so no JAX is needed to use them:

    python -m venv /tmp/jax04 && /tmp/jax04/bin/pip install "jax[cpu]==0.4.30" numpy
    /tmp/jax04/bin/python -m fractal.notebook fractal/data/notebook.npz

The file holds W0 [16, 16], W1 [16] (the same for every experiment), X and Y for the
three data-set sizes (272 points: tanh, relu, minibatch, paraminit; 16: identity; 1:
single data point) and the minibatch experiment's table for 1000 steps ([1000, 16]: the
notebook splits its key into as many keys as steps, so the table depends on the step
count). `problem_arrays` returns one experiment's arrays in the engine's layout.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np

from fractal.common import WIDTH

PATH = Path(__file__).with_name("data") / "notebook.npz"
MINIBATCH_STEPS = 1000  # the table's length: the paper's minibatch experiment ran 1000 steps
MINIBATCH_SIZE = 16


def generate(path=PATH, minibatch_steps=MINIBATCH_STEPS):
    """Draw the arrays as the notebook's gen_img and train do (needs JAX 0.4.x, x64)."""
    import jax

    jax.config.update("jax_enable_x64", True)

    def init(rng, depth=2):  # the notebook's init: one key per layer, W ~ N(0, 1)
        keys = jax.random.split(rng, depth)
        return [jax.random.normal(keys[0], (WIDTH, WIDTH)), jax.random.normal(keys[1], (WIDTH, 1))]

    arrays = {}
    for n in (272, 16, 1):
        rng = jax.random.PRNGKey(0)
        rng, srng = jax.random.split(rng)
        theta = init(srng)
        rng, srng = jax.random.split(rng)
        X = jax.random.normal(srng, (n, WIDTH))
        rng, srng = jax.random.split(rng)
        Y = jax.random.normal(srng, (n, 1))
        arrays[f"X{n}"], arrays[f"Y{n}"] = np.asarray(X), np.asarray(Y)[:, 0]
        arrays["W0"], arrays["W1"] = np.asarray(theta[0]), np.asarray(theta[1])[:, 0]
    keys = jax.random.split(jax.random.PRNGKey(42), minibatch_steps)
    idx = [np.asarray(jax.random.randint(k, (MINIBATCH_SIZE,), 0, 272)) for k in keys]
    arrays["idx272"] = np.stack(idx).astype(np.int16)  # < 272: int16 keeps the file small
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    np.savez(path, **arrays, jax_version=np.array(jax.__version__))
    return arrays


def problem_arrays(n_points, batch, path=PATH):
    """The notebook's X [n], Y [n], W0, W1 (and idx for the minibatch experiment) as float64
    / int64 numpy arrays, for an experiment with `n_points` data points."""
    with np.load(path) as f:
        if f"X{n_points}" not in f:
            raise ValueError(f"the notebook has no data set of {n_points} points (272, 16 or 1)")
        out = {k: f[k] for k in ("W0", "W1")}
        out["X"], out["Y"] = f[f"X{n_points}"], f[f"Y{n_points}"]
        out["idx"] = f[f"idx{n_points}"].astype(np.int64) if batch == "minibatch" else None
    return out


def digest(arrays):
    """A short sha256 of the arrays (names, shapes and bytes), recorded with every image."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        v = arrays[k]
        if v is None:
            continue
        v = np.ascontiguousarray(v)
        h.update(f"{k}{v.dtype}{v.shape}".encode())
        h.update(v.tobytes())
    return h.hexdigest()[:16]


if __name__ == "__main__":
    out = generate(sys.argv[1] if len(sys.argv) > 1 else PATH)
    print({k: v.shape for k, v in out.items()})
