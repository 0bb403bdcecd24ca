"""GPT-2 model and optimizers: shapes, initial loss, one step per optimizer, Muon."""

import math

import pytest
import torch

from gpt2.model import GPT
from gpt2.presets import config_from_preset, pad_vocab
from gpt2.optim import GROUPS, OPTIMIZERS, build_optimizers, default_hp, default_lrs
from gpt2.optimizers import Muon, zeropower_via_newtonschulz5

V = 256


def tiny(arch, **kw):
    torch.manual_seed(0)
    return GPT(config_from_preset("tiny", arch=arch, n_layer=2, n_embd=64, vocab_size=V, **kw))


def test_bias_switch():
    biases = lambda m: [n for n, _ in m.named_parameters() if n.endswith(".bias")]  # noqa: E731
    assert len(biases(tiny("gpt2"))) == 2 * 6 + 1  # per block 4 linear + 2 norms; ln_f
    assert biases(tiny("gpt2", bias=False)) == []
    assert biases(tiny("nanochat", bias=True)) == []  # nanochat never has biases


def test_pad_vocab():
    assert pad_vocab(50257) == 50304 and pad_vocab(64) == 64


@pytest.mark.parametrize("arch", ["gpt2", "nanochat"])
def test_shapes_and_initial_loss(arch):
    model = tiny(arch)
    x = torch.randint(0, V, (4, 32))
    y = torch.randint(0, V, (4, 32))
    logits, loss = model(x, y)
    assert logits.shape == (4, 32, V)
    # an untrained model predicts roughly uniformly: loss ~ ln(vocab)
    assert abs(loss.item() - math.log(V)) < 0.3
    assert model(x)[1] is None


def test_param_groups_partition_and_tying():
    for arch in ("gpt2", "nanochat"):
        model = tiny(arch)
        groups = model.param_groups()
        ids = [id(p) for ps in groups.values() for p in ps]
        assert len(ids) == len(set(ids)) == len(list(model.parameters()))
        assert all(p.dim() == 2 for p in groups["matrix"])
    gpt2 = tiny("gpt2")
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight  # tied: listed under embedding
    assert gpt2.param_groups()["unembedding"] == []
    nano = tiny("nanochat")
    assert nano.param_groups()["vector"] == []  # no biases, parameter-free norms
    assert nano.lm_head.weight is not nano.transformer.wte.weight


