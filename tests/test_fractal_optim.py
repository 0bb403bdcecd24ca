"""The fractal engine's per-pixel optimizers against torch.optim and the project's Muon:
single pixels, step by step, in float64 on the CPU."""

import json
import math

import numpy as np
import pytest
import torch

from fractal import engine
from fractal.common import EXPERIMENTS, OPTIMIZERS
from fractal.engine import compute_image, pixel_losses
from gpt2.optimizers import Muon, zeropower_via_newtonschulz5
from tests.conftest import FRACTAL_BASE, fractal_cell, run_script

STEPS = 25


def reference_losses(name, optimizer, lr0, lr1, knobs, steps=STEPS):
    """One network as the notebook writes it (autograd), trained by torch.optim (foreach
    off: the plain per-tensor arithmetic) or the project's Muon, in float64."""
    kw = EXPERIMENTS[name]
    p = engine.make_problem(n_points=kw["n_points"], steps=steps, seed=0, batch=kw["batch"])
    X, Y = p["X"], p["Y"]
    W0 = p["W0"].clone().requires_grad_()
    W1 = p["W1"].clone()[:, None].requires_grad_()
    act = {"tanh": lambda z: torch.tanh(z * math.sqrt(2)), "relu": lambda z: torch.relu(z) * 2**0.5}
    act = act[kw["nonlinearity"]]
    k = dict(OPTIMIZERS[optimizer], **knobs)
    groups = [{"params": [W0], "lr": lr0}, {"params": [W1], "lr": lr1}]
    if optimizer in ("momentum", "nesterov"):
        opts = [torch.optim.SGD(groups, momentum=k["momentum"], nesterov=optimizer == "nesterov",
                                foreach=False)]  # fmt: skip
    elif optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
        opts = [cls(groups, betas=(k["beta1"], k["beta2"]), eps=k["eps"],
                    weight_decay=k["weight_decay"], foreach=False)]  # fmt: skip
    elif optimizer == "rmsprop":
        opts = [torch.optim.RMSprop(groups, alpha=k["alpha"], eps=k["eps"],
                                    weight_decay=k["weight_decay"], foreach=False)]  # fmt: skip
    else:  # muon: the input layer by the project's Muon, the output layer by Adam
        opts = [
            Muon([W0], lr=lr0, momentum=k["momentum"], nesterov=True),
            torch.optim.Adam([W1], lr=lr1, betas=(k["beta1"], k["beta2"]), eps=k["eps"],
                             foreach=False),
        ]  # fmt: skip
    losses = []
    for _ in range(steps):
        h = act(X @ W0 / 4.0)
        loss = torch.mean(((h @ W1)[:, 0] / 16.0 - Y) ** 2)
        losses.append(loss.item())
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
    losses = np.array(losses)
    return losses / losses[0]


# (optimizer, lr0, lr1, knobs): converging and oscillating pixels, default and changed knobs
CASES = [
    ("momentum", 0.3, 1.0, {}),
    ("momentum", 2.0, 10.0, {"momentum": 0.5}),
    ("nesterov", 0.3, 1.0, {}),
    ("nesterov", 1.0, 30.0, {"momentum": 0.7}),
    ("adam", 0.01, 0.03, {}),
    ("adam", 0.3, 1.0, {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3, "weight_decay": 0.1}),
    ("adamw", 0.01, 0.03, {}),
    ("adamw", 0.1, 0.5, {"weight_decay": 0.3, "beta1": 0.0}),
    ("rmsprop", 0.003, 0.01, {}),
    ("rmsprop", 0.05, 0.1, {"alpha": 0.9, "weight_decay": 0.05}),
]


