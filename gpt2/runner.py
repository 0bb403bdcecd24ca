"""Running gpt2 cells: build the model and optimizers from a cell's params, train it
(run), time it (probe, for `make estimate`) and dry-run it (`make check`).

The worker seeds every cell and applies its run profile before run() is called; the
model is seeded again right before its weights are initialised, so a model kept by the
worker from an earlier cell starts from exactly the weights a fresh one would.
"""

import json
import math
import os
import time
from pathlib import Path

import torch

from kmatrix.errors import ConfigError, Diverged
from kmatrix.seeding import seed_everything

from .model import GPT
from .presets import config_from_preset
from .optim import GROUPS, OPTIMIZERS, build_optimizers, newton_schulz_bf16
from .params import AUTOCAST_DTYPES, cpu_batch_models, init_checkpoint, model_bytes, unbatchable
from .checkpoint import load_checkpoint
from .train import TrainSettings, evaluate, runtime_knobs, train

# CUBLAS_WORKSPACE_CONFIG (deterministic cuBLAS under paper_repro) must be set before CUDA
# initialises: the executors put kmatrix.seeding.PROFILE_ENV into every worker's
# environment, so it is there before the first cell; runtime knobs record it.


def _init_weights(source):
    """Model weights from a checkpoint file or a gpt2 cell directory (weights only)."""
    state = load_checkpoint(init_checkpoint(source))
    return state["model"] if "model" in state else state


def _model(config, device, seed, cache=None, compiled=False):
    """(model, runner) for a cell: the model initialised from `seed`, and the callable the
    loop trains (torch.compile'd when asked).

    With a cache (the worker's), one model per worker is kept and re-initialised in place
    for the next cell of the same configuration: no 124M build and, above all, no second
    torch.compile. Seeding right before init_weights makes the weights the same whether the
    model is new or reused.
    """
    key = (repr(config), device, compiled)
    kept = cache.get("gpt2.model") if cache is not None else None
    if kept and kept[0] == key:
        model, runner = kept[1:]
        for param in model.parameters():
            param.grad = None  # a diverged cell may have stopped mid-step
    else:
        if cache is not None:
            cache.pop("gpt2.model", None)  # free the last one first (GPU memory)
        with torch.device(device):  # initialise on the device: a 124M init on CPU costs ~1 s
            model = GPT(config)
        runner = torch.compile(model) if compiled else model
        if cache is not None:
            cache["gpt2.model"] = (key, model, runner)
    torch.manual_seed(seed)
    model.init_weights()
    return model, runner


def _build(p, device, seed, cache=None, vocab_size=None, **overrides):
    """Model, runner and optimizers for a cell's params (overrides shrink the model for dry
    runs); vocab_size: the data's, where the params leave it to the data (see _vocab)."""
    sizes = {k: p[k] for k in ("n_layer", "n_head", "n_embd", "block_size")}
    sizes["vocab_size"] = vocab_size or p["vocab_size"]
    config = config_from_preset(
        p["model"],
        arch=p["arch"],
        bias=p.get("bias", True),
        grad_checkpoint=p["grad_checkpoint"],
        **{**sizes, **overrides},
    )
    compiled = p["compile"] and not overrides
    model, runner = _model(config, device, seed, cache, compiled)
    if p.get("init_from") and not overrides:
        model.load_state_dict(_init_weights(p["init_from"]))
    lrs = {g: p[f"{g}_lr"] for g in GROUPS}
    hp = {k: p[k] for k in OPTIMIZERS[p["optimizer"]].hp}
    hp["muon_ns_bf16"] = newton_schulz_bf16(p["precision"])
    optimizers = build_optimizers(p["optimizer"], model.param_groups(), lrs, hp, p["train_groups"])
    if not optimizers:
        raise ConfigError(
            "GPT2_TRAIN_GROUPS", "every parameter group is frozen", "train at least one group"
        )
    return model, runner, optimizers


