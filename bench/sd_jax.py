"""The notebook's training loop in JAX: the baseline the fractal engine is measured against.

    python bench/fractal_bench.py --jax-ref bench/sd_jax.py --out bench/results/fractal_bench.json

The paper's notebook trains every pixel of an image with JAX: a step is jitted and vmapped
over the pixels, and a Python loop runs the steps over chunks of at most 50,000 pixels.
This file does the same, written from the paper's description (docs/fractal.md, "The
paper's protocol"), so that the engine's speed and images can be compared with the
notebook's way of computing them on identical inputs:

- a net of width 16, no biases, mean-field scaling: z = x W0 / 4, h = phi(z) with
  tanh(sqrt(2) z), sqrt(2) relu(z) or z, and y = h W1 / 16;
- the mean squared error, plain gradient descent with one learning rate per layer; in the
  paraminit experiment an offset is added to W0 before every step (the updated weights
  keep it, as in the notebook) and both layers share the learning rate;
- the minibatch experiment takes the gradient on 16 rows per step from a table shared by
  all pixels and reads out the full-batch loss;
- a pixel's value: losses divided by the first, non-finite as 1e6, clipped at 1e6;
  converged if the mean of the last 20 is below 1; -sum(v) if converged, else sum(1/v).

The interface fractal_bench.py uses: EXPERIMENTS, Experiment(**EXPERIMENTS[name]) and
timed_gen_img(exp, mnmx, resolution, X=, Y=, theta=, idx=, num_steps=) -> (image, seconds),
where mnmx = [row min, row max, column min, column max] in log10 and the image's rows are
the output layer's learning rate (or the shared one), its columns the input layer's (or
the offset). Needs JAX (CPU is enough: `pip install jax`); float64 is switched on here.
"""

import math
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

WIDTH = 16
MAX_VAL = 1e6
TAIL = 20
CHUNK = 50_000  # pixels per jitted call, as the notebook

EXPERIMENTS = {
    "tanh": dict(nonlinearity="tanh"),
    "relu": dict(nonlinearity="relu"),
    "identity": dict(nonlinearity="identity"),
    "minibatch": dict(nonlinearity="tanh", minibatch_size=16),
    "single_datapoint": dict(nonlinearity="tanh"),
    "paraminit": dict(nonlinearity="tanh", phase_space="paraminit_vs_lr"),
}
PHI = {
    "tanh": lambda z: jnp.tanh(math.sqrt(2.0) * z),
    "relu": lambda z: math.sqrt(2.0) * jax.nn.relu(z),
    "identity": lambda z: z,
}


class Experiment:
    """One of the paper's experiments; `gen_img` trains a grid of pixels and labels them."""

    def __init__(self, nonlinearity="tanh", phase_space="lr_vs_lr", minibatch_size=None):
        if nonlinearity not in PHI or phase_space not in ("lr_vs_lr", "paraminit_vs_lr"):
            raise ValueError(f"unknown experiment: {nonlinearity!r}, {phase_space!r}")
        self.phi, self.phase_space, self.minibatch_size = (
            PHI[nonlinearity],
            phase_space,
            minibatch_size,
        )
        self._train = jax.jit(jax.vmap(self._trajectory, in_axes=(None, 0, None)))

    def _loss(self, W0, W1, X, Y):
        h = self.phi(X @ W0 / math.sqrt(WIDTH))
        return jnp.mean((h @ W1 / WIDTH - Y) ** 2)

    def _trajectory(self, data, hp, idx):
        """One pixel: its normalised losses' value and label after len(idx) steps."""
        W0, W1, X, Y = data
        lr0, lr1, offset = hp
        grad = jax.grad(self._loss, argnums=(0, 1))

        def step(weights, rows):
            w0, w1 = weights
            w0 = w0 + offset
            loss = self._loss(w0, w1, X, Y)  # read out before the update, full batch
            gx, gy = (X, Y) if self.minibatch_size is None else (X[rows], Y[rows])
            g0, g1 = grad(w0, w1, gx, gy)
            return (w0 - lr0 * g0, w1 - lr1 * g1), loss

        _, losses = jax.lax.scan(step, (W0, W1), idx)
        v = losses / losses[0]
        v = jnp.minimum(jnp.where(jnp.isfinite(v), v, MAX_VAL), MAX_VAL)
        converged = jnp.mean(v[-TAIL:]) < 1
        return jnp.where(converged, -jnp.sum(v), jnp.sum(1.0 / v))

    def gen_img(self, mnmx, resolution, X, Y, theta, idx=None, num_steps=1000):
        """The [resolution, resolution] image of values over the window mnmx (log10)."""
        f64 = lambda a: jnp.asarray(np.asarray(a, dtype=np.float64))  # noqa: E731
        W0, W1 = f64(theta[0]), f64(theta[1]).reshape(WIDTH, 1)
        X, Y = f64(X), f64(Y).reshape(-1, 1)
        if self.minibatch_size is None:
            idx = np.zeros((num_steps, 1), dtype=np.int64)  # a step counter for scan
        elif idx is None or len(idx) < num_steps:
            raise ValueError(f"the minibatch experiment needs idx with {num_steps} rows")
        idx = jnp.asarray(np.asarray(idx)[:num_steps])
        rows = np.logspace(mnmx[0], mnmx[1], resolution)
        cols = np.logspace(mnmx[2], mnmx[3], resolution)
        col, row = (a.ravel() for a in np.meshgrid(cols, rows))
        if self.phase_space == "lr_vs_lr":
            hp = np.stack([col, row, np.zeros_like(col)], axis=-1)
        else:  # paraminit_vs_lr: columns are W0's offset, rows the shared learning rate
            hp = np.stack([row, row, col], axis=-1)
        values = [
            np.asarray(self._train((W0, W1, X, Y), jnp.asarray(hp[i : i + CHUNK]), idx))
            for i in range(0, len(hp), CHUNK)
        ]
        return np.concatenate(values).reshape(resolution, resolution)


def timed_gen_img(exp, mnmx, resolution, **kw):
    """gen_img and its wall time in seconds (the first call of a shape includes jit)."""
    t0 = time.perf_counter()
    image = exp.gen_img(mnmx, resolution, **kw)
    return image, time.perf_counter() - t0
