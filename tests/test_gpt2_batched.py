"""K models trained together (gpt2/batched.py): each follows the one-model path, a diverged
model leaves the batch without touching the others, and a grid gets the same labels.

The tolerance: in fp32 with the deterministic profile the batched and the one-model paths
run the same operations in the same order except inside the kernels: a batched matmul
and the per-model sum of the cross-entropy may add in another order, which changes a
loss by a few units of fp32 rounding (6e-8 relative) per step. Over the first 6 steps at
trainable learning rates that stays below 1e-5 relative (measured: at most 2e-7); a
learning rate far past the edge amplifies any rounding difference exponentially, so
there only the first step's loss (before any update) is held to the bound.

Run on a GPU by bench/llm_batched.py --tests (the log is in bench/results/).
"""

import json
import math
import os

import pytest
import torch

from gpt2 import params as gpt2_params
from gpt2 import runner, workload
from gpt2.batched import STEPS
from gpt2.optim import OPTIMIZERS
from gpt2.params import BATCHABLE, BATCHED_OPTIMIZERS, batch_key, unbatchable
from kmatrix.cell import Cell, RunContext
from kmatrix.errors import Diverged
from kmatrix.seeding import apply_profile, seed_everything
from tests.conftest import TEXT, TINY_RUN, FakeTokens
from tests.conftest import gpt2_cfg as make_cfg

DEVICE = os.environ.get("KMATRIX_TEST_DEVICE", "cpu")  # the GPU run sets "cuda"
RTOL = 1e-5
STEPS_RUN = 6


@pytest.fixture(autouse=True)
def deterministic():
    apply_profile("paper_repro")
    yield
    torch.use_deterministic_algorithms(False)


def _cells(opt, scales, precision="fp32", **extra):
    cfg = make_cfg(f"OPTIMIZER_{opt.upper()}", **{**TINY_RUN, "GPT2_MAX_STEPS": STEPS_RUN})
    point = {"optimizer": opt, "precision": precision, "seed": 0}
    # K = all of them: on the CPU batch_models() trains a model this large alone
    base = {**workload.cell_params(cfg, point), "precision": precision, **extra}
    base["batch_models"] = len(scales)
    cells = []
    for i, s in enumerate(scales):
        p = {k: v * s if k.endswith("_lr") else v for k, v in base.items()}
        p["grad_clip"] = 1.0 if i % 2 == 0 else 0.5  # a batchable knob that differs too
        cells.append(Cell(f"{opt}-c{i}", i, "gpt2.workload", point, 0, p))
    return cells


def _ctx(cell, logs=None):
    ctx = RunContext(device=DEVICE, out_dir="unused")
    ctx.cache[("gpt2.data", json.dumps(cell.params["data"], sort_keys=True), "data")] = FakeTokens()
    ctx.log = (lambda *a: logs.append(" ".join(map(str, a)))) if logs is not None else print
    return ctx


def _losses(outcome):
    return outcome.losses if isinstance(outcome, Diverged) else outcome["losses"]


def _single(cell):
    seed_everything(cell.run_seed)
    try:
        return runner.run(cell, _ctx(cell))
    except Diverged as e:
        return e


def _batched(cells):
    seed_everything(cells[0].run_seed)
    return runner.run_batch(cells, [_ctx(c) for c in cells])


def _rel(a, b):
    return max(abs(x - y) / abs(x) for x, y in zip(a, b))


@pytest.mark.parametrize(
    "opt, arch", [(o, "gpt2") for o in sorted(OPTIMIZERS)] + [("muon", "nanochat")]
)
def test_each_model_follows_the_one_model_path(opt, arch):
    cells = _cells(opt, [1.0, 3.0, 0.3], arch=arch)
    batched = _batched(cells)
    for cell, out in zip(cells, batched):
        one = _single(cell)
        assert not isinstance(one, Diverged) and not isinstance(out, Diverged)
        assert len(out["losses"]) == len(one["losses"]) == STEPS_RUN
        assert _rel(one["losses"], out["losses"]) < RTOL, (cell.id, one["losses"], out["losses"])
        assert out["val_losses"][-1][0] == one["val_losses"][-1][0] == STEPS_RUN
        assert math.isclose(out["val_losses"][-1][1], one["val_losses"][-1][1], rel_tol=RTOL)
        assert out["metrics"]["steps"] == one["metrics"]["steps"]
        assert out["lrs"] == pytest.approx(one["lrs"], rel=1e-12)