def _settings(p, **overrides):
    fields = dict(
        batch_size=p["batch_size"],
        seq_len=p["block_size"],
        grad_accum=p["grad_accum"],
        max_steps=p["max_steps"],
        max_tokens=p["max_tokens"],
        max_seconds=p["max_seconds"],
        warmup_steps=p["warmup_steps"],
        schedule=p["schedule"],
        min_lr_frac=p["min_lr_frac"],
        grad_clip=p["grad_clip"],
        precision=p["precision"],
        eval_interval=p["eval_interval"],
        log_interval=p["log_interval"],
        checkpoint_interval=p["checkpoint_interval"],
        check_numerics=bool(p.get("check_numerics")),
        detect_anomaly=bool(p.get("detect_anomaly")),
        extra={"params": json.dumps(p, sort_keys=True)},  # resume only the very same cell
    )
    return TrainSettings(**{**fields, **overrides})


def _token_data(p, ctx):
    """TokenData for the cell's source, prepared once and kept for the worker's later cells."""
    from .data import TokenData, prepare

    key = ("gpt2.data", json.dumps(p["data"], sort_keys=True), str(p["data_dir"]))
    if key not in ctx.cache:
        ctx.cache[key] = TokenData(prepare(p["data"], Path(p["data_dir"])))
    return ctx.cache[key]


def _vocab(p, td):
    """The model's vocabulary: the params' (the padded GPT-2 BPE), or, for character
    data (vocab_size 0), the characters of the corpus."""
    return p["vocab_size"] or td.vocab_size


def _val_batches(td, p, device):
    """The fixed validation batches, the same for every cell of a seed."""
    B, T = p["batch_size"], p["block_size"]
    batches = td.fixed_batches("val", p["eval_batches"], B, T, p["seed"])
    return [(x.to(device), y.to(device)) for x, y in batches]


def run(cell, ctx):
    """Train the cell; out of GPU memory, train it again from the start with half the
    micro-batch and twice the gradient accumulation (the same tokens per optimizer step,
    so the same steps, tokens and learning-rate schedule), down to GPT2_OOM_MIN_BATCH
    sequences. The result's "ran_with" says what ran; a cell that fits nowhere fails
    with a message saying so."""
    p = cell.params
    B, A, retries = p["batch_size"], p["grad_accum"], 0
    floor = p.get("oom_min_batch", 0)
    while True:
        try:
            if (p.get("ddp_gpus") or 1) > 1:
                from . import ddp

                result = ddp.run(cell, ctx, B, A)  # rank 0's; the ranks had no tracker
                for row in result["history"] if ctx.tracker is not None else []:
                    ctx.tracker.log(row, step=row["step"])
            else:
                result = _run_once(cell, ctx, B, A)
            break
        except Diverged as e:  # a result too: it says what it ran with
            e.ran_with = {"batch_size": B, "grad_accum": A, "oom_retries": retries}
            raise
        except torch.OutOfMemoryError as e:
            error = str(e).splitlines()[0] if str(e) else "out of memory"
        # Out of the except block: the traceback's frames, and the tensors they held, are
        # gone; empty_cache returns their blocks so the smaller run starts unfragmented.
        if ctx.device.startswith("cuda"):
            torch.cuda.empty_cache()
        if not floor:
            why = "GPT2_OOM_MIN_BATCH=0 turns the fallback off"
        elif B % 2:
            why = f"{B} sequences cannot be halved exactly"
        elif B // 2 < floor:
            why = f"halving {B} would go below GPT2_OOM_MIN_BATCH={floor}"
        else:
            why = None
        if why:
            raise OutOfMemory(
                f"cell {cell.id} does not fit in GPU memory at a micro-batch of {B} sequences "
                f"(grad_accum {A}, after {retries} halving(s); {why}): lower GPT2_BATCH_SIZE "
                f"or the model size, or use a GPU with more memory ({error})"
            ) from None
        ctx.log(
            f"out of memory at micro-batch {B} x grad_accum {A} ({error}); "
            f"again from the start at {B // 2} x {A * 2}"
        )
        B, A, retries = B // 2, A * 2, retries + 1
        seed_everything(cell.run_seed)  # as the worker seeded the first try
    result["ran_with"] = {"batch_size": B, "grad_accum": A, "oom_retries": retries}
    return result


class OutOfMemory(RuntimeError):
    """A cell that does not fit in GPU memory even at its smallest allowed micro-batch."""


