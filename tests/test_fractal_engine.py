"""Tests of the fractal training engine against an independent autograd reference."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fractal import engine
from fractal.engine import EXPERIMENTS, OPENING_WINDOW, compute_image, pixel_losses, pixel_value


def reference_losses(*, nonlinearity, axes, batch, n_points, x_value, y_value, steps, seed):
    """One network, written as in the notebook and trained with autograd in float64."""
    p = engine.make_problem(n_points=n_points, steps=steps, seed=seed, batch=batch)
    X, Y, idx = p["X"], p["Y"], p["idx"]
    W0, W1 = p["W0"].clone(), p["W1"].clone()[:, None]
    act = {
        "tanh": lambda z: torch.tanh(z * math.sqrt(2)),
        "relu": lambda z: torch.relu(z) * math.sqrt(2),
        "identity": lambda z: z,
    }[nonlinearity]

    def loss(W0, W1, X, Y):
        h = act(X @ W0 / math.sqrt(W0.shape[0]))
        out = (h @ W1 / math.sqrt(W1.shape[0])) / math.sqrt(W1.shape[0])
        return torch.mean((out[:, 0] - Y) ** 2)

    if axes == "lr_vs_lr":
        lr0, lr1, offset = x_value, y_value, 0.0
    else:
        lr0, lr1, offset = y_value, y_value, x_value
    losses = []
    for step in range(steps):
        W0 = (W0 + offset).detach().requires_grad_()  # the notebook re-adds it every step
        W1 = W1.detach().requires_grad_()
        full = loss(W0, W1, X, Y)
        losses.append(full.item())
        if idx is not None:
            g0, g1 = torch.autograd.grad(loss(W0, W1, X[idx[step]], Y[idx[step]]), (W0, W1))
        else:
            g0, g1 = torch.autograd.grad(full, (W0, W1))
        W0, W1 = W0 - lr0 * g0, W1 - lr1 * g1
    losses = np.array(losses)
    return losses / losses[0]


CASES = [  # (experiment, x, y): a converging and a diverging pixel per experiment
    ("tanh", 0.5, 2.0),
    ("tanh", 0.01, 1000.0),
    ("relu", 0.5, 2.0),
    ("relu", 1.0, 300.0),  # overflows to inf after ~8 steps
    ("identity", 1.0, 1.0),
    ("identity", 1.0, 300.0),
    ("minibatch", 0.5, 2.0),
    ("minibatch", 1.0, 100.0),
    ("single_datapoint", 2.0, 5.0),
    ("single_datapoint", 100.0, 100.0),
    ("paraminit", 1e-3, 1.0),
    ("paraminit", 1000.0, 300.0),
]
# Diverging tanh training is often chaotic: roundoff differences of 1e-16 grow to 1e-6
# within 100 steps (e.g. tanh at (1, 300)), so the diverging cases are ones that are not.


@pytest.mark.parametrize("case", range(len(CASES)))
def test_pixel_trajectory_matches_autograd_reference(case):
    name, x, y = CASES[case]
    kw = dict(EXPERIMENTS[name], x_value=x, y_value=y, steps=120, seed=3)
    got = pixel_losses(**kw)
    want = reference_losses(**kw)
    finite = np.isfinite(want)
    assert finite[:5].all()
    # 1e-10 relative; atol (relative to the first loss) for losses that converged to ~0
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-10, atol=1e-13)
    assert np.array_equal(np.isfinite(got), finite)
    assert pixel_value(got)[1] == (case % 2 == 0)  # the cases cover both labels


# ------------------------------------------------------------------ label / value formula


def test_value_converging():
    v = np.linspace(1.0, 0.1, 50)
    value, conv = pixel_value(v)
    assert conv and value == pytest.approx(-v.sum())


def test_value_diverging():
    v = np.linspace(1.0, 5.0, 50)
    value, conv = pixel_value(v)
    assert not conv and value == pytest.approx((1 / v).sum())


def test_value_uses_last_20_mean():
    # oscillating tail: mean 0.95 < 1 although half the points are above 1
    v = np.concatenate([np.ones(30), np.tile([0.5, 1.4], 10)])
    assert pixel_value(v)[1]
    v = np.concatenate([np.full(30, 0.1), np.tile([0.5, 1.6], 10)])
    assert not pixel_value(v)[1]


@pytest.mark.parametrize("bad", [np.inf, np.nan, 1e300])
def test_value_non_finite_and_exploding(bad):
    v = np.concatenate([[1.0, 10.0, 1e5], np.full(30, bad)])
    value, conv = pixel_value(v)
    assert not conv
    want = 1 + 0.1 + 1e-5 + 30 / engine.MAX_VAL  # non-finite and huge both count as 1e6
    assert value == pytest.approx(want, rel=1e-12)


def test_value_formula_matches_running_sums():
    # the engine's running-sum finalisation equals pixel_value on the same trajectories
    rng = np.random.default_rng(0)
    trajs = [np.exp(rng.normal(0, 3, 40)), np.linspace(1, 0.01, 40), np.full(40, np.inf)]
    for t in trajs:
        v = engine.sanitise_(torch.tensor(t))
        val, conv = engine.finalise(v.sum(), (1 / v).sum(), v[-20:].sum(), 20)
        assert (val.item(), bool(conv)) == pytest.approx(pixel_value(t))


# ------------------------------------------------------------------------------ images


def test_image_has_both_phases_and_is_deterministic():
    kw = dict(EXPERIMENTS["tanh"], window=OPENING_WINDOW, resolution=12, steps=60)
    a = compute_image(**kw)
    b = compute_image(**kw)
    assert a["values"].shape == (12, 12) and a["converged"].dtype == bool
    assert 0 < a["converged"].mean() < 1
    assert np.array_equal(a["values"], b["values"])
    assert a["backend"] == "torch" and a["pixel_steps_per_s"] > 0
    # small learning rates (bottom-left) converge, huge ones (top-right) diverge
    assert a["converged"][0, 0] and not a["converged"][-1, -1]
    assert np.array_equal(a["values"] < 0, a["converged"])


def test_image_pixel_equals_single_pixel_path():
    # a 1 x 1 image at (x, y) is the pixel_losses trajectory through pixel_value
    kw = dict(EXPERIMENTS["minibatch"], steps=60, seed=1)
    img = compute_image(**kw, window=(0.3, 0.3, 1.2, 1.2), resolution=1)
    v = pixel_losses(**kw, x_value=10**0.3, y_value=10**1.2)
    value, conv = pixel_value(v)
    assert img["values"][0, 0] == pytest.approx(value, rel=1e-12)
    assert img["converged"][0, 0] == conv


def test_chunking_and_orientation():
    # chunks of 7 pixels give the same image; rows follow y, columns follow x
    kw = dict(EXPERIMENTS["relu"], window=(-1, 2, -1, 3), resolution=(6, 5), steps=30)
    a = compute_image(**kw)
    b = compute_image(**kw, chunk_pixels=7)
    assert a["values"].shape == (5, 6)
    np.testing.assert_allclose(a["values"], b["values"], rtol=1e-12)
    iy, ix = 3, 4
    v = pixel_losses(
        **EXPERIMENTS["relu"],
        x_value=np.logspace(-1, 2, 6)[ix],
        y_value=np.logspace(-1, 3, 5)[iy],
        steps=30,
        seed=0,
    )
    assert a["values"][iy, ix] == pytest.approx(pixel_value(v)[0], rel=1e-12)


def test_float32_option_runs():
    r = compute_image(
        **EXPERIMENTS["tanh"], window=OPENING_WINDOW, resolution=8, steps=50, dtype="float32"
    )
    assert r["dtype"] == "float32" and np.isfinite(r["values"]).all()


# ------------------------------------------------------------------------------ triton


TRITON_CASES = {
    name: dict(EXPERIMENTS[name], window=(-1, 2.5, -1, 2.5), resolution=(3, 2), steps=12)
    for name in ["tanh", "relu", "identity", "minibatch", "single_datapoint"]
}
TRITON_CASES["paraminit"] = dict(
    EXPERIMENTS["paraminit"], window=(-3, 0, -1, 2.5), resolution=(3, 2), steps=12
)

# Both labels in every image, overflow to inf in some (relu, identity).
# 6 pixels in blocks of 4 (the second block half padding), 272 rows in chunks of 64 (the
# last one masked). Runs in a fresh interpreter: TRITON_INTERPRET must be set before triton is first imported.
TRITON_SCRIPT = """
import json, sys, numpy as np
from fractal import triton_engine as te
from fractal.engine import compute_image
out = {}
for name, kw in json.loads(sys.argv[1]).items():
    kw["resolution"] = tuple(kw["resolution"])
    a = compute_image(**kw, backend="torch")
    b = compute_image(**kw, backend="triton", triton_config=te.Config(block_p=4, bn=64, num_warps=1))
    rel = np.abs(b["values"] - a["values"]) / np.abs(a["values"])
    out[name] = [float(rel.max()), bool((a["converged"] == b["converged"]).all()), b["backend"]]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def triton_vs_torch():
    pytest.importorskip("triton")
    if torch.cuda.is_available():  # compile for real and compare on the GPU
        out = {}
        for name, kw in TRITON_CASES.items():
            a = compute_image(**kw, backend="torch", device="cuda")
            b = compute_image(**kw, backend="triton", device="cuda")
            rel = np.abs(b["values"] - a["values"]) / np.abs(a["values"])
            out[name] = [rel.max(), (a["converged"] == b["converged"]).all(), b["backend"]]
        return out
    env = dict(os.environ, TRITON_INTERPRET="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", TRITON_SCRIPT, json.dumps(TRITON_CASES)],
        env=env, cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(TRITON_CASES))
def test_triton_matches_torch(triton_vs_torch, name):
    max_rel, same_labels, backend = triton_vs_torch[name]
    assert backend == "triton"
    assert same_labels
    assert max_rel < 1e-12
