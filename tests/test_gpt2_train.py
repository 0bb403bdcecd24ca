"""GPT-2 training loop and workload: precision paths, resume, divergence, safety, dry runs."""

import math
import os
import pickle

import kconfiglib
import pytest
import torch

from gpt2 import runner, workload
from gpt2.model import GPT
from gpt2.presets import config_from_preset
from gpt2.optim import build_optimizers
from gpt2.checkpoint import load_checkpoint
from gpt2.train import TrainSettings, configure_runtime, lr_multiplier, train
from kmatrix.cell import Cell, RunContext

from kmatrix.errors import ConfigError, Diverged
from tests.conftest import TINY_RUN, FakeTokens, gpt2_cfg

V = 256
HP = dict(adamw_beta1=0.9, adamw_beta2=0.95, adamw_eps=1e-8, adamw_weight_decay=0.1)
LRS = dict(matrix=3e-3, embedding=3e-3, unembedding=3e-3, vector=3e-3)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup(arch="gpt2", seed=0):
    torch.manual_seed(seed)
    model = GPT(
        config_from_preset("tiny", arch=arch, n_layer=2, n_embd=64, block_size=32, vocab_size=V)
    )
    return model, build_optimizers("adamw", model.param_groups(), LRS, HP)


def batches(seed=0):
    gen = torch.Generator().manual_seed(seed)

    def get():
        x = torch.randint(0, V, (4, 33), generator=gen)
        return x[:, :-1], x[:, 1:]

    return get, gen


def settings(**kw):
    base = dict(batch_size=4, seq_len=32, max_steps=4, warmup_steps=1, log_interval=100)
    return TrainSettings(**{**base, **kw})


def quiet(*args):
    pass


def test_schedule_warmup_and_cosine():
    s = settings(warmup_steps=10, min_lr_frac=0.1)
    assert lr_multiplier(0, s, 0.0) == pytest.approx(0.1)
    assert lr_multiplier(9, s, 0.0) == pytest.approx(1.0)
    assert lr_multiplier(10, s, 0.0) == pytest.approx(1.0)
    assert lr_multiplier(50, s, 0.5) == pytest.approx(0.55)
    assert lr_multiplier(99, s, 1.0) == pytest.approx(0.1)
    assert lr_multiplier(99, settings(warmup_steps=10, schedule="constant"), 1.0) == 1.0


def test_train_records_every_loss_and_falls():
    model, opts = setup()
    get, _ = batches()
    x, y = get()
    fixed = lambda: (x, y)  # noqa: E731  one batch, so the loss must fall
    out = train(
        model, opts, fixed, settings(max_steps=8, eval_interval=4), val_batches=[(x, y)], log=quiet
    )
    assert out["status"] == "ok" and len(out["losses"]) == 8
    assert out["losses"][-1] < out["losses"][0] - 0.5
    assert [v[0] for v in out["val_losses"]] == [4, 8]
    m = out["metrics"]
    assert m["steps"] == 8 and m["tokens"] == 8 * 4 * 32 and m["tokens_per_s"] > 0
    assert set(out["lrs"]) == {"matrix", "embedding", "vector"}


def test_token_budget_and_grad_accum():
    model, opts = setup()
    get, _ = batches()
    calls = []

    def counting():
        calls.append(1)
        return get()

    out = train(
        model,
        opts,
        counting,
        settings(max_steps=0, max_tokens=3 * 2 * 4 * 32, grad_accum=2),
        log=quiet,
    )
    assert out["metrics"]["steps"] == 3 and len(calls) == 6


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_precisions_train(precision):
    model, opts = setup("nanochat")
    get, _ = batches()
    out = train(model, opts, get, settings(precision=precision, max_steps=3), log=quiet)
    assert all(math.isfinite(v) for v in out["losses"])
    if precision == "fp16":
        assert out["metrics"]["grad_scale"] > 0


def test_fp16_scaler_skips_overflowing_step():
    """A loss scale so large that the fp16 gradients overflow: the scaler must skip the
    optimizer step (weights unchanged) and lower the scale, not apply inf updates."""
    model, opts = setup()
    before = [p.detach().clone() for p in model.parameters()]
    get, _ = batches()
    out = train(
        model,
        opts,
        get,
        settings(precision="fp16", max_steps=1, grad_scale_init=2.0**100),
        log=quiet,
    )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert out["metrics"]["grad_scale"] < 2.0**100
    assert math.isfinite(out["losses"][0])