def test_bf16_batch_follows_the_one_model_path_loosely():
    """bf16 rounds every matmul to 8 bits of mantissa: the bound is bf16's, not fp32's."""
    cells = _cells("muon", [1.0, 2.0], precision="bf16")
    for cell, out in zip(cells, _batched(cells)):
        assert _rel(_single(cell)["losses"], out["losses"]) < 2e-2


def test_a_diverging_model_leaves_the_batch_and_changes_no_other():
    cells = _cells("adamw", [1.0, 1e30, 3.0])  # the middle one diverges
    logs = [[] for _ in cells]
    seed_everything(0)
    out = runner.run_batch(cells, [_ctx(c, log) for c, log in zip(cells, logs)])
    bad = out[1]
    assert isinstance(bad, Diverged)
    assert not math.isfinite(bad.losses[-1]) and bad.metrics["steps"] == len(bad.losses)
    assert len(bad.losses) < STEPS_RUN  # it left early
    one = _single(cells[1])
    assert isinstance(one, Diverged) and len(one.losses) == len(bad.losses)
    assert one.metrics["steps"] == bad.metrics["steps"]
    assert str(one).split(" at step")[1] == str(bad).split(" at step")[1]
    # after it left, the batch ran with two models: the log says so
    assert any("2 models" in line for line in logs[0])
    # bitwise: the others' losses with and without it in the batch
    without = _batched([cells[0], cells[2]])
    assert _losses(out[0]) == _losses(without[0])
    assert _losses(out[2]) == _losses(without[1])
    assert out[0]["val_losses"] == without[0]["val_losses"]


def test_a_batch_larger_than_batch_models_runs_in_chunks():
    cells = _cells("sgd", [1.0, 2.0, 3.0])
    for c in cells:
        c.params["batch_models"] = 2
    chunked = _batched(cells)
    for c in cells:
        c.params["batch_models"] = 3
    whole = _batched(cells)
    if DEVICE == "cpu":  # on a GPU cuBLAS may pick another kernel for 1 matrix than for 3
        assert [_losses(o) for o in chunked] == [_losses(o) for o in whole]
    for a, b in zip(chunked, whole):
        assert _rel(_losses(a), _losses(b)) < RTOL


def test_a_batch_of_one_model_at_a_time_is_the_one_model_path(monkeypatch):
    """K = 1 (batch_models(): a CPU and a model too large to gain): run_batch trains each
    cell by run(), seeded as a worker seeds it, so its results are bitwise run()'s, a
    diverged cell included; the estimate's probe times one cell of it."""
    from gpt2 import batched

    monkeypatch.setattr(batched, "train_batched", None)  # never the stacked path
    cells = _cells("adamw", [1.0, 1e30, 3.0])  # the middle one diverges
    for c in cells:
        c.params["batch_models"] = 1
    seed_everything(123)  # the batch seeds each cell itself
    out = runner.run_batch(cells, [_ctx(c) for c in cells])
    assert isinstance(out[1], Diverged) and not isinstance(out[0], Diverged)
    for cell, o in zip(cells, out):
        assert repr(_losses(o)) == repr(_losses(_single(cell)))  # bitwise, NaN as NaN
    ctx = _ctx(cells[0])
    ctx.batch = cells
    answer = runner.probe(cells[0], ctx)
    assert answer["cells"] == 1 and answer["per_cell"] == STEPS_RUN


def test_what_may_differ_inside_a_batch():
    (a,) = _cells("muon", [1.0])
    assert unbatchable(a.params) is None
    key = batch_key(a.params, 0)
    for knob in ("matrix_lr", "unembedding_lr", "adamw_beta2", "muon_momentum", "grad_clip"):
        assert knob in BATCHABLE
        assert batch_key({**a.params, knob: 0.123}, 0) == key
    assert batch_key(a.params, 1) != key  # another seed draws other batches
    for knob, value in (("n_layer", 3), ("muon_ns_steps", 4), ("precision", "bf16")):
        assert batch_key({**a.params, knob: value}, 0) != key
    assert "fp16" in unbatchable({**a.params, "precision": "fp16"})
    assert "checkpoint_interval" in unbatchable({**a.params, "checkpoint_interval": 5})
    assert workload.batch_key(a) == key
    with pytest.raises(ValueError, match="cannot train in a batch"):
        b = Cell("b", 1, a.workload, a.point, 0, {**a.params, "n_embd": 64})
        runner.run_batch([a, b], [_ctx(a), _ctx(b)])


