"""Tests of the fractal training engine against an independent autograd reference."""

import json
import math

import numpy as np
import pytest
import torch

from fractal import problem
from fractal.common import EXPERIMENTS, MAX_VAL, OPENING_WINDOW
from fractal.engine import compute_image, pixel_losses
from fractal.problem import pixel_value
from tests.conftest import run_script


def reference_losses(
    *, nonlinearity, axes, batch, n_points, x_value, y_value, steps, seed, data=None
):
    """One network, written as in the notebook and trained with autograd in float64."""
    p = problem.make_problem(n_points=n_points, steps=steps, seed=seed, batch=batch, data=data)
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
    want = 1 + 0.1 + 1e-5 + 30 / MAX_VAL  # non-finite and huge both count as 1e6
    assert value == pytest.approx(want, rel=1e-12)


def test_value_formula_matches_running_sums():
    # the engine's running-sum finalisation equals pixel_value on the same trajectories
    rng = np.random.default_rng(0)
    trajs = [np.exp(rng.normal(0, 3, 40)), np.linspace(1, 0.01, 40), np.full(40, np.inf)]
    for t in trajs:
        v = problem.sanitise_(torch.tensor(t))
        val, conv = problem.finalise(v.sum(), (1 / v).sum(), v[-20:].sum(), 20)
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


def test_notebook_data_trajectory_matches_autograd_reference():
    # the notebook's arrays go through make_problem unchanged (minibatch: its index table)
    from fractal import notebook

    for name in ("tanh", "identity", "minibatch", "single_datapoint"):
        e = EXPERIMENTS[name]
        data = notebook.problem_arrays(e["n_points"], e["batch"])
        kw = dict(e, x_value=0.7, y_value=3.0, steps=60, seed=0, data=data)
        got, want = pixel_losses(**kw), reference_losses(**kw)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    data = notebook.problem_arrays(272, "minibatch")
    p = problem.make_problem(n_points=272, steps=5, batch="minibatch", data=data)
    assert p["idx"].tolist() == data["idx"][:5].tolist()
    assert torch.equal(p["X"], torch.as_tensor(data["X"])) and p["W1"].shape == (16,)


def test_injected_data_is_checked():
    from fractal import notebook

    good = notebook.problem_arrays(272, "minibatch")
    for change, match in [
        (dict(X=good["X"][:, :8]), "X has shape"),
        (dict(Y=good["Y"][:5]), "must match"),
        (dict(W0=np.full((16, 16), np.nan)), "non-finite"),
        (dict(idx=good["idx"][:3]), "needs idx"),
        (dict(idx=good["idx"] + 300), "outside"),
    ]:
        with pytest.raises(ValueError, match=match):
            problem.check_data({**good, **change}, "minibatch", 10)
    with pytest.raises(ValueError, match="no array 'W1'"):
        problem.check_data({k: v for k, v in good.items() if k != "W1"}, "full", 10)


def _exit_window(name):
    # windows where some pixels' output weights turn non-finite after ~5 (relu, identity)
    # or ~22 steps (the others), well inside 40 steps; other pixels converge
    return (0, 9, 1, 9) if name == "paraminit" else (1, 9, 1, 9)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_torch_early_exit_leaves_the_image(name):
    # pixels stop once an output weight is non-finite; the values are the full
    # computation's (bitwise where the products keep their shapes: one pixel per chunk;
    # to rounding otherwise, as dropping stopped pixels reshapes the products)
    kw = dict(EXPERIMENTS[name], window=_exit_window(name), resolution=(4, 3), steps=40)
    full = compute_image(**kw, early_exit="none")
    fast = compute_image(**kw, early_exit="nonfinite")
    assert (full["steps_run"] == 40).all() and full["pixel_steps"] == 40 * 12
    assert (fast["steps_run"] < 40).sum() >= 4  # the exit happened
    assert fast["pixel_steps"] == fast["steps_run"].sum() < full["pixel_steps"]
    assert np.array_equal(full["converged"], fast["converged"])
    np.testing.assert_allclose(fast["values"], full["values"], rtol=1e-12)
    one = dict(kw, chunk_pixels=1)
    a, b = compute_image(**one, early_exit="none"), compute_image(**one, early_exit="nonfinite")
    assert np.array_equal(a["values"], b["values"])


