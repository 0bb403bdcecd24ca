"""The gpt2 workload's configuration -> cell parameters, and the checks on them.

Learning rates per parameter group (the keys a sweep can override) are resolved in
cell_params:

    matrix_lr      = the optimizer's lr             (ADAMW_LR, MUON_LR, SGD_LR, LION_LR)
    embedding_lr   = aux lr x GPT2_EMBEDDING_LR_SCALE
    unembedding_lr = aux lr x GPT2_UNEMBEDDING_LR_SCALE
    vector_lr      = aux lr                        (biases, LayerNorm gains)

where the aux lr is ADAMW_LR for Muon (its non-matrix groups run AdamW) and the
optimizer's own lr otherwise. All are absolute learning rates at the schedule's peak.
Nothing here imports torch: planning a large matrix stays fast.
"""

import json
from pathlib import Path

from kmatrix.errors import ConfigError

from .optim import GROUPS, OPTIMIZERS
from .presets import GPT2_VOCAB, PRESETS, pad_vocab
from .sources import check_data

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}  # torch dtype names
_PRESETS = {k.lower(): k for k in PRESETS}  # the config generator lower-cases choice values


def axes(cfg):
    return [
        ("optimizer", list(cfg.optimizers), "OPTIMIZER_*"),
        ("precision", list(cfg.precisions), "PRECISION_*"),
        ("seed", list(cfg.seeds), "SEEDS"),
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
    """What the configuration alone can refuse. Ranges and domains of single values are
    Kconfig's and the generator's; sweep axes are the planner's; GPUs are preflight's."""
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
            f"{total} tokens is not a multiple of one micro-batch "
            f"({cfg.gpt2_batch_size} x {sz['block_size']} = {micro})",
            f"use a multiple of {micro}, or 0",
        )
    ddp = cfg.get("gpt2_ddp_gpus") or 1
    if (total // micro if total else 1) % ddp:
        raise ConfigError(
            "GPT2_DDP_GPUS",
            f"{ddp} processes cannot share the {total // micro if total else 1} "
            f"micro-batch(es) of a step evenly",
            f"set GPT2_TOTAL_BATCH_TOKENS to a multiple of {ddp} x {micro} tokens, or lower "
            "GPT2_DDP_GPUS",
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
    if "sgd" in cfg.optimizers and cfg.get("sgd_nesterov") and not cfg.get("sgd_momentum"):
        raise ConfigError(
            "SGD_NESTEROV",
            "Nesterov needs a momentum > 0",
            "set SGD_MOMENTUM or disable SGD_NESTEROV",
        )
    for name in cfg.optimizers:  # every hyperparameter the optimizer reads must be set
        for key in OPTIMIZERS[name].defaults:
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
        "part": cfg.get("gpt2_data_part") or "all",
        "tokenizer": cfg.get("gpt2_tokenizer") or "gpt2",
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
        # 0: the data's (the corpus' characters), known once it is prepared
        "vocab_size": pad_vocab(GPT2_VOCAB) if cfg.get("gpt2_tokenizer") != "char" else 0,
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
        "oom_min_batch": cfg.get("gpt2_oom_min_batch", 1),
        "ddp_gpus": cfg.get("gpt2_ddp_gpus") or 1,
        "check_numerics": bool(cfg.get("gpt2_check_numerics")),
        "detect_anomaly": bool(cfg.get("gpt2_detect_anomaly")),
        "data": _data_source(cfg),
        "data_dir": cfg.gpt2_data_dir,
        "init_from": cfg.get("gpt2_init_from") or "",
    }


def sweep_symbol(cfg, name, point):
    """The Kconfig symbol whose domain a swept hyperparameter must keep (kmatrix.plan):
    a learning rate's is its optimizer's lr symbol; others are named gpt2_<name>."""
    spec = OPTIMIZERS[point["optimizer"]]
    lrs = {"matrix_lr": spec.lr, "embedding_lr": spec.aux_lr, "unembedding_lr": spec.aux_lr}
    symbol = lrs.get(name) or {"vector_lr": spec.aux_lr}.get(name)
    if symbol is None:
        symbol = name if name in spec.defaults else f"gpt2_{name}"
    return symbol.upper()


# ---------------------------------------------------------------------------- batches

BATCHED_OPTIMIZERS = ("adamw", "muon", "sgd", "lion")  # those with a step in gpt2/batched.py
# Cell params that may differ between the models of one batch: the per-group learning
# rates, every float hyperparameter of the optimizers, the clip norm, and the labels'
# settings (read after training). Anything else (shape, optimizer, precision, budget,
# seed, booleans such as Nesterov, Newton-Schulz steps) must be equal.
BATCHABLE = (
    {f"{g}_lr" for g in GROUPS}
    | {"grad_clip", "trainable_window", "trainable_threshold"}
    | {
        k
        for spec in OPTIMIZERS.values()
        for k, v in spec.defaults.items()
        if isinstance(v, float) and k not in (spec.lr, spec.aux_lr)
    }
)


def unbatchable(p):
    """Why a cell with params p cannot train in a batch (None: it can)."""
    if p.get("optimizer") not in BATCHED_OPTIMIZERS:
        return f"optimizer {p.get('optimizer')!r} has no batched step"
    if p.get("precision") not in ("fp32", "bf16"):
        return f"precision {p.get('precision')} (fp16's loss scale is per model)"
    if (p.get("ddp_gpus") or 1) > 1:
        return f"it trains over {p['ddp_gpus']} GPUs (DDP)"
    for knob in ("checkpoint_interval", "check_numerics", "detect_anomaly"):
        if p.get(knob):
            return f"{knob} is set"
    return None


def batch_key(p, run_seed):
    """Cells with equal keys can train in one batch: everything but BATCHABLE is equal."""
    return json.dumps(
        [run_seed, {k: v for k, v in p.items() if k not in BATCHABLE}], sort_keys=True
    )


# The head and the loss of a batch run in chunks of HEAD_CHUNK_ELEMENTS / V tokens (a power
# of two): the [K, B*T, V] logits of a 50,304-token vocabulary are 1.6 GB per model in fp32
# for 8,192 tokens, and autograd would keep them, their fp32 copy and the log-softmax (the
# memory that ran K = 16 out on an 80 GB card). The chunk does not depend on K, so a
# model's loss and gradients are the same whatever the batch it trains in.
HEAD_CHUNK_ELEMENTS = 2**25


def head_chunk(n_tokens, vocab):
    chunk = 1 << max(0, (HEAD_CHUNK_ELEMENTS // vocab).bit_length() - 1)
    return min(n_tokens, chunk)


def model_bytes(p, vocab_size):
    """Bytes one model of params p holds in a batched training step: weights, gradients and
    two optimizer states (fp32), the saved activations of each layer, and one chunk of the
    head's logits with their softmax and gradient (fp32)."""
    C, L, V = p["n_embd"], p["n_layer"], vocab_size
    n_params = L * 12 * C * C + 2 * V * C + p["block_size"] * C
    tokens = p["batch_size"] * p["block_size"]
    return 4 * (4 * n_params + tokens * L * 24 * C + 3 * head_chunk(tokens, V) * V)


# On a CPU, K models per step pay only for the smallest models. A CPU step is bound by the
# bytes it streams, not by kernel launches, and K models stream K times as many; one
# model's step gains only where its operations are too small to keep the core busy.
# Measured on the 2-core machine, one thread a worker, each against one model per cell in
# the same run (bench/results/llm_batched_cpu_*.json): the 2-layer character-level model
# (about 6 MB a model) gained 1.09-1.16x at K = 2 and 4 and nothing by K = 16; the
# flagship's model (175 MB, most of it the 50,304-token head and embedding) ran 0.59-0.72x
# at every K; the 4-layer character model of width 128 (218 MB, most of it activations)
# 0.91-0.99x. So a CPU batch holds at most CPU_BATCH_BYTES of models, and a model larger
# than that trains alone.
CPU_BATCH_BYTES = 32 * 2**20
CPU_MAX_MODELS = 16


def cpu_batch_models(p, vocab_size):
    """How many models of params p train together on a CPU: 1 means each alone."""
    return max(1, min(CPU_MAX_MODELS, CPU_BATCH_BYTES // model_bytes(p, vocab_size)))


# A character vocabulary's size is known only once a worker reads the corpus; the driver
# sizes CPU batches with this stand-in (Shakespeare has 85 characters). Where the corpus
# has more, a job may hold more cells than fit CPU_BATCH_BYTES: the worker, which knows
# the vocabulary, then trains it in chunks (run_batch).
CHAR_VOCAB_BOUND = 256


def batch_limit(p, device_kind):
    """The most cells of params p worth one batch job on a "cpu" or "gpu" worker (None: no
    limit of the workload's own; on a GPU the worker trains a job in chunks that fit its
    free memory)."""
    if device_kind != "cpu":
        return None
    return cpu_batch_models(p, p["vocab_size"] or CHAR_VOCAB_BOUND)


def check_precisions(precisions, gpus):
    """fp16 needs a GPU; bf16 needs one of compute capability 8.0 or newer (or the CPU)."""
    if not gpus:
        if "fp16" in precisions:
            raise ConfigError(
                "PRECISION_FP16",
                "fp16 autocast with GradScaler needs a GPU, and this matrix runs on the CPU",
                "deselect PRECISION_FP16 (bf16 and fp32 run on the CPU) or run on a GPU",
            )
        return
    import torch

    for g in gpus:
        major, minor = torch.cuda.get_device_capability(g)
        if "bf16" in precisions and major < 8:
            raise ConfigError(
                "PRECISION_BF16",
                f"GPU {g} ({torch.cuda.get_device_name(g)}, sm_{major}{minor}) has no bf16",
                "deselect PRECISION_BF16 or use an Ampere or newer GPU",
            )


def init_checkpoint(source):
    """The checkpoint file GPT2_INIT_FROM names (a checkpoint.pt, or a gpt2 cell directory
    holding one); a ConfigError if there is none."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise ConfigError(
            "GPT2_INIT_FROM",
            f"no checkpoint at {path} (from {Path.cwd()})",
            "train that model first (for the fine-tuning grids: `make "
            "defconfig-fractal-ft-pretrain && make`), or name a checkpoint.pt or a cell "
            "directory run with GPT2_CHECKPOINT_INTERVAL > 0",
        )
    return path


def preflight(cfg, cells, gpus):
    """Before any cell runs (kmatrix.preflight): the precisions on these GPUs (or the CPU),
    the sizes of every cell (sweeps and presets resolved) and every distinct data source,
    offline included."""
    ddp = max((c.params.get("ddp_gpus") or 1 for c in cells), default=1)
    if gpus and ddp > len(gpus):
        raise ConfigError(
            "GPT2_DDP_GPUS",
            f"each cell trains over {ddp} GPUs, and this machine has {len(gpus)} "
            f"(EXEC_GPUS: {' '.join(map(str, gpus))})",
            f"set GPT2_DDP_GPUS to at most {len(gpus)}, or run on a machine with {ddp} GPUs",
        )
    check_precisions({c.params["precision"] for c in cells if "precision" in c.params}, gpus)
    for source in sorted({c.params.get("init_from") or "" for c in cells} - {""}):
        init_checkpoint(source)
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