def _fake_oom(p, B):
    """Fault injection for tests and demonstrations: GPT2_FAKE_OOM_ABOVE=N makes every
    micro-batch of more than N sequences raise torch.OutOfMemoryError, as a GPU too
    small for it would; N:K only after K micro-batches (the failing run trains a little
    first). Returns a callable run before each micro-batch, or None."""
    spec = os.environ.get("GPT2_FAKE_OOM_ABOVE")
    if not spec:
        return None
    limit, _, after = spec.partition(":")
    seen = [0]

    def check():
        seen[0] += 1
        if B > int(limit) and seen[0] > int(after or 0):
            raise torch.OutOfMemoryError(
                f"GPT2_FAKE_OOM_ABOVE={spec}: a micro-batch of {B} sequences does not fit"
            )

    return check


def _run_once(cell, ctx, B, A, replica=None):
    """One training run of the cell at micro-batch B and gradient accumulation A; in a
    DDP process (gpt2/ddp.py) replica is (rank, ranks) and this rank trains A / ranks of
    each step's micro-batches."""
    started = time.perf_counter()
    p, device = cell.params, ctx.device
    knobs = runtime_knobs(device)  # the worker has seeded the cell and applied the profile
    td = _token_data(p, ctx)
    model, runner, optimizers = _build(p, device, cell.run_seed, ctx.cache, _vocab(p, td))
    rank, ranks = replica or (0, 1)
    if replica:
        from torch.nn.parallel import DistributedDataParallel

        from .ddp import Replica

        cuda = device.startswith("cuda")
        module = DistributedDataParallel(model, device_ids=[rank] if cuda else None)
        runner = torch.compile(module) if p["compile"] else module
        replica = Replica(module, rank, ranks)
        knobs.update(ddp_ranks=ranks, ddp_backend=torch.distributed.get_backend())
    # same run_seed -> same init and data order for every optimizer/precision of a seed
    gen = torch.Generator().manual_seed(cell.run_seed)
    T = p["block_size"]
    # The configured batch size's validation batches (the experiment's val set), in
    # chunks of the micro-batch that fits: the same mean, to rounding.
    val = [
        (x[i : i + B], y[i : i + B])
        for x, y in _val_batches(td, p, device)
        for i in range(0, len(x), B)
    ]
    knobs.update(
        precision=p["precision"],
        autocast_dtype=AUTOCAST_DTYPES[p["precision"]],
        grad_scaler=p["precision"] == "fp16",
        compile=p["compile"],
        grad_checkpoint=p["grad_checkpoint"],
        check_numerics=bool(p.get("check_numerics")),
        detect_anomaly=bool(p.get("detect_anomaly")),
        fused_adamw=any(o.defaults.get("fused") for o in optimizers),
        n_params=model.num_params(),
        flops_per_token=model.flops_per_token(T),
        dataset=getattr(td, "identity", None),
    )
    ctx.log(
        f"gpt2 {cell.id}: {knobs['n_params'] / 1e6:.2f}M params, knobs {json.dumps(knobs, default=str)}"
    )
    setup_seconds = time.perf_counter() - started  # model (re)build, data, val batches
    fake_oom = _fake_oom(p, B)

    def batch():
        if fake_oom:
            fake_oom()
        if ranks == 1:
            return td.get_batch("train", B, T, gen, device)
        # every rank draws the single process's micro-batches in its order, keeps its own
        draws = [td.get_batch("train", B, T, gen) for _ in range(ranks)]
        return tuple(t.to(device) for t in draws[rank])

    try:
        result = train(
            runner,
            optimizers,
            batch,
            _settings(p, batch_size=B, grad_accum=A // ranks),
            device=device,
            val_batches=val,
            raw_model=model,
            ckpt_path=Path(ctx.out_dir) / "checkpoint.pt" if p["checkpoint_interval"] else None,
            data_generator=gen,
            log=ctx.log,
            tracker=ctx.tracker,
            replica=replica,
        )
    except Diverged as e:
        e.metrics["setup_seconds"] = setup_seconds
        raise
    result["knobs"] = knobs
    result["metrics"]["setup_seconds"] = setup_seconds
    return result


def probe(cell, ctx, steps=5):
    """`make estimate`: this cell's run time on this device, from a few real training
    steps and one evaluation, scaled to its budget. Data preparation (a one-time
    download and tokenisation) happens before the clock starts; the model build (and
    compile) is timed, as in run(): a worker's first cell pays for it, later ones reuse it.
    In a batch job (ctx.batch: the job's cells) it times them trained together instead.
    """
    if ctx.batch:
        return probe_batch(ctx.batch, ctx, steps)
    return _probe_one(cell, ctx, steps)


def _probe_one(cell, ctx, steps):
    p, device = cell.params, ctx.device
    td = _token_data(p, ctx)
    started = time.perf_counter()
    model, runner, optimizers = _build(p, device, cell.run_seed, ctx.cache, _vocab(p, td))
    gen = torch.Generator().manual_seed(cell.run_seed)
    B, T = p["batch_size"], p["block_size"]
    val = _val_batches(td, p, device)
    stamps = []

    def batch():
        stamps.append(time.perf_counter())
        return td.get_batch("train", B, T, gen, device)

    s = _settings(p, max_steps=steps + 1, max_tokens=0, max_seconds=0)
    s.warmup_steps, s.eval_interval, s.checkpoint_interval, s.log_interval = 0, 0, 0, 0
    try:
        train(runner, optimizers, batch, s, device=device, raw_model=model, log=lambda *a: None)
    except Diverged:
        pass  # a diverging cell still took this long per step
    eval_started = time.perf_counter()
    if val:
        evaluate(model, val, p["precision"], device)
    return _extrapolate(p, started, stamps, time.perf_counter() - eval_started)


def _extrapolate(p, started, stamps, per_eval):
    """A probe's answer: setup (from `started` to the first batch drawn), the steps timed
    by `stamps` (the time each batch was drawn; the first step, which pays for warm-up, is
    left out) and one evaluation of `per_eval` seconds, scaled to the budget of p."""
    setup = stamps[0] - started
    ga = p["grad_accum"]
    m = len(stamps) // ga  # steps begun; step k ran from stamps[(k-1)*ga] to stamps[k*ga]
    per_step = (stamps[(m - 1) * ga] - stamps[ga]) / (m - 2) if m > 2 else 0.0  # not step 1
    tokens_per_step = p["batch_size"] * p["block_size"] * ga
    budget = [p["max_steps"]] if p["max_steps"] else []
    if p["max_tokens"]:
        budget.append(math.ceil(p["max_tokens"] / tokens_per_step))
    n = min(budget) if budget else math.inf
    seconds = min(n * per_step, p["max_seconds"] or math.inf)
    if not math.isfinite(n):
        n = int(seconds / per_step) if per_step else 0
    evals = 1 + (
        n // p["eval_interval"] - (n % p["eval_interval"] == 0) if p["eval_interval"] else 0
    )
    return {
        "unit": "steps",
        "per_cell": int(n),
        "seconds_per_cell": setup + seconds + evals * per_eval,
        "probe_seconds": time.perf_counter() - started,
    }


def dry_run(cell, ctx):
    """The cell's real model code, optimizer and precision at tiny size on CPU: one step of
    the real training loop on random tokens. Returns that step's loss."""
    p = cell.params
    tiny = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=128)
    model, _, optimizers = _build(p, "cpu", cell.run_seed, **tiny)
    gen = torch.Generator().manual_seed(cell.run_seed)
    batch = lambda: (torch.randint(0, 128, (2, 16), generator=gen),) * 2  # noqa: E731
    s = _settings(
        p, batch_size=2, seq_len=16, grad_accum=1, max_steps=1, max_tokens=0, max_seconds=0
    )
    s.warmup_steps, s.eval_interval, s.checkpoint_interval = 0, 0, 0
    out = train(model, optimizers, batch, s, device="cpu", log=lambda *a: None)
    if not math.isfinite(out["losses"][0]):
        raise RuntimeError(f"dry run of {cell.id}: non-finite loss {out['losses'][0]}")
    if unbatchable(p) is None:  # batching is on by default: its code path too, two models
        from .batched import BatchedGPT, train_batched

        bm = BatchedGPT(model, 2)
        two = train_batched(bm, _batch_optimizer([p, p], bm, "cpu"), batch, s, "cpu")
        if isinstance(two[0], Diverged):
            raise RuntimeError(f"dry run of {cell.id} in a batch: {two[0]}")
    return out["losses"][0]