def test_grad_checkpoint_same_gradients():
    x = torch.randint(0, V, (2, 16))
    grads = []
    for ckpt in (False, True):
        model = tiny("nanochat", grad_checkpoint=ckpt)
        model(x, x)[1].backward()
        grads.append(model.transformer.h[0].mlp.c_fc.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_flops_and_mfu():
    with torch.device("meta"):  # sizes only, no memory
        model = GPT(config_from_preset("124M"))
    # nanoGPT prints 123.69M for GPT-2 small with the padded vocabulary (wpe not counted)
    assert model.num_params() == 123_689_472
    assert model.flops_per_token() == 6 * model.num_params() + 12 * 12 * 12 * 64 * 1024
    assert 0 < model.estimate_mfu(468e3) < 1


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("arch", ["gpt2", "nanochat"])
def test_one_step_lowers_loss(name, arch):
    model = tiny(arch)
    torch.manual_seed(1)
    x, y = torch.randint(0, V, (4, 32)), torch.randint(0, V, (4, 32))
    opts = build_optimizers(name, model.param_groups(), default_lrs(name), default_hp(name))
    loss0 = model(x, y)[1]
    loss0.backward()
    for opt in opts:
        opt.step()
    with torch.no_grad():
        loss1 = model(x, y)[1]
    assert loss1.item() < loss0.item() - 1e-4, (name, arch, loss0.item(), loss1.item())


def test_freezing_groups():
    model = tiny("nanochat")
    before = {g: [p.detach().clone() for p in ps] for g, ps in model.param_groups().items()}
    opts = build_optimizers(
        "adamw", model.param_groups(), default_lrs("adamw"), default_hp("adamw"), ["matrix"]
    )
    x = torch.randint(0, V, (2, 16))
    model(x, x)[1].backward()
    for opt in opts:
        opt.step()
    after = model.param_groups()
    assert all(torch.equal(a, b) for a, b in zip(before["embedding"], after["embedding"]))
    assert all(torch.equal(a, b) for a, b in zip(before["unembedding"], after["unembedding"]))
    assert not all(torch.equal(a, b) for a, b in zip(before["matrix"], after["matrix"]))
    assert not model.transformer.wte.weight.requires_grad


def test_muon_pairs_with_adamw_and_group_names():
    model = tiny("nanochat")
    opts = build_optimizers("muon", model.param_groups(), default_lrs("muon"), default_hp("muon"))
    assert [type(o).__name__ for o in opts] == ["Muon", "AdamW"]
    names = {g["name"]: g["lr"] for o in opts for g in o.param_groups}
    assert names == {"matrix": 0.02, "embedding": 6e-4, "unembedding": 6e-4}
    assert set(GROUPS) >= set(names)


@pytest.mark.parametrize("shape", [(64, 64), (128, 32), (32, 192)])
def test_newton_schulz_is_near_orthogonal(shape):
    torch.manual_seed(0)
    k = min(shape)
    U, _ = torch.linalg.qr(torch.randn(shape[0], k))
    W, _ = torch.linalg.qr(torch.randn(shape[1], k))
    G = U @ torch.diag(torch.logspace(-1, 0, k)) @ W.T  # condition number 10
    X = zeropower_via_newtonschulz5(G, steps=5)
    s = torch.linalg.svdvals(X)
    # quintic NS pushes every singular value into roughly [0.7, 1.2], never to exactly 1
    # (singular values far below the largest / ~500 would need more steps)
    assert s.min() > 0.5 and s.max() < 1.5, (s.min(), s.max())
    # ...and keeps the singular vectors: X ~ U V^T of G
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    cos = (X * (U @ Vh)).sum() / (X.norm() * (U @ Vh).norm())
    assert cos > 0.98


def test_newton_schulz_batch_equals_one_by_one():
    torch.manual_seed(0)
    G = torch.randn(3, 48, 16)
    batched = zeropower_via_newtonschulz5(G)
    for k in range(3):
        torch.testing.assert_close(batched[k], zeropower_via_newtonschulz5(G[k]))


def test_muon_step_matches_a_per_matrix_reference():
    """The batched step (matrices grouped by shape) is the textbook per-matrix update:
    Nesterov momentum, Newton-Schulz, tall-matrix scale, decoupled weight decay."""
    torch.manual_seed(0)
    shapes = [(32, 16), (16, 16), (32, 16), (16, 48)]
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    ref = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in params]
    opt = Muon(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)
    for _ in range(3):
        grads = [torch.randn(s) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for k, (w, g) in enumerate(zip(ref, grads)):
            bufs[k] = bufs[k] + 0.1 * (g - bufs[k])
            u = zeropower_via_newtonschulz5(g + 0.9 * (bufs[k] - g))
            scale = max(1.0, w.size(0) / w.size(1)) ** 0.5
            ref[k] = w * (1 - 0.05 * 0.1) - 0.05 * scale * u
    for p, w in zip(params, ref):
        torch.testing.assert_close(p.detach(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "nanochat"])
def test_init_weights_resets_every_parameter(arch):
    """A worker reuses a model across cells: init_weights must overwrite every parameter
    (a diverged cell leaves NaNs behind) exactly as a fresh build does."""
    used, fresh = tiny(arch), tiny(arch)
    with torch.no_grad():
        for p in used.parameters():
            p.fill_(float("nan"))
    for m in (used, fresh):
        torch.manual_seed(7)
        m.init_weights()
    for (name, a), b in zip(used.named_parameters(), fresh.parameters()):
        assert torch.equal(a, b), name


def test_the_registry_drives_the_optimizer_tests_and_matches_kconfig():
    """Adding an optimizer is one registry entry plus its Kconfig menu: the tests above take
    every entry and its defaults from the registry, and the Kconfig defaults must agree."""
    from kmatrix import config, kconfig

    kconf = kconfig.load_kconfig()
    for name, spec in OPTIMIZERS.items():
        kconf.syms["WORKLOAD_GPT2"].set_value("y")
        kconf.syms[f"OPTIMIZER_{name.upper()}"].set_value("y")
        values = config.typed_values(kconf)
        for key, default in spec.defaults.items():
            assert values[key] == default, (name, key, values[key], default)
        assert set(default_lrs(name)) == set(GROUPS)
    parametrized = test_one_step_lowers_loss.pytestmark
    assert any(sorted(OPTIMIZERS) in m.args for m in parametrized)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_newton_schulz_rounds_to_bf16_only_in_low_precision_cells(precision, monkeypatch):
    """Muon's Newton-Schulz may run in bf16 on a GPU (modded-nanogpt's speed trick) only in
    bf16/fp16 cells: in an fp32 cell, bf16 rounding of every update would decide the fine
    structure of an "fp32" trainability map. Both training paths get the same flag."""
    import json

    from gpt2 import batched, optimizers, runner, workload
    from kmatrix.cell import Cell, RunContext
    from tests.conftest import TINY_RUN, FakeTokens, gpt2_cfg

    seen = []

    def spy(real):
        def newton_schulz(G, steps=5, bf16=True):
            seen.append(bf16)
            return real(G, steps, bf16)

        return newton_schulz

    monkeypatch.setattr(
        optimizers, "zeropower_via_newtonschulz5", spy(optimizers.zeropower_via_newtonschulz5)
    )
    monkeypatch.setattr(
        batched, "zeropower_via_newtonschulz5", spy(batched.zeropower_via_newtonschulz5)
    )
    cfg = gpt2_cfg("OPTIMIZER_MUON", **TINY_RUN)
    point = {"optimizer": "muon", "precision": precision, "seed": 0}
    params = {**workload.cell_params(cfg, point), "precision": precision, "batch_models": 2}
    cells = [Cell(f"c{i}", i, "gpt2.workload", point, 0, params) for i in range(2)]

    def ctx(cell):
        c = RunContext(device="cpu", out_dir="unused")
        c.cache[("gpt2.data", json.dumps(cell.params["data"], sort_keys=True), "data")] = (
            FakeTokens()
        )
        c.log = lambda *a: None
        return c

    runner.run(cells[0], ctx(cells[0]))
    runner.run_batch(cells, [ctx(c) for c in cells])
    assert seen and set(seen) == {precision != "fp32"}