def test_threshold_exit_stops_earlier():
    kw = dict(EXPERIMENTS["tanh"], window=(-1, 7, -1, 7), resolution=(4, 3), steps=25)
    exact = compute_image(**kw, chunk_pixels=1)
    thr = compute_image(**kw, chunk_pixels=1, early_exit="threshold")
    assert (thr["steps_run"] <= exact["steps_run"]).all()
    assert thr["pixel_steps"] < exact["pixel_steps"]
    with pytest.raises(ValueError, match="early_exit"):
        compute_image(**kw, early_exit="sometimes")


def test_known_pixels_and_explicit_grid():
    # an explicit log10 grid equal to the window's gives the same image; known pixels are
    # copied (not trained) and the others are unchanged
    kw = dict(EXPERIMENTS["relu"], steps=30, chunk_pixels=1)
    a = compute_image(**kw, window=(-1, 2, -1, 3), resolution=(6, 5))
    grid = (np.linspace(-1, 2, 6), np.linspace(-1, 3, 5))
    b = compute_image(**kw, grid=grid)
    assert np.array_equal(a["values"], b["values"])
    mask = np.zeros((5, 6), dtype=bool)
    mask[1:4, 2:5] = True
    c = compute_image(**kw, grid=grid, known=(mask, np.where(mask, a["values"], 0.0)))
    assert np.array_equal(c["values"], a["values"])
    assert c["trained_pixels"] == 30 - 9 and (c["steps_run"][mask] == 0).all()
    assert np.array_equal(c["converged"], a["converged"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need CUDA")
def test_frame_reuse_is_bitwise_on_the_gpu():
    # a frame whose inner quarter is copied from the next deeper frame equals the frame
    # computed whole, bit for bit: the kernels train each pixel on its own
    from fractal import notebook, zoom

    data = notebook.problem_arrays(272, "full")
    x, y, width, _ = zoom.PAPER_PANELS["tanh"]
    kw = dict(EXPERIMENTS["tanh"], steps=500, data=data, device="cuda", backend="triton")
    deeper = compute_image(**kw, grid=zoom.frame_grid((x, y), width, 1, 33))
    whole = compute_image(**kw, grid=zoom.frame_grid((x, y), width, 0, 33))
    known = zoom.known_from_deeper(deeper["values"])
    reused = compute_image(**kw, grid=zoom.frame_grid((x, y), width, 0, 33), known=known)
    assert reused["trained_pixels"] == 33 * 33 - 17 * 17
    assert np.array_equal(reused["values"], whole["values"])
    assert 0 < whole["converged"].mean() < 1


# ------------------------------------------------------------------------------ triton


TRITON_CASES = {
    name: dict(EXPERIMENTS[name], window=(-1, 2.5, -1, 2.5), resolution=(3, 2), steps=12)
    for name in ["tanh", "relu", "identity", "minibatch", "single_datapoint"]
}
TRITON_CASES["paraminit"] = dict(
    EXPERIMENTS["paraminit"], window=(-3, 0, -1, 2.5), resolution=(3, 2), steps=12
)

TANH_VARIANTS = ["libdevice", "fast"]  # the interpreter runs "exp" for "libdevice"
EXIT_CASES = {
    name: dict(EXPERIMENTS[name], window=_exit_window(name), resolution=(4, 3), steps=40)
    for name in EXPERIMENTS
}


def triton_checks(device, variants):
    """Per "variant/experiment": the Triton backend against torch on TRITON_CASES (max
    relative difference, same labels, backend, config) and its early exit on EXIT_CASES
    (bitwise equal to no exit, pixels stopped, threshold never later). Variants: a tanh
    of the default kernel (Gluon on CUDA, the tl kernel in the interpreter), or "tl"."""
    import dataclasses

    from fractal import triton_engine as te

    out = {}
    for variant in variants:
        if variant == "tl":
            cfg = te.PORTABLE_CONFIG
        elif device == "cuda":
            cfg = dataclasses.replace(te.DEFAULT_CONFIG, tanh=variant)
        else:  # one pixel per program, 64-row chunks (the last one masked)
            cfg = te.Config(block_p=1, bn=64, num_warps=1, tanh=variant)
        tri = dict(backend="triton", device=device, triton_config=cfg)
        for name, kw in TRITON_CASES.items():
            kw = dict(kw, resolution=tuple(kw["resolution"]))
            a = compute_image(**kw, backend="torch", device=device)
            b = compute_image(**kw, **tri)
            rel = np.abs(b["values"] - a["values"]) / np.abs(a["values"])
            same = bool((a["converged"] == b["converged"]).all())
            row = [float(rel.max()), same, b["backend"], b["triton_config"]]
            if variant in ("fast", "tl"):
                kw = dict(EXIT_CASES[name], resolution=tuple(EXIT_CASES[name]["resolution"]))
                full = compute_image(**kw, **tri, early_exit="none")
                fast = compute_image(**kw, **tri, early_exit="nonfinite")
                thr = compute_image(**kw, **tri, early_exit="threshold")
                row += [
                    bool(np.array_equal(full["values"], fast["values"])),
                    int((fast["steps_run"] < kw["steps"]).sum()),
                    bool((thr["steps_run"] <= fast["steps_run"]).all()),
                    bool((full["steps_run"] == kw["steps"]).all()),
                ]
            out[f"{variant}/{name}"] = row
    return out


# Both labels in every image, overflow to inf in some (relu, identity); some pixels of
# every exit case stop early. Runs in a fresh Python: TRITON_INTERPRET must be set before
# triton is first imported.
TRITON_SCRIPT = """
import json, sys
from tests.test_fractal_engine import triton_checks
print(json.dumps(triton_checks("cpu", json.loads(sys.argv[1]))))
"""


@pytest.fixture(scope="module")
def triton_vs_torch(tmp_path_factory):
    pytest.importorskip("triton")
    if torch.cuda.is_available():  # compile for real and compare on the GPU
        return triton_checks("cuda", TANH_VARIANTS + ["tl"])
    return run_script(tmp_path_factory, TRITON_SCRIPT, json.dumps(["fast"]))


@pytest.mark.parametrize("variant", TANH_VARIANTS + ["tl"])
@pytest.mark.parametrize("name", list(TRITON_CASES))
def test_triton_matches_torch(triton_vs_torch, name, variant):
    if f"{variant}/{name}" not in triton_vs_torch:
        pytest.skip("the interpreter runs the tl kernel only: the fast tanh covers it")
    max_rel, same_labels, backend, cfg = triton_vs_torch[f"{variant}/{name}"][:4]
    assert backend == "triton"
    if variant == "fast":  # really the fast tanh, under the interpreter too
        assert cfg["tanh"] == "fast"
    if torch.cuda.is_available():  # the Gluon kernel by default, the tl kernel on request
        assert cfg["kernel"] == ("tl" if variant == "tl" else "gluon")
    assert same_labels
    # the interpreter evaluates tl.fma as a product and a sum (two roundings): its fast
    # tanh is ~1e-15 off, and 12 chaotic steps amplify that
    assert max_rel < (1e-12 if torch.cuda.is_available() or variant != "fast" else 1e-8)


@pytest.mark.parametrize("variant", ["fast", "tl"])
@pytest.mark.parametrize("name", list(EXIT_CASES))
def test_triton_early_exit_leaves_the_image(triton_vs_torch, name, variant):
    if f"{variant}/{name}" not in triton_vs_torch:
        pytest.skip("the interpreter runs the tl kernel only: the fast tanh covers it")
    bitwise, _, threshold_sooner, full_runs_all = triton_vs_torch[f"{variant}/{name}"][4:]
    assert bitwise and full_runs_all and threshold_sooner


@pytest.mark.parametrize("variant", ["fast", "tl"])
def test_triton_early_exit_stops_pixels(triton_vs_torch, variant):
    # relu and identity blow up within ~5 steps, the tanh networks after ~22 (a few steps
    # later with the GPU's rounding than on the CPU, so not every case stops within 40)
    stopped = {k: v[5] for k, v in triton_vs_torch.items() if k.startswith(f"{variant}/")}
    if not stopped:
        pytest.skip("the interpreter runs the tl kernel only: the fast tanh covers it")
    assert stopped[f"{variant}/relu"] >= 2 and stopped[f"{variant}/identity"] >= 2
    assert sum(stopped.values()) >= 8


FLOAT32_SCRIPT = """
import json, sys, numpy as np
from fractal.engine import compute_image
kw = json.loads(sys.argv[1])
kw["resolution"] = tuple(kw["resolution"])
a = compute_image(**kw, backend="torch", device=sys.argv[2], dtype="float32")
b = compute_image(**kw, backend="triton", device=sys.argv[2], dtype="float32")
rel = np.abs(b["values"] - a["values"]) / np.abs(a["values"])
print(json.dumps([float(rel.max()), bool((a["converged"] == b["converged"]).all()),
                  b["dtype"], b["triton_config"]]))
"""


def test_triton_float32_falls_back(tmp_path_factory):
    # the fast tanh and the Gluon kernel work on float64 only: float32 runs the tl kernel
    # with libdevice's tanh (the interpreter's stand-in for it on the CPU)
    pytest.importorskip("triton")
    cuda = torch.cuda.is_available()
    case = json.dumps(TRITON_CASES["tanh"])
    max_rel, same, dtype, cfg = run_script(
        tmp_path_factory, FLOAT32_SCRIPT, case, "cuda" if cuda else "cpu", interpret=not cuda
    )
    assert dtype == "float32" and cfg["kernel"] == "tl" and cfg["tanh"] != "fast"
    assert same and max_rel < 1e-4


# _tanh_fast(z) is tanh(u) for z = 2 u log2(e), which train() folds into the weights; here
# the host scales u. Dense grid, tiny and huge magnitudes of both signs, inf and NaN.
TANH_SCRIPT = """
import json, math, sys, numpy as np, torch, triton, triton.language as tl
from fractal import kernel_lib as te
from fractal.common import TANH_PADE

@triton.jit
def tanh_kernel(Z, T, n, C0: tl.float64, C1: tl.float64, C2: tl.float64, C3: tl.float64,
                C4: tl.float64, C5: tl.float64, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    z = tl.load(Z + i, mask=i < n, other=0.0)
    tl.store(T + i, te._tanh_fast(z, (C0, C1, C2, C3, C4, C5)), mask=i < n)

device = sys.argv[1]
tiny_to_large = np.geomspace(1e-300, 30.0, 20001)
u = np.concatenate([
    np.linspace(-25.0, 25.0, 500001), tiny_to_large, -tiny_to_large,
    [0.0, -0.0, 5e-324, -5e-324, 1e-310, 1e300, -1e300, 1e308, np.inf, -np.inf, np.nan],
])
z = torch.tensor(u * (2.0 / math.log(2.0)), device=device)  # 1e308 * 2.9 -> inf
t = torch.empty_like(z)
tanh_kernel[(triton.cdiv(z.numel(), 4096),)](z, t, z.numel(), *TANH_PADE, BLOCK=4096)
t = t.cpu().numpy()
want = torch.tanh(torch.tensor(u)).numpy()
finite = ~np.isnan(u)
out = {
    "vs_torch": float(np.abs(t - want)[finite].max()),
    "nan": bool(np.isnan(t[~finite]).all()),
    "same_sign": bool((np.signbit(t) == np.signbit(u))[finite].all()),
    "special": t[-11:].tolist(),
}
if np.finfo(np.longdouble).eps < 1e-18:  # x87 extended precision: the error of _tanh_fast
    ld = z.cpu().numpy().astype(np.longdouble)
    exact = np.tanh(ld * (np.log(np.longdouble(2.0)) / 2))
    out["vs_extended"] = float(np.abs(t.astype(np.longdouble) - exact)[finite].max())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fast_tanh(tmp_path_factory):
    pytest.importorskip("triton")
    cuda = torch.cuda.is_available()  # compiled for real, or in the interpreter
    return run_script(tmp_path_factory, TANH_SCRIPT, "cuda" if cuda else "cpu", interpret=not cuda)


def test_fast_tanh_accuracy(fast_tanh):
    if not torch.cuda.is_available():
        # the interpreter evaluates tl.fma unfused: the Newton step's q2 = den w + 2
        # cancels, leaving ~4e-10; compiled (CUDA) is the tanh whose accuracy counts
        assert fast_tanh["vs_torch"] < 1e-9 and fast_tanh["nan"] and fast_tanh["same_sign"]
        return
    # torch.tanh itself is off by up to ~1e-16 and u * 2 log2(e) rounds: 2.5e-16 in all
    assert fast_tanh["vs_torch"] < 2.5e-16
    if "vs_extended" in fast_tanh:  # 1.87e-16 here, 1.97e-16 on a 10x denser grid
        assert fast_tanh["vs_extended"] < 2.0e-16
    assert fast_tanh["nan"] and fast_tanh["same_sign"]
    # 0, -0, +-5e-324, 1e-310 stay ~0; +-1e300, 1e308 (inf after scaling), +-inf saturate
    assert all(abs(v) <= 1e-310 for v in fast_tanh["special"][:5])
    assert fast_tanh["special"][5:10] == [1.0, -1.0, 1.0, 1.0, -1.0]


def test_tanh_pade_coefficients():
    # TANH_PADE is the [6/6] Pade approximant of 2^x, rounded to float64
    mp = pytest.importorskip("mpmath")
    from fractal.common import TANH_PADE

    mp.mp.dps = 40
    f = mp.factorial
    c = [f(12 - k) * f(6) / (f(12) * f(k) * f(6 - k)) * mp.log(2) ** k for k in range(7)]
    assert c[0] == 1
    assert TANH_PADE == tuple(float(c[k]) for k in (6, 4, 2, 5, 3, 1))


def test_triton_config_tanh_option(monkeypatch):
    pytest.importorskip("triton")
    from fractal import triton_engine as te

    monkeypatch.setenv("FRACTAL_TRITON_CONFIG", "block_p=2,bn=16,num_warps=2,tanh=fast,maxnreg=96")
    assert te.config_from_env() == te.Config(2, 16, 2, tanh="fast", maxnreg=96)
    with pytest.raises(ValueError):
        te.Config(tanh="tanh_exp")
    monkeypatch.setenv("FRACTAL_TRITON_CONFIG", "block_p=2,num_warps=2,kernel=gluon")
    assert te.config_from_env() == te.Config(2, 16, 2, kernel="gluon")
    with pytest.raises(ValueError, match="one pixel per warp"):
        te.Config(block_p=2, num_warps=1, kernel="gluon")
    with pytest.raises(ValueError, match="bn == 16"):
        te.Config(block_p=1, bn=32, num_warps=1, kernel="gluon")


def test_gluon_operand_renaming():
    # The Gluon kernel feeds accumulators to the next product as A operands by renaming
    # their columns (_as_a) and reads x in fragment order (b_fragments) with B's rows
    # renamed to match. The same tensor operations, in torch, must give the plain products.
    pytest.importorskip("triton")
    from fractal import triton_engine as te

    if te._gluon_kernel() is None:
        pytest.skip("this Triton has no Gluon")
    from fractal.gluon_kernel import B_ORDER, b_fragments

    def as_a(t):  # _as_a's reshape and permute
        m, k = t.shape
        return t.reshape(m, k // 8, 4, 2).permute(0, 1, 3, 2).reshape(m, k)

    def load_b(flat):  # _load_b's reshape and permute
        return flat.reshape([2] * 8).permute(*B_ORDER.value).reshape(16, 16)

    g = torch.Generator().manual_seed(0)
    X = torch.randn(32, 16, generator=g, dtype=torch.float64)
    w0t = torch.randn(16, 16, generator=g, dtype=torch.float64)
    dzt = torch.randn(16, 16, generator=g, dtype=torch.float64)
    XB = b_fragments(X)
    assert XB.shape == (2, 2, 256)
    for c in range(2):
        x = X[16 * c : 16 * (c + 1)]
        assert torch.allclose(as_a(w0t) @ load_b(XB[c, 0]), w0t @ x.T, rtol=0, atol=1e-13)
        assert torch.allclose(as_a(dzt) @ load_b(XB[c, 1]), dzt @ x, rtol=0, atol=1e-13)