@pytest.mark.parametrize("name", ["tanh", "relu"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_optimizer_matches_torch_optim(case, name):
    optimizer, lr0, lr1, knobs = case
    want = reference_losses(name, optimizer, lr0, lr1, knobs)
    kw = {k: v for k, v in EXPERIMENTS[name].items()}
    got = pixel_losses(**kw, x_value=lr0, y_value=lr1, steps=STEPS, seed=0,
                       optimizer=optimizer, optim=knobs)  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=0)


def test_newton_schulz_is_the_projects():
    # the same iteration as gpt2/optimizers.py's, batched over pixels; that one runs in
    # fp32 on the CPU, so the two agree to fp32 rounding
    G = torch.randn(5, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = engine.newton_schulz(G)
    theirs = zeropower_via_newtonschulz5(G).double()
    assert torch.allclose(ours, theirs, atol=2e-6)
    s = torch.linalg.svdvals(ours)  # singular values pushed to ~[0.7, 1.2]
    assert s.min() > 0.5 and s.max() < 1.3


@pytest.mark.parametrize("lrs", [(0.02, 0.01), (0.2, 0.1)])
def test_muon_matches_the_projects_muon(lrs):
    # the project's Muon orthogonalises in fp32, the engine in float64: equal to ~1e-6
    want = reference_losses("tanh", "muon", *lrs, {}, steps=12)
    kw = dict(EXPERIMENTS["tanh"])
    got = pixel_losses(**kw, x_value=lrs[0], y_value=lrs[1], steps=12, seed=0, optimizer="muon")
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[-1] < got[0]


def test_gd_unchanged_by_the_optimizer_option():
    # the default is plain gradient descent through the original arithmetic, bitwise
    kw = dict(EXPERIMENTS["tanh"], window=(-1, 3, -1, 3), resolution=(3, 2), steps=15)
    a, b = compute_image(**kw), compute_image(**kw, optimizer="gd", optim={})
    assert np.array_equal(a["values"], b["values"]) and "optimizer" not in a


def test_knob_axis_is_per_pixel():
    # axes "beta1_vs_lr": x is 1 - beta1, y the lr of both layers; each pixel equals the
    # single pixel trained with that beta1 as a plain knob
    kw = dict(EXPERIMENTS["tanh"], axes="beta1_vs_lr", steps=15, optimizer="adam")
    img = compute_image(**kw, window=(-2, 0, -2, 0), resolution=(2, 2))
    assert img["optim"]["beta1"] == "axis"
    for iy, y in enumerate([0.01, 1.0]):
        for ix, x in enumerate([0.01, 1.0]):
            one = compute_image(**dict(kw, axes="lr_vs_lr"), optim={"beta1": 1 - x},
                                grid=([math.log10(y)], [math.log10(y)]))  # fmt: skip
            np.testing.assert_allclose(img["values"][iy, ix], one["values"][0, 0], rtol=1e-12)


def test_bad_optimizer_settings_are_named():
    kw = dict(EXPERIMENTS["tanh"], window=(-1, 0, -1, 0), resolution=2, steps=5)
    with pytest.raises(ValueError, match="optimizer='lion'"):
        compute_image(**kw, optimizer="lion")
    with pytest.raises(ValueError, match="has no knob 'beta3'"):
        compute_image(**kw, optimizer="adam", optim={"beta3": 0.5})
    with pytest.raises(ValueError, match="beta1=1.0 is outside"):
        compute_image(**kw, optimizer="adam", optim={"beta1": 1.0})
    with pytest.raises(ValueError, match="momentum_vs_lr"):
        compute_image(**dict(kw, axes="beta1_vs_lr"), optimizer="momentum")
    with pytest.raises(ValueError, match="x maximum <= 0"):
        compute_image(**dict(kw, axes="beta1_vs_lr", window=(-1, 1, -1, 0)), optimizer="adam")
    with pytest.raises(ValueError, match="no muon"):
        engine.pick_backend("triton", "cpu", "muon")
    assert engine.pick_backend("auto", "cpu", "muon") == "torch"


@pytest.mark.parametrize("optimizer", ["momentum", "adamw"])
def test_early_exit_is_exact_for_optimizers(optimizer):
    # momentum and AdamW's decay (W *= 1 - lr wd, |1 - lr wd| >> 1 at large lr) overflow
    # the weights; once an output weight is non-finite it stays so under every update, so
    # the exit leaves the values unchanged, also when stopped pixels leave the products
    kw = dict(EXPERIMENTS["tanh"], window=(1, 9, 1, 9), resolution=(3, 3), steps=30,
              optimizer=optimizer)  # fmt: skip
    full = compute_image(**kw, early_exit="none")
    fast = compute_image(**kw, early_exit="nonfinite")
    assert (fast["steps_run"] < 30).sum() >= 3
    np.testing.assert_allclose(fast["values"], full["values"], rtol=1e-12)
    assert np.array_equal(full["converged"], fast["converged"])
    one = dict(kw, chunk_pixels=1)
    a, b = compute_image(**one, early_exit="none"), compute_image(**one, early_exit="nonfinite")
    assert np.array_equal(a["values"], b["values"])


def test_adam_at_huge_lrs_stays_finite_and_settles():
    # Adam's step is bounded by ~lr per weight: at lr 1e3 on both layers the weights stay
    # finite (no early exit) while the loss first rises by orders of magnitude, so after 60
    # steps the convergence measure labels the pixels diverged; by 500 steps the shrinking
    # adaptive steps have let the output layer settle just below the first loss (the
    # hidden layer saturated), and the same measure labels it converged
    kw = dict(EXPERIMENTS["tanh"], steps=60, optimizer="adam")
    img = compute_image(**kw, window=(3, 4, 3, 4), resolution=2)
    assert (img["steps_run"] == 60).all() and not img["converged"].any()
    losses = pixel_losses(**EXPERIMENTS["tanh"], x_value=1e3, y_value=1e3, steps=500, seed=0,
                          optimizer="adam")  # fmt: skip
    assert np.isfinite(losses).all() and losses.max() > 1e3
    assert losses[-20:].mean() < 1 and losses[-20:].mean() > 0.5


# ------------------------------------------------------------------------------ triton

KERNEL_OPTIMIZERS = ["momentum", "nesterov", "adam", "adamw", "rmsprop"]
# relu and identity: the kernel's arithmetic is the torch engine's to rounding; tanh at
# small lrs, since an adaptive step divides by the gradient's own size, so the last-bit
# differences of the fast tanh grow fastest where the dynamics are chaotic (large lrs)
KERNEL_WINDOWS = {"relu": (-1, 2.5, -1, 2.5), "identity": (-1, 2.5, -1, 2.5),
                  "tanh": (-3, -1, -3, -1)}  # fmt: skip


def kernel_checks(device):
    """Per "optimizer/experiment": the tl kernel against the torch backend (max relative
    difference, same labels, kernel); "exit/<optimizer>": its exact early exit (bitwise
    equal to no exit, pixels stopped); "axis": a knob on the x axis."""
    from fractal import triton_engine as te

    cfg = te.OPT_CONFIG if device == "cuda" else te.Config(2, 64, 1, tanh="fast")
    tri = dict(backend="triton", device=device, triton_config=cfg)
    out = {}

    def compare(key, kw):
        a = compute_image(**kw, backend="torch", device=device)
        b = compute_image(**kw, **tri)
        rel = np.abs(b["values"] - a["values"]) / np.abs(a["values"])
        out[key] = [float(rel.max()), bool((a["converged"] == b["converged"]).all()),
                    b["triton_config"]["kernel"]]  # fmt: skip

    for opt in KERNEL_OPTIMIZERS:
        for name, window in KERNEL_WINDOWS.items():
            kw = dict(EXPERIMENTS[name], window=window, resolution=(3, 2), steps=12)
            compare(f"{opt}/{name}", dict(kw, optimizer=opt))
    kw = dict(EXPERIMENTS["relu"], axes="beta1_vs_lr", window=(-2, 0, -1, 1), resolution=(3, 2))
    compare("axis", dict(kw, steps=12, optimizer="adam", optim={"weight_decay": 0.01}))
    for opt in ["momentum", "nesterov", "adamw"]:
        kw = dict(EXPERIMENTS["tanh"], window=(1, 9, 1, 9), resolution=(4, 3), steps=40,
                  optimizer=opt)  # fmt: skip
        full = compute_image(**kw, **tri, early_exit="none")
        fast = compute_image(**kw, **tri, early_exit="nonfinite")
        out[f"exit/{opt}"] = [
            bool(np.array_equal(full["values"], fast["values"])),
            int((fast["steps_run"] < 40).sum()),
        ]
    return out


KERNEL_SCRIPT = """
import json
from tests.test_fractal_optim import kernel_checks
print(json.dumps(kernel_checks("cpu")))
"""


@pytest.fixture(scope="module")
def kernel_vs_torch(tmp_path_factory):
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        return kernel_checks("cuda")
    return run_script(tmp_path_factory, KERNEL_SCRIPT)


@pytest.mark.parametrize("name", list(KERNEL_WINDOWS))
@pytest.mark.parametrize("optimizer", KERNEL_OPTIMIZERS)
def test_kernel_matches_torch(kernel_vs_torch, optimizer, name):
    max_rel, same, kernel = kernel_vs_torch[f"{optimizer}/{name}"]
    assert same and kernel == "tl"
    assert max_rel < (1e-8 if name == "tanh" else 1e-11)


def test_kernel_knob_axis(kernel_vs_torch):
    max_rel, same, _ = kernel_vs_torch["axis"]
    assert same and max_rel < 1e-11


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov", "adamw"])
def test_kernel_early_exit_is_exact(kernel_vs_torch, optimizer):
    bitwise, stopped = kernel_vs_torch[f"exit/{optimizer}"]
    assert bitwise and stopped >= 3


# ------------------------------------------------------------------------------ config


def test_kconfig_defaults_are_the_engines():
    # every optimizer of the engine is a FRACTAL_OPTIMIZER member whose knobs default to
    # common.OPTIMIZERS, and the cells carry them (nothing extra for gradient descent)
    from fractal import paper
    from kmatrix import config, kconfig
    from kmatrix.config import Config

    kconf = kconfig.load_kconfig()
    kconf.syms["WORKLOAD_FRACTAL"].set_value("y")
    for name, defaults in OPTIMIZERS.items():
        kconf.syms[f"FRACTAL_OPTIMIZER_{name.upper()}"].set_value("y")
        values = config.typed_values(kconf)
        assert values["fractal_optimizer"] == name
        params = paper.optimizer_params(Config(values))
        if name == "gd":
            assert params == {}
        else:
            assert params == {"optimizer": name, "optim": defaults}


def test_plan_validates_the_knob_axis():
    from fractal import paper
    from kmatrix.config import Config
    from kmatrix.errors import ConfigError

    base = dict(FRACTAL_BASE, fractal_experiments=["tanh"], fractal_optimizer="adam",
                fractal_beta1=0.5, fractal_beta2=0.99, fractal_eps=1e-8,
                fractal_weight_decay=0.0)  # fmt: skip
    cfg = Config(dict(base, fractal_knob_axis="beta1", fractal_x_max=0.0))
    paper.validate(cfg)
    p = paper.cell_params(cfg, {"experiment": "tanh"})
    assert p["axes"] == "beta1_vs_lr" and p["optimizer"] == "adam" and p["optim"]["beta2"] == 0.99
    for change, symbol in [
        (dict(fractal_knob_axis="beta1"), "FRACTAL_X_MAX"),  # x = 1 - beta1 up to 1e6
        (dict(fractal_knob_axis="alpha", fractal_x_max=0.0), "FRACTAL_KNOB_AXIS"),
        (dict(fractal_knob_axis="eps", fractal_experiments=["paraminit"]), "FRACTAL_KNOB_AXIS"),
        (dict(fractal_optimizer="muon", fractal_backend="triton"), "FRACTAL_BACKEND_TRITON"),
    ]:
        with pytest.raises(ConfigError, match=symbol):
            paper.validate(Config(dict(base, **change)))


def test_image_cell_trains_with_the_optimizer(tmp_path):
    # an image cell with Adam: its values are compute_image's with Adam, and meta.json says so
    import json

    from fractal import workload
    from kmatrix.cell import RunContext
    from kmatrix.config import Config

    cfg = Config(dict(FRACTAL_BASE, fractal_experiments=["tanh"], fractal_optimizer="adam",
                      fractal_beta1=0.8, fractal_beta2=0.999, fractal_eps=1e-8,
                      fractal_weight_decay=0.0, fractal_steps=30))  # fmt: skip
    cell = fractal_cell(cfg, {"experiment": "tanh"})
    out = tmp_path / "cell"
    assert workload.run(cell, RunContext("cpu", out, profile="paper_repro"))["status"] == "ok"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["optimizer"] == "adam" and meta["optim"]["beta1"] == 0.8
    want = compute_image(**EXPERIMENTS["tanh"], window=(-3, 6, -3, 6), resolution=8, steps=30,
                         optimizer="adam", optim={"beta1": 0.8})  # fmt: skip
    assert np.array_equal(np.load(out / "frame_00.npy"), want["values"])


def test_the_optimizer_figure_takes_zooms_with_and_without_their_config(tmp_path):
    """bench/fractal_optim_maps.py figure: a zoom run named OPTIMIZER=DIR (its summary
    alone, as the GPU calls bring back) and one whose config names the optimizer; the
    figure's JSON keeps both, with the dimension over the frames not called arithmetic."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    n = 17
    maps = {o: np.linspace(-1.0, 1.0, n * n).reshape(n, n) for o in ("gd", "adam")}
    np.savez(tmp_path / "maps.npz", **maps)
    meta = {"window": [-1.0, 1.0, -1.0, 1.0], "resolution": n, "steps": 5, "device": "cpu",
            "maps": {o: {"dimension_opening": 1.0} for o in maps}}  # fmt: skip
    (tmp_path / "maps.json").write_text(json.dumps(meta))

    def zoom(name, resolved, config=None):
        d = tmp_path / name
        (d / "summary").mkdir(parents=True)
        s = {"dimension": 1.9, "spread_16_84": [1.8, 1.95], "frames_done": 44,
             "deepest_width": 1e-12, "dimension_resolved": resolved,
             "spread_resolved_16_84": [1.6, 1.75] if resolved else None,
             "frames_resolved": 17 if resolved else None}  # fmt: skip
        (d / "summary" / "summary.json").write_text(
            json.dumps({"workload_summary": {"tanh/auto": s}})
        )
        if config:
            (d / "config").mkdir()
            (d / "config" / "config.json").write_text(json.dumps(config))
        return d

    bare = zoom("optim-gd", 1.72)
    with_config = zoom("adam-run", None, {"fractal_optimizer": "adam"})
    png = tmp_path / "fig.png"
    subprocess.run(
        [sys.executable, str(root / "bench" / "fractal_optim_maps.py"), "figure",
         "--maps", str(tmp_path / "maps.npz"), "--zoom", f"gd={bare}", str(with_config),
         "--png", str(png)],
        check=True, cwd=root, capture_output=True,
    )  # fmt: skip
    assert png.stat().st_size > 0
    zooms = json.loads(png.with_suffix(".json").read_text())["zoom"]
    assert zooms["gd"]["dimension_resolved"] == 1.72 and zooms["gd"]["frames_resolved"] == 17
    assert zooms["adam"]["dimension_resolved"] is None and zooms["adam"]["dimension"] == 1.9