def test_every_optimizer_has_a_batched_step():
    assert set(STEPS) == set(BATCHED_OPTIMIZERS) <= set(OPTIMIZERS)
    assert {"adamw", "muon", "sgd", "lion"} <= set(STEPS)


def test_a_flagship_grid_gets_the_same_labels_batched(tmp_path):
    """The flagship's model and grid (3 x 3 of its 16 x 16 range), every point run alone
    and all in one batch: the same labels, losses within the bound."""
    from llmmap import workload as llmmap
    from kmatrix import kconfig
    from kmatrix.config import Config
    from kmatrix.plan import plan

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    values = kconfig.apply_defconfig("fractal-16x16", dotconfig=tmp_path / ".config")
    cfg = Config(values).replace(
        sweep_x_points=3,
        sweep_y_points=3,
        gpt2_max_steps=6,
        llmmap_trainable_window=3,
        gpt2_data="files",
        gpt2_data_paths=[str(corpus)],
        gpt2_data_dir=str(tmp_path / "data"),
    )
    cells = plan(cfg)
    for c in cells:  # all in one batch: on the CPU `make` trains this model alone
        c.params["batch_models"] = len(cells)
    cache = {}

    def ctx():
        c = RunContext(device=DEVICE, out_dir=tmp_path, cache=cache)
        c.log = lambda *a: None
        return c

    def metrics(out):
        return out.metrics if isinstance(out, Diverged) else out["metrics"]

    alone = []
    for cell in cells:
        seed_everything(cell.run_seed)
        try:
            alone.append(llmmap.run(cell, ctx()))
        except Diverged as e:
            alone.append(e)
    seed_everything(cells[0].run_seed)
    together = llmmap.run_batch(cells, [ctx() for _ in cells])
    labels = [(metrics(o)["stable"], metrics(o)["trainable"]) for o in alone]
    assert labels == [(metrics(o)["stable"], metrics(o)["trainable"]) for o in together]
    assert len(set(labels)) > 1  # the grid crosses the boundary
    for a, b in zip(alone, together):
        assert abs(_losses(a)[0] - _losses(b)[0]) <= RTOL * abs(_losses(a)[0])


def test_a_compiled_batch_compacts_without_recompiling(monkeypatch):
    """GPT2_COMPILE compiles the batch (the model's trunk, the loss's chunk and AdamW's
    update); the number of models is a dynamic size, so a model that leaves the batch,
    or a smaller batch after it, compiles nothing new: one graph each for training and
    evaluation, and one AdamW update for every parameter's shape and K.
    Counted with Dynamo's counting backend (on the CPU over eager kernels, on a GPU over
    inductor). The uncompiled batch takes the loss in one piece (F.cross_entropy) where
    the compiled one takes it by chunks, so the two are held to the fp32 bound."""
    from torch._dynamo.testing import CompileCounterWithBackend

    import gpt2.batched as batched

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("eager" if DEVICE == "cpu" else "inductor")
    monkeypatch.setattr(batched, "COMPILE_BACKEND", counter)
    try:
        cells = _cells("adamw", [1.0, 1e30, 3.0], compile=True)  # the middle one diverges
        out = _batched(cells)
        assert isinstance(out[1], Diverged) and len(out[1].losses) < STEPS_RUN
        graphs = counter.frame_count
        assert 3 <= graphs <= 5  # trunk and loss chunk, each for training and evaluation,
        # and AdamW's update
        smaller = _batched([cells[0], cells[2]])  # K = 2 from the start
        assert counter.frame_count == graphs
        for c in cells:
            c.params["compile"] = False
        eager = _batched(cells)
    finally:
        torch._dynamo.reset()
    assert isinstance(eager[1], Diverged) and len(eager[1].losses) == len(out[1].losses)
    for k, m in ((0, 0), (2, 1)):
        assert _rel(_losses(eager[k]), _losses(out[k])) < RTOL
        assert _rel(_losses(out[k]), _losses(smaller[m])) < RTOL


