"""bench/sd_jax.py, the notebook's training loop in JAX that the fractal benchmark
measures the engine against, gives the engine's images on identical inputs (skipped
where JAX is not installed: it is not a dependency of the project)."""

import importlib.util

import numpy as np
import pytest

from fractal import notebook
from fractal.engine import compute_image

from tests.conftest import ROOT

pytest.importorskip("jax")


def load_sd_jax():
    spec = importlib.util.spec_from_file_location("sd_jax", ROOT / "bench" / "sd_jax.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, nonlinearity, axes, batch, window",
    [
        ("tanh", "tanh", "lr_vs_lr", "full", (-1, 3, -1, 3)),
        ("relu", "relu", "lr_vs_lr", "full", (-1, 3, -1, 3)),
        ("minibatch", "tanh", "lr_vs_lr", "minibatch", (-1, 3, -1, 3)),
        ("paraminit", "tanh", "paraminit_vs_lr", "full", (-2, 1, -1, 2)),
    ],
)
def test_the_jax_port_gives_the_engines_image(name, nonlinearity, axes, batch, window):
    sd_jax = load_sd_jax()
    data = notebook.problem_arrays(272, batch)
    steps, res = 40, 8
    ours = compute_image(
        nonlinearity=nonlinearity, axes=axes, batch=batch, n_points=272, window=window,
        resolution=res, steps=steps, data=data, backend="torch", early_exit="none",
    )  # fmt: skip
    x0, x1, y0, y1 = window
    theirs, _ = sd_jax.timed_gen_img(
        sd_jax.Experiment(**sd_jax.EXPERIMENTS[name]), [y0, y1, x0, x1], res,
        X=data["X"], Y=data["Y"], theta=[data["W0"], data["W1"]], idx=data["idx"],
        num_steps=steps,
    )  # fmt: skip
    values = np.asarray(ours["values"])
    assert 0 < (theirs < 0).sum() < res * res, "the window should hold both labels"
    assert np.array_equal(values < 0, theirs < 0)
    # near the boundary training is chaotic, so rounding grows there; elsewhere the values
    # agree to rounding
    close = np.abs(values - theirs) <= 1e-9 * np.abs(theirs)
    assert close.mean() > 0.75, f"only {close.sum()} of {res * res} values agree"