def test_resume_reproduces_next_steps_exactly(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    s = settings(max_steps=5, checkpoint_interval=3, warmup_steps=2)
    model, opts = setup()
    get, gen = batches()
    full = train(model, opts, get, s, ckpt_path=ckpt, data_generator=gen, log=quiet)
    assert load_checkpoint(ckpt)["step"] == 3

    # a fresh process: different init and data position, all restored from the checkpoint
    model2, opts2 = setup(seed=123)
    get2, gen2 = batches(seed=99)
    resumed = train(model2, opts2, get2, s, ckpt_path=ckpt, data_generator=gen2, log=quiet)
    assert resumed["losses"] == full["losses"]  # bitwise, steps 4 and 5 included
    assert resumed["metrics"]["steps"] == 5


def test_checkpoint_with_other_settings_is_ignored(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    model, opts = setup()
    get, gen = batches()
    train(model, opts, get, settings(max_steps=2, checkpoint_interval=2), ckpt_path=ckpt, log=quiet)
    model, opts = setup()
    logs = []
    out = train(
        model,
        opts,
        get,
        settings(max_steps=3, checkpoint_interval=2),
        ckpt_path=ckpt,
        log=logs.append,
    )
    assert any("ignoring checkpoint" in line for line in logs) and len(out["losses"]) == 3


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": evil}, f, protocol=2)
    with pytest.raises(RuntimeError, match="refusing to load checkpoint"):
        load_checkpoint(path)
    torch.save({"model": evil}, tmp_path / "evil2.pt")
    with pytest.raises(RuntimeError, match="refusing to load checkpoint"):
        load_checkpoint(tmp_path / "evil2.pt")
    assert not marker.exists()


def test_nonfinite_loss_raises_diverged():
    model, opts = setup()
    get, _ = batches()
    with torch.no_grad():
        model.transformer.wte.weight[:] = float("nan")
    with pytest.raises(Diverged) as info:
        train(model, opts, get, settings(max_steps=5), log=quiet)
    assert len(info.value.losses) == 1 and math.isnan(info.value.losses[0])
    assert info.value.metrics["steps"] == 1


def _poison_grad(model, value=float("nan"), elements=3):
    """A hook that puts `value` into a few gradient elements of one weight: the loss stays
    finite, only that gradient is not."""
    w = model.transformer.h[0].mlp.c_fc.weight

    def hook(g):
        g = g.clone()
        g.view(-1)[:elements] = value
        return g

    w.register_hook(hook)
    return w


def test_check_numerics_tables_a_nonfinite_gradient():
    model, opts = setup()
    w = _poison_grad(model)
    before = w.detach().clone()
    get, _ = batches()
    logs = []
    with pytest.raises(Diverged) as info:
        train(model, opts, get, settings(check_numerics=True), log=logs.append)
    err = info.value
    assert "check numerics: non-finite gradients at step 0" in str(err)
    assert torch.equal(w, before)  # caught before the optimizer step
    assert err.metrics["steps"] == 1 and len(err.losses) == 1 and math.isfinite(err.losses[0])
    table = next(line for line in logs if "check numerics" in line)
    assert "parameter" in table and "non-finite" in table
    row = next(r for r in table.splitlines() if r.startswith("transformer.h.0.mlp.c_fc.weight"))
    assert row.split()[1:] == ["256x64", "float32", "cpu", "grad", "3", "3", "0"]
    # off (the default): nothing checks, the NaN update is applied and the loss diverges later
    model, opts = setup()
    _poison_grad(model)
    with pytest.raises(Diverged) as info:
        train(model, opts, get, settings(), log=quiet)
    assert len(info.value.losses) == 2 and math.isnan(info.value.losses[-1])


def test_check_numerics_lists_nonfinite_parameters_and_loss():
    model, opts = setup()
    with torch.no_grad():
        model.transformer.wpe.weight[0, :2] = float("inf")
    get, _ = batches()
    logs = []
    with pytest.raises(Diverged, match="non-finite loss nan at step 0") as info:
        train(model, opts, get, settings(check_numerics=True), log=logs.append)
    rows = [r.split() for r in str(info.value).splitlines()]
    assert ["transformer.wpe.weight", "32x64", "float32", "cpu", "param", "2", "0", "2"] in rows
    assert math.isnan(info.value.losses[0])


def test_check_numerics_leaves_fp16_overflow_to_the_scaler():
    """fp16: an inf gradient at loss scale >= 1 is the GradScaler's (it skips the step);
    below 1 it overflows even unscaled, and check numerics stops the cell."""
    model, opts = setup()
    _poison_grad(model, float("inf"))
    get, _ = batches()
    logs = []
    s = settings(precision="fp16", max_steps=2, check_numerics=True)
    out = train(model, opts, get, s, log=logs.append)
    assert out["metrics"]["grad_scale"] == 2.0**14  # halved twice: both steps skipped
    assert sum("GradScaler skips this step" in line for line in logs) == 2
    model, opts = setup()
    _poison_grad(model, float("inf"))
    s = settings(precision="fp16", max_steps=2, check_numerics=True, grad_scale_init=0.5)
    with pytest.raises(Diverged, match=r"non-finite gradients \(fp16 loss scale 0.5\) at step 0"):
        train(model, opts, get, s, log=quiet)


@pytest.mark.filterwarnings("ignore:Error detected in")
def test_detect_anomaly_names_the_backward_op_that_made_a_nan():
    model, opts = setup()
    seen = []

    def nan_in_backward(module, args, out):  # forward unchanged; sqrt'(0) * 0 = NaN backward
        seen.append(torch.is_anomaly_enabled())
        return out + 0 * torch.sqrt(out - out.detach())

    model.transformer.h[0].mlp.register_forward_hook(nan_in_backward)
    get, _ = batches()
    with pytest.raises(RuntimeError, match="SqrtBackward0.* returned nan"):
        train(model, opts, get, settings(max_steps=2, detect_anomaly=True), log=quiet)
    assert seen == [True] and not torch.is_anomaly_enabled()  # restored afterwards
    train(model, opts, get, settings(max_steps=1, grad_clip=0), log=quiet)  # off: no error
    assert seen == [True, False]


def test_configure_runtime_applies_the_profile_and_gpt2_knobs():
    try:
        knobs = configure_runtime("paper_repro", "cpu")
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark
        assert torch.get_float32_matmul_precision() == "highest"
        assert knobs["profile"] == "paper_repro" and knobs["deterministic_algorithms"]
        assert not knobs["tf32"] and knobs["flush_denormal"] in (True, False)
        assert knobs["attention_backends"] == ["cpu"] and knobs["device"] == "cpu"
        knobs = configure_runtime("maxout_speed", "cpu")
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cuda.matmul.allow_tf32 and knobs["tf32"]
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        configure_runtime("maxout_speed", "cpu")
        torch.backends.cuda.matmul.allow_tf32 = False  # torch's defaults for later tests
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")
        torch.set_flush_denormal(False)


# ---------------------------------------------------------------------------- workload


def test_every_gpt2_symbol_has_help():
    kconf = kconfiglib.Kconfig(os.path.join(ROOT, "Kconfig"), warn_to_stderr=False)
    syms = [s for s in kconf.unique_defined_syms if s.name.startswith("GPT2_")]
    choices = [c for c in kconf.unique_choices if (c.name or "").startswith("GPT2_")]
    assert len(syms) > 30
    for item in syms + choices:
        assert all(node.help for node in item.nodes), item.name


def test_cell_params_resolve_group_lrs():
    cfg = gpt2_cfg("OPTIMIZER_MUON", ADAMW_LR="1e-3", GPT2_UNEMBEDDING_LR_SCALE="4")
    workload.validate(cfg)
    assert workload.axes(cfg) == [
        ("optimizer", ["adamw", "muon"], "OPTIMIZER_*"),
        ("precision", ["fp32"], "PRECISION_*"),
        ("seed", [0], "SEEDS"),
    ]
    p = workload.cell_params(cfg, {"optimizer": "muon", "precision": "fp32", "seed": 0})
    assert p["matrix_lr"] == 0.02 and p["embedding_lr"] == 1e-3 and p["unembedding_lr"] == 4e-3
    assert p["muon_ns_steps"] == 5 and p["adamw_beta2"] == 0.95 and "sgd_momentum" not in p
    assert p["vocab_size"] == 50304 and p["model"] == "tiny"
    assert p["check_numerics"] is False and p["detect_anomaly"] is False  # off by default
    on = gpt2_cfg("GPT2_CHECK_NUMERICS", "GPT2_DETECT_ANOMALY")
    s = runner._settings(workload.cell_params(on, {**p, "optimizer": "adamw"}))
    assert s.check_numerics and s.detect_anomaly
    import json

    json.dumps(p)  # the driver stores params in plan and result files


@pytest.mark.parametrize(
    "values, symbol",
    [
        (dict(GPT2_N_HEAD="3"), "GPT2_N_HEAD"),
        (dict(GPT2_TOTAL_BATCH_TOKENS="1000"), "GPT2_TOTAL_BATCH_TOKENS"),
        (dict(GPT2_MAX_STEPS="10", GPT2_WARMUP_STEPS="10"), "GPT2_WARMUP_STEPS"),
        (dict(GPT2_TRAIN_GROUPS="matrix heads"), "GPT2_TRAIN_GROUPS"),
        (dict(OPTIMIZER_ADAMW="n"), "OPTIMIZER_ADAMW"),
    ],
)
def test_validate_names_the_symbol(values, symbol):
    cfg = gpt2_cfg(**values)
    with pytest.raises(ConfigError) as info:
        workload.validate(cfg)
    assert info.value.symbol == symbol


def test_dry_run_every_optimizer_and_precision():
    cfg = gpt2_cfg(
        "OPTIMIZER_MUON",
        "OPTIMIZER_SGD",
        "OPTIMIZER_LION",
        "PRECISION_BF16",
        "PRECISION_FP16",
        "GPT2_ARCH_NANOCHAT",
    )
    workload.validate(cfg)
    ctx = RunContext(device="cpu", out_dir=".", dry_run=True)
    for opt in cfg.optimizers:
        for prec in cfg.precisions:
            point = {"optimizer": opt, "precision": prec, "seed": 0}
            cell = Cell(
                f"{opt}-{prec}-s0", 0, "gpt2.workload", point, 0, workload.cell_params(cfg, point)
            )
            loss = workload.dry_run(cell, ctx)
            assert abs(loss - math.log(128)) < 0.5, (opt, prec, loss)  # an untrained model


def test_run_and_summarize(tmp_path):
    cfg = gpt2_cfg(
        "OPTIMIZER_MUON",
        "GPT2_CHECK_NUMERICS",
        **TINY_RUN,
        GPT2_WARMUP_STEPS=1,
        GPT2_CHECKPOINT_INTERVAL=2,
    )
    workload.validate(cfg)
    cells, results = [], {}
    for opt in cfg.optimizers:
        point = {"optimizer": opt, "precision": "fp32", "seed": 0}
        cell = Cell(
            f"{opt}-fp32-s0", 0, "gpt2.workload", point, 0, workload.cell_params(cfg, point)
        )
        ctx = RunContext(device="cpu", out_dir=tmp_path / cell.id)
        ctx.out_dir.mkdir()
        key = ("gpt2.data", __import__("json").dumps(cell.params["data"], sort_keys=True), "data")
        ctx.cache[key] = FakeTokens()
        r = workload.run(cell, ctx)
        assert r["status"] == "ok" and len(r["losses"]) == 3 and r["val_losses"][-1][0] == 3
        assert r["knobs"]["attention_backends"] == ["cpu"] and r["knobs"]["precision"] == "fp32"
        assert r["knobs"]["check_numerics"] is True and r["knobs"]["detect_anomaly"] is False
        assert set(r["metrics"]) >= {
            "final_train_loss",
            "final_val_loss",
            "tokens_per_s",
            "mfu",
            "peak_mem_mb",
        }
        cells.append(cell)
        results[cell.id] = r
    torch.use_deterministic_algorithms(False)
    assert (tmp_path / "adamw-fp32-s0" / "checkpoint.pt").exists()
    cells.append(
        Cell(
            "sgd-fp32-s0",
            2,
            "gpt2.workload",
            {"optimizer": "sgd", "precision": "fp32", "seed": 0},
            0,
        )
    )
    out = workload.summarize(tmp_path / "summary", cells, {**results, "sgd-fp32-s0": None}, cfg)
    for name in ("loss_curves.png", "final_val_loss.png", "throughput.md"):
        assert (tmp_path / "summary" / name).stat().st_size > 0
    assert out["cells_done"] == 2 and out["cells_total"] == 3


def test_worker_reuses_the_model_with_the_same_result(tmp_path):
    """A worker keeps one model across cells and re-initialises it: the second cell's
    losses equal a fresh build's, also after a cell that diverged mid-step."""
    cfg = gpt2_cfg("OPTIMIZER_MUON", **TINY_RUN)
    data_key = None

    def run(opt, seed, ctx, **params):
        nonlocal data_key
        point = {"optimizer": opt, "precision": "fp32", "seed": seed}
        p = {**workload.cell_params(cfg, point), **params}
        cell = Cell(f"{opt}-s{seed}", 0, "gpt2.workload", point, seed, p)
        ctx.out_dir = tmp_path / f"{cell.id}-{len(list(tmp_path.iterdir()))}"
        ctx.out_dir.mkdir()
        data_key = ("gpt2.data", __import__("json").dumps(p["data"], sort_keys=True), "data")
        ctx.cache[data_key] = FakeTokens()
        return workload.run(cell, ctx)

    shared = RunContext(device="cpu", out_dir=tmp_path)
    first = run("adamw", 1, shared)
    model = shared.cache["gpt2.model"][1]
    with pytest.raises(Diverged):
        run("adamw", 2, shared, matrix_lr=1e30, embedding_lr=1e30, vector_lr=1e30)
    again = run("muon", 3, shared)
    assert shared.cache["gpt2.model"][1] is model  # the same object, not a rebuild
    fresh = run("muon", 3, RunContext(device="cpu", out_dir=tmp_path))
    assert again["losses"] == fresh["losses"]
    assert run("adamw", 1, RunContext(device="cpu", out_dir=tmp_path))["losses"] == first["losses"]
    torch.use_deterministic_algorithms(False)