def test_the_chunked_loss_is_the_cross_entropy_with_its_gradients(monkeypatch):
    """The head's loss in chunks of tokens (gpt2.batched.head_losses) against autograd
    through F.cross_entropy on the whole logits, ignored targets included: chunks of 4
    tokens over 10 (the last one short), every model its own loss and gradients."""
    import gpt2.batched as batched

    torch.manual_seed(0)
    K, N, C, V = 3, 10, 8, 16
    monkeypatch.setattr(gpt2_params, "HEAD_CHUNK_ELEMENTS", 4 * V)
    assert gpt2_params.head_chunk(N, V) == 4
    x = torch.randn(K, N, C, requires_grad=True)
    w = torch.randn(K, V, C, requires_grad=True)
    t = torch.randint(0, V, (N,))
    t[3] = -1
    scale = torch.tensor([1.0, 0.5, 2.0])
    ref = _cross_entropy_per_model(x, w, t)
    (ref * scale).sum().backward()
    gx, gw = x.grad, w.grad
    x.grad = w.grad = None
    got = batched.head_losses(x, w, t)
    (got * scale).sum().backward()
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-7)
    assert torch.allclose(x.grad, gx, rtol=1e-5, atol=1e-7) and torch.allclose(
        w.grad, gw, rtol=1e-5, atol=1e-7
    )
    with torch.no_grad():
        assert torch.allclose(batched.head_losses(x, w, t), ref, rtol=1e-5, atol=1e-7)
    # logits that fit one chunk, uncompiled: the fused F.cross_entropy path, same answer
    monkeypatch.setattr(gpt2_params, "HEAD_CHUNK_ELEMENTS", 64 * V)
    x.grad = w.grad = None
    got = batched.head_losses(x, w, t)
    (got * scale).sum().backward()
    assert got.grad_fn.name() != "_HeadLossBackward"
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-7)
    assert torch.allclose(x.grad, gx, rtol=1e-5, atol=1e-7)


def _cross_entropy_per_model(x, w, t):
    from torch.nn import functional as F

    logits = torch.bmm(x, w.mT)
    return torch.stack([F.cross_entropy(lg, t, ignore_index=-1) for lg in logits])


def test_a_compiled_adamw_step_is_the_eager_one():
    """GPT2_COMPILE runs AdamW's update as one compiled function over [K, n] rows: the
    parameter and both moments written in place, each row with its own lr, betas, eps and
    decay. Through AOT autograd's functionalization (the CPU) it is the eager step
    bitwise; through inductor (a GPU) its kernel may contract a multiply and an add, so it
    is held to the fp32 bound."""
    from gpt2.batched import adamw_step

    backend = "aot_eager" if DEVICE == "cpu" else "inductor"
    f64 = dict(dtype=torch.float64, device=DEVICE)
    h = {
        "adamw_beta1": torch.tensor([0.9, 0.8, 0.95], **f64),
        "adamw_beta2": torch.tensor([0.99, 0.95, 0.999], **f64),
        "adamw_eps": torch.tensor([1e-8, 1e-6, 1e-10], **f64),
    }
    lr, wd = torch.tensor([1e-3, 0.1, 3.0], **f64), torch.tensor([0.0, 0.1, 0.01], **f64)
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(3, 5, 7, generator=gen).to(DEVICE)
    grads = [torch.randn(3, 5, 7, generator=gen).to(DEVICE) for _ in range(4)]
    runs = {}
    torch._dynamo.reset()
    try:
        for name, b in (("eager", None), ("compiled", backend)):
            p, state = start.clone(), {}
            for t, g in enumerate(grads, 1):
                adamw_step(p, g, state, h, lr, wd, t, b)
            runs[name] = (p, state["exp_avg"], state["exp_avg_sq"])
    finally:
        torch._dynamo.reset()
    for run in runs.values():  # the parameter was updated in place by both
        assert not torch.equal(run[0], start)
    for eager, compiled in zip(runs["eager"], runs["compiled"]):
        if DEVICE == "cpu":
            assert torch.equal(eager, compiled)
        else:
            assert torch.allclose(eager, compiled, rtol=RTOL, atol=1e-7)
