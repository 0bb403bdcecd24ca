"""The training loop: budgets, schedule, accumulation, precision, eval, checkpoints.

`train()` knows nothing about Kconfig or cells: it takes a model, its optimizers, a batch
function and a TrainSettings, so tests and the benchmark drive it directly.
"""

import contextlib
import math
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from kmatrix.progress import report as report_progress
from kmatrix.errors import Diverged
from kmatrix.seeding import apply_profile

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .numerics import check_numerics
from .optim import set_lr
from .params import AUTOCAST_DTYPES


@dataclass
class TrainSettings:
    batch_size: int = 8  # sequences per micro-batch
    seq_len: int = 128  # tokens per sequence
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 0  # budgets: 0 = unlimited; training stops at the first one reached
    max_tokens: int = 0
    max_seconds: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"  # "cosine" | "constant"
    min_lr_frac: float = 0.1  # cosine decays to this fraction of the base lr
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16"
    eval_interval: int = 0  # steps between val evaluations; 0 = only at the end
    log_interval: int = 10
    checkpoint_interval: int = 0  # steps between checkpoints; 0 = never
    grad_scale_init: float = 2.0**16  # fp16 GradScaler's first loss scale (torch's default)
    check_numerics: bool = False  # check loss and gradients every step (see check_numerics)
    detect_anomaly: bool = False  # forward/backward in autograd anomaly mode (debugging)
    extra: dict = field(default_factory=dict)  # saved in checkpoints, must match to resume

    @property
    def tokens_per_step(self):
        return self.batch_size * self.seq_len * self.grad_accum


def configure_runtime(profile, device):
    """Apply a run profile (kmatrix.seeding.apply_profile) and gpt2's own runtime settings;
    returns the knobs. Outside a worker (tests, the benchmark): a worker applies the
    profile to every cell itself, and gpt2's run() calls runtime_knobs() alone.

    CUBLAS_WORKSPACE_CONFIG must be in the environment before CUDA initialises: the
    executor puts kmatrix.seeding.PROFILE_ENV into every worker's environment (the bench
    sets it itself); here it is only recorded.
    """
    return {**apply_profile(profile), **runtime_knobs(device)}


def runtime_knobs(device):
    """What only gpt2 sets (denormal flushing on CPU) and reads off torch (attention
    backends, the deterministic-memory fill): recorded in the result and manifest."""
    # Adam moves the embeddings of unseen tokens down by ~lr every step, so after a few
    # hundred steps their softmax probabilities underflow into denormals, which x86 CPUs
    # process ~10x slower; flushing them to zero changes no result that matters.
    flush = device == "cpu" and torch.set_flush_denormal(True)
    knobs = dict(
        device=device,
        fill_uninitialized_memory=torch.are_deterministic_algorithms_enabled()
        and torch.utils.deterministic.fill_uninitialized_memory,
        flush_denormal=bool(flush),
        torch=torch.__version__,
    )
    if device.startswith("cuda"):
        knobs["attention_backends"] = [
            name
            for name, on in (
                ("flash", torch.backends.cuda.flash_sdp_enabled()),
                ("mem_efficient", torch.backends.cuda.mem_efficient_sdp_enabled()),
                ("cudnn", torch.backends.cuda.cudnn_sdp_enabled()),
                ("math", torch.backends.cuda.math_sdp_enabled()),
            )
            if on
        ]
        knobs["gpu"] = torch.cuda.get_device_name(device)
    else:
        knobs["attention_backends"] = ["cpu"]
    return knobs


def autocast_context(precision, device):
    name = AUTOCAST_DTYPES[precision]
    if name is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=getattr(torch, name))


def lr_multiplier(step, s: TrainSettings, progress):
    """Linear warmup over warmup_steps, then constant or cosine down to min_lr_frac.

    `progress` in [0, 1] is how far through the budget we are: the largest fraction of the
    step, token or time budget used (time-based when wall clock is the only budget).
    """
    if step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    if s.schedule == "constant":
        return 1.0
    progress = min(max(progress, 0.0), 1.0)
    return s.min_lr_frac + (1 - s.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))


def budget_progress(step, tokens, elapsed, s: TrainSettings):
    """Fraction of the tightest budget used; None when no budget is set."""
    fractions = []
    if s.max_steps:
        fractions.append(step / s.max_steps)
    if s.max_tokens:
        fractions.append(tokens / s.max_tokens)
    if s.max_seconds:
        fractions.append(elapsed / s.max_seconds)
    return max(fractions) if fractions else None