# ---------------------------------------------------------------------------- batches


def batch_models(p, device, vocab_size, free_bytes=None):
    """How many models of params p train together in one step on this device: on a GPU
    those whose weights, gradients, optimizer states and one step's activations
    (gpt2.params.model_bytes) fit in 70% of the free memory; on the CPU
    gpt2.params.cpu_batch_models (1 for a model larger than CPU_BATCH_BYTES). Free
    includes what PyTorch's allocator keeps cached but no tensor holds: an earlier
    chunk's memory, which the device reports as used."""
    if not device.startswith("cuda"):
        return cpu_batch_models(p, vocab_size)
    if free_bytes is None:
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        free_bytes = torch.cuda.mem_get_info(device)[0] + cached
    return max(1, int(0.7 * free_bytes // model_bytes(p, vocab_size)))


def _batch_optimizer(ps, bm, device):
    """The batched optimizer of cells with params ps (one per model of bm): what may
    differ between them as [K] float64 tensors, the rest from the first."""
    from .batched import BatchedOptimizer

    p0 = ps[0]
    f64 = dict(dtype=torch.float64, device=device)
    column = lambda key: torch.tensor([float(p[key]) for p in ps], **f64)  # noqa: E731
    spec = OPTIMIZERS[p0["optimizer"]]
    hp = {k: column(k) if isinstance(spec.defaults[k], float) else p0[k] for k in spec.hp}
    hp["grad_clip"] = column("grad_clip")
    hp["muon_ns_bf16"] = newton_schulz_bf16(p0["precision"])
    lrs = {g: column(f"{g}_lr") for g in GROUPS}
    opt = BatchedOptimizer(p0["optimizer"], bm, lrs, hp, p0["train_groups"])
    if not opt.rules:
        raise ConfigError(
            "GPT2_TRAIN_GROUPS", "every parameter group is frozen", "train at least one group"
        )
    return opt


def _check_batch(cells):
    """Refuse cells that cannot train in one batch (run_batch, probe_batch)."""
    from .params import batch_key

    p0 = cells[0].params
    for c in cells:
        why = unbatchable(c.params)
        if why or batch_key(c.params, c.run_seed) != batch_key(p0, cells[0].run_seed):
            raise ValueError(f"cell {c.id} cannot train in a batch with {cells[0].id}: {why}")


def _batched_model(cells, td, device, cache):
    """(BatchedGPT, BatchedOptimizer) of the cells of one batch: the shared model built
    and initialised as run() builds it, stacked once per cell."""
    from .batched import COMPILE_BACKEND, BatchedGPT

    p0 = cells[0].params
    sizes = {k: p0[k] for k in ("n_layer", "n_head", "n_embd", "block_size")}
    config = config_from_preset(
        p0["model"],
        arch=p0["arch"],
        bias=p0.get("bias", True),
        grad_checkpoint=p0["grad_checkpoint"],
        vocab_size=_vocab(p0, td),
        **sizes,
    )
    model, _ = _model(config, device, cells[0].run_seed, cache)
    if p0.get("init_from"):
        model.load_state_dict(_init_weights(p0["init_from"]))
    bm = BatchedGPT(model, len(cells), compile_backend=COMPILE_BACKEND if p0["compile"] else None)
    return bm, _batch_optimizer([c.params for c in cells], bm, device)


def _batch_size(p, td, device):
    """K: how many models train in one step (the params' batch_models, or batch_models())."""
    return p.get("batch_models") or batch_models(p, device, _vocab(p, td))


def _run_alone(cell, ctx):
    """run() as a worker runs a cell alone: seeded first; a Diverged is an outcome."""
    seed_everything(cell.run_seed)
    try:
        return run(cell, ctx)
    except Diverged as e:
        return e


def run_batch(cells, ctxs):
    """Train cells that differ only in gpt2.batched.BATCHABLE knobs together, K models per
    step (K = the params' batch_models, or batch_models()); where K is 1, each cell by
    run() in turn. ctxs: one RunContext per cell (its log and directory). Returns one
    outcome per cell: what run() returns, or the Diverged it raises."""
    from .batched import train_batched

    p0, ctx0, device = cells[0].params, ctxs[0], ctxs[0].device
    _check_batch(cells)
    td = _token_data(p0, ctx0)
    K = _batch_size(p0, td, device)
    if K == 1:  # one model at a time: the one-model path, each cell seeded as a worker seeds it
        return [_run_alone(c, ctx) for c, ctx in zip(cells, ctxs)]
    if len(cells) > K:  # more than fit: in chunks of even size, one after another
        size = math.ceil(len(cells) / math.ceil(len(cells) / K))
        return run_batch(cells[:size], ctxs[:size]) + run_batch(cells[size:], ctxs[size:])
    started = time.perf_counter()
    knobs = runtime_knobs(device)
    bm, opt = _batched_model(cells, td, device, ctx0.cache)
    gen = torch.Generator().manual_seed(cells[0].run_seed)
    B, T = p0["batch_size"], p0["block_size"]
    val = _val_batches(td, p0, device)
    knobs.update(
        precision=p0["precision"],
        autocast_dtype=AUTOCAST_DTYPES[p0["precision"]],
        grad_scaler=False,
        compile=p0["compile"],
        grad_checkpoint=p0["grad_checkpoint"],
        check_numerics=False,
        detect_anomaly=False,
        fused_adamw=False,
        n_params=bm.model.num_params(),
        flops_per_token=bm.model.flops_per_token(T),
        dataset=getattr(td, "identity", None),
        batched_models=len(cells),
        batch=[c.id for c in cells],
    )
    for c, ctx in zip(cells, ctxs):
        ctx.log(
            f"gpt2 {c.id}: {knobs['n_params'] / 1e6:.2f}M params, one of {len(cells)} models "
            f"trained together, knobs {json.dumps(knobs, default=str)}"
        )
    setup_seconds = time.perf_counter() - started
    outcomes = train_batched(
        bm,
        opt,
        lambda: td.get_batch("train", B, T, gen, device),
        _settings(p0, extra={}),
        device=device,
        val_batches=val,
        logs=[ctx.log for ctx in ctxs],
    )
    ran_with = {"batch_size": B, "grad_accum": p0["grad_accum"], "oom_retries": 0}
    for out, ctx in zip(outcomes, ctxs):
        if isinstance(out, Diverged):
            out.metrics["setup_seconds"] = setup_seconds
            out.ran_with = ran_with
            continue
        out["knobs"] = knobs
        out["metrics"]["setup_seconds"] = setup_seconds
        out["ran_with"] = ran_with
        if ctx.tracker is not None:  # each cell's curve in its own W&B run, as run() logs it
            for row in out["history"]:
                ctx.tracker.log(row, step=row["step"])
    return outcomes


def probe_batch(cells, ctx, steps=5):
    """`make estimate` of a batch job: the time of the cells trained together as
    run_batch trains them, from a few real steps of the batch and one evaluation, scaled
    to the budget. run_batch trains more than K cells in chunks of K one after another:
    the answer times the first chunk and says how many cells it covers ("cells")."""
    from .batched import evaluate_batched, train_batched

    p0, device = cells[0].params, ctx.device
    _check_batch(cells)
    td = _token_data(p0, ctx)  # one-time preparation, before the clock starts
    cells = cells[: _batch_size(p0, td, device)]
    if len(cells) == 1:  # run_batch trains them one by one: time one cell of them
        return {**_probe_one(cells[0], ctx, steps), "cells": 1}
    started = time.perf_counter()
    bm, opt = _batched_model(cells, td, device, ctx.cache)
    gen = torch.Generator().manual_seed(cells[0].run_seed)
    B, T = p0["batch_size"], p0["block_size"]
    val = _val_batches(td, p0, device)
    stamps = []

    def batch():
        stamps.append(time.perf_counter())
        return td.get_batch("train", B, T, gen, device)

    s = _settings(p0, max_steps=steps + 1, max_tokens=0, max_seconds=0, extra={})
    s.warmup_steps, s.eval_interval, s.checkpoint_interval, s.log_interval = 0, 0, 0, 0
    train_batched(bm, opt, batch, s, device=device)  # models that diverge leave the batch
    eval_started = time.perf_counter()
    if val and bm.K:
        evaluate_batched(bm, val, p0["precision"], device)
    answer = _extrapolate(p0, started, stamps, time.perf_counter() - eval_started)
    return {**answer, "cells": len(cells)}