def budget_spent(step, tokens, elapsed, s: TrainSettings):
    """Whether any budget set (steps, tokens, seconds) is used up."""
    return bool(
        s.max_steps
        and step >= s.max_steps
        or s.max_tokens
        and tokens >= s.max_tokens
        or s.max_seconds
        and elapsed >= s.max_seconds
    )


# ---------------------------------------------------------------------------- the loop


def peak_memory_mb(device):
    """Peak GPU memory allocated by tensors; on CPU the process's max resident set."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@torch.no_grad()
def evaluate(model, batches, precision, device):
    model.eval()
    total = torch.zeros((), device=device)
    for x, y in batches:
        with autocast_context(precision, device):
            _, loss = model(x, y)
        total += loss.float()
    model.train()
    return (total / len(batches)).item()


def train(
    model,
    optimizers,
    get_batch,
    s: TrainSettings,
    device="cpu",
    val_batches=None,
    raw_model=None,
    ckpt_path=None,
    data_generator=None,
    log=print,
    tracker=None,
    replica=None,
):
    """Train until a budget runs out; returns a result dict (see gpt2/workload.py).

    model:        the module to call (possibly torch.compile'd); raw_model: the plain module
                  whose state_dict is checkpointed (default: model)
    get_batch:    () -> (x, y) on device, one micro-batch
    val_batches:  list of (x, y) evaluated every eval_interval steps and at the end
    ckpt_path:    checkpoint file; resumed from when it exists and its settings match
    data_generator: torch.Generator behind get_batch, checkpointed so a resume draws the
                  same batches an uninterrupted run would
    replica:      a gpt2.ddp.Replica when `model` trains in a DDP process: gradients are
                  averaged over ranks once per step (no_sync before the last micro-batch),
                  the loss is the ranks' mean, and only rank 0 writes checkpoints
    Raises kmatrix.errors.Diverged on a non-finite loss, with the losses so far; with
    s.check_numerics also on a non-finite gradient (see check_numerics), after logging a
    table of the offending parameters. s.detect_anomaly runs forward and backward in torch's
    autograd anomaly mode: the backward op that makes a NaN raises RuntimeError (the cell
    fails) with the traceback of its forward op.
    """
    raw_model = raw_model or model
    if not (s.max_steps or s.max_tokens or s.max_seconds):
        raise ValueError("no budget: set max_steps, max_tokens or max_seconds")
    scaler = torch.amp.GradScaler(
        device.split(":")[0], init_scale=s.grad_scale_init, enabled=s.precision == "fp16"
    )
    params = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
    if s.check_numerics:
        names = {id(p): n for n, p in raw_model.named_parameters()}
        named_params = [(names.get(id(p), f"param{i}"), p) for i, p in enumerate(params)]
    step_tokens = s.tokens_per_step * (replica.world if replica else 1)  # every rank's
    step, tokens, elapsed = 0, 0, 0.0
    losses, val_losses, history = [], [], []

    if ckpt_path and Path(ckpt_path).exists():
        ck = load_checkpoint(ckpt_path)
        if ck.get("settings") == asdict(s):
            raw_model.load_state_dict(ck["model"])
            for opt, st in zip(optimizers, ck["optimizers"]):
                opt.load_state_dict(st)
            if ck["scaler"]:
                scaler.load_state_dict(ck["scaler"])
            step, tokens, elapsed = ck["step"], ck["tokens"], ck["elapsed"]
            losses, val_losses = list(ck["losses"]), [list(v) for v in ck["val_losses"]]
            set_rng_state(ck["rng"])
            if data_generator is not None and ck["data_rng"] is not None:
                data_generator.set_state(ck["data_rng"])
            log(f"resumed from {ckpt_path} at step {step}")
        else:
            log(f"ignoring checkpoint {ckpt_path}: written with other settings")

    def checkpoint():
        if replica is not None and replica.rank:
            return  # the ranks hold the same state: rank 0 writes it
        save_checkpoint(
            ckpt_path,
            {
                "model": raw_model.state_dict(),
                "optimizers": [opt.state_dict() for opt in optimizers],
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "step": step,
                "tokens": tokens,
                "elapsed": elapsed,
                "losses": losses,
                "val_losses": val_losses,
                "rng": rng_state(),
                "data_rng": data_generator.get_state() if data_generator is not None else None,
                "settings": asdict(s),
            },
        )

    def diverge(message, loss_value, at_step):
        metrics = {
            "steps": at_step + 1,
            "tokens": tokens,
            "final_train_loss": loss_value,
            "final_val_loss": val_losses[-1][1] if val_losses else None,
            "train_seconds": elapsed,
        }
        raise Diverged(message, metrics, losses=losses, val_losses=val_losses)

    def record_loss(loss_value, at_step):
        losses.append(loss_value)
        if not math.isfinite(loss_value):
            diverge(f"non-finite loss {loss_value} at step {at_step}", loss_value, at_step)

    def record_val(at_step):
        """A validation loss; a non-finite one means the run diverged, like a train loss."""
        value = evaluate(model, val_batches, s.precision, device)
        val_losses.append([at_step, value])
        if not math.isfinite(value):
            diverge(f"non-finite validation loss {value} at step {at_step}", losses[-1], step - 1)

    model.train()
    pending = None  # previous step's loss tensor: read one step late so the GPU never idles
    lrs = {}
    no_anomaly = contextlib.nullcontext()
    while not budget_spent(step, tokens, elapsed, s):
        t0 = time.perf_counter()
        progress = budget_progress(step, tokens, elapsed, s) or 0.0
        lrs = set_lr(optimizers, lr_multiplier(step, s, progress))
        loss_sum = torch.zeros((), device=device)
        for i in range(s.grad_accum):
            x, y = get_batch()
            # DDP: average the gradients once per step, in the last micro-batch's backward
            quiet = replica and i < s.grad_accum - 1
            with replica.module.no_sync() if quiet else contextlib.nullcontext():
                # GPT2_DETECT_ANOMALY: forward and backward in anomaly mode (restored on exit)
                with torch.autograd.set_detect_anomaly(True) if s.detect_anomaly else no_anomaly:
                    with autocast_context(s.precision, device):
                        _, loss = model(x, y)
                    loss = loss / s.grad_accum
                    loss_sum += loss.detach()
                    scaler.scale(loss).backward()
        if replica is not None:
            loss_sum = replica.mean(loss_sum)
        if pending is not None:
            record_loss(pending.item(), step - 1)
        if s.grad_clip or s.check_numerics:
            for opt in optimizers:
                scaler.unscale_(opt)  # once per step: the true gradients from here on
        if s.check_numerics:
            loss_value = loss_sum.item()
            problem = check_numerics(loss_value, named_params, scaler, step, log)
            if problem:
                losses.append(loss_value)
                diverge(problem, loss_value, step)
        if s.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        for opt in optimizers:
            scaler.step(opt)
        scaler.update()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        pending = loss_sum
        step += 1
        tokens += step_tokens
        elapsed += time.perf_counter() - t0
        if s.max_steps:  # the driver's heartbeat shows the budget spent
            report_progress(step, s.max_steps, "steps")
        elif s.max_tokens:
            report_progress(tokens, s.max_tokens, "tokens")

        last = budget_spent(step, tokens, elapsed, s)
        evaluating = bool(s.eval_interval and step % s.eval_interval == 0 and val_batches)
        printing = step == 1 or last or bool(s.log_interval and step % s.log_interval == 0)
        saving = bool(ckpt_path and s.checkpoint_interval and step % s.checkpoint_interval == 0)
        if last or evaluating or printing or saving:  # these synchronise anyway: flush the loss
            record_loss(pending.item(), step - 1)
            pending = None
        dt = time.perf_counter() - t0  # this step, before any evaluation
        if evaluating and not last:  # the last evaluation happens after the loop
            record_val(step)
        if printing:
            tps = step_tokens / dt
            row = {
                "step": step,
                "loss": losses[-1],
                "tokens_per_s": tps,
                "mfu": raw_model.estimate_mfu(tps, s.seq_len),
                "peak_mem_mb": peak_memory_mb(device),
                **{f"lr/{k}": v for k, v in lrs.items()},
            }
            history.append(row)
            if tracker is not None:
                tracker.log(row, step=step)
            log(
                f"step {step:5d} loss {row['loss']:.4f} lr {max(lrs.values()):.2e} "
                f"{tps:,.0f} tok/s mfu {row['mfu'] * 100:.1f}% mem {row['peak_mem_mb']:.0f} MiB"
            )
        if saving:
            checkpoint()

    if val_batches:
        record_val(step)
    tps_avg = tokens / elapsed if elapsed else 0.0
    metrics = {
        "final_train_loss": losses[-1] if losses else float("nan"),
        "final_val_loss": val_losses[-1][1] if val_losses else float("nan"),
        "tokens_per_s": tps_avg,
        "mfu": raw_model.estimate_mfu(tps_avg, s.seq_len),
        "peak_mem_mb": peak_memory_mb(device),
        "steps": step,
        "tokens": tokens,
        "train_seconds": elapsed,
    }
    if scaler.is_enabled():
        metrics["grad_scale"] = scaler.get_scale()
    return {
        "status": "ok",
        "metrics": metrics,
        "losses": losses,
        "val_losses": val_losses,
        "lrs": lrs,
        "history": history,
    }
