"""GPT-2 124M training throughput through the workload's own training loop.

Setting of nanoGPT's bench.py: batch 16 x 1024, bf16 autocast, torch.compile, fused
AdamW, random tokens already on the GPU (no data loading, no W&B, no network). With
`--nanogpt DIR` (a checkout of github.com/karpathy/nanoGPT; not part of this project),
nanoGPT's own bench.py runs first, in the same invocation on the same GPU, with those
settings (`--batch_size=16 --real_data=False`), and every run is compared with it.
Measured runs:

  reference      nanoGPT's bench.py, unmodified (10 burn-in steps, 20 timed)
  adamw-nanogpt  nanoGPT bench.py's own settings: no biases, no gradient clipping; the
                 like-for-like comparison with the reference
  adamw-maxout   our GPT-2 defaults (biases, clipping at 1.0), profile maxout_speed
  muon-maxout    the same with Muon on the matrices: Muon's overhead
  adamw-repro    profile paper_repro (deterministic algorithms, no TF32)

Each run: warmup steps (compilation, autotuning) then `--iters` timed steps between two
cuda.synchronize() calls. Usage:

  python bench/gpt2_bench.py --nanogpt ../nanoGPT --out $OUT/gpt2_bench.json  # GPU, ~2 min
  python bench/gpt2_bench.py --quick --out /tmp/b.json      # CPU smoke test, tiny model
"""

import argparse
import hashlib
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix.manifest import write_bench_result  # noqa: E402
from kmatrix.seeding import PROFILE_ENV, seed_everything  # noqa: E402

# The bench runs without the executor, which sets PROFILE_ENV for workers: set it here,
# before CUDA initialises, for the deterministic (paper_repro) run.
for _key, _value in PROFILE_ENV["paper_repro"].items():
    os.environ.setdefault(_key, _value)

import torch  # noqa: E402

from gpt2.model import GPT, PEAK_FLOPS  # noqa: E402
from gpt2.presets import config_from_preset  # noqa: E402
from gpt2.optim import build_optimizers, default_hp, default_lrs  # noqa: E402
from gpt2.train import TrainSettings, configure_runtime, train  # noqa: E402

# name, optimizer, profile, biases, gradient clipping
RUNS = [
    ("adamw-nanogpt", "adamw", "maxout_speed", False, 0.0),
    ("adamw-maxout", "adamw", "maxout_speed", True, 1.0),
    ("muon-maxout", "muon", "maxout_speed", True, 1.0),
    ("adamw-repro", "adamw", "paper_repro", True, 1.0),
]


def measure(name, optimizer, profile, bias, grad_clip, a, device):
    seed_everything(0)
    knobs = configure_runtime(profile, device)
    if a.quick:
        config = config_from_preset(
            "tiny", n_layer=2, n_embd=64, block_size=a.seq_len, vocab_size=512, bias=bias
        )
    else:
        config = config_from_preset(a.model, block_size=a.seq_len, bias=bias)
    model = GPT(config).to(device)
    opts = build_optimizers(
        optimizer, model.param_groups(), default_lrs(optimizer), default_hp(optimizer)
    )
    runner = torch.compile(model) if a.compile else model
    x = torch.randint(
        0, min(50257, config.vocab_size), (a.batch_size, a.seq_len + 1), device=device
    )
    batch = (x[:, :-1].contiguous(), x[:, 1:].contiguous())
    s = TrainSettings(
        batch_size=a.batch_size,
        seq_len=a.seq_len,
        precision=a.precision,
        schedule="constant",
        grad_clip=grad_clip,
        log_interval=10**9,
    )
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    quiet = lambda *args: None  # noqa: E731

    s.max_steps = a.warmup  # compile + autotune + allocator warmup
    t0 = time.perf_counter()
    train(runner, opts, lambda: batch, s, device=device, raw_model=model, log=quiet)
    sync()
    warmup_s = time.perf_counter() - t0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    s.max_steps = a.iters
    sync()
    t0 = time.perf_counter()
    out = train(runner, opts, lambda: batch, s, device=device, raw_model=model, log=quiet)
    sync()
    dt = time.perf_counter() - t0
    tokens_per_s = a.iters * a.batch_size * a.seq_len / dt
    row = {
        "name": name,
        "optimizer": optimizer,
        "profile": profile,
        "bias": bias,
        "grad_clip": grad_clip,
        "ms_per_iter": 1000 * dt / a.iters,
        "tokens_per_s": tokens_per_s,
        "mfu": model.estimate_mfu(tokens_per_s, a.seq_len),
        "peak_mem_mb": out["metrics"]["peak_mem_mb"],
        "warmup_s": warmup_s,
        "final_loss": out["losses"][-1],
        "knobs": {k: knobs[k] for k in ("tf32", "deterministic_algorithms", "attention_backends")},
    }
    print(
        f"{name:14s} {row['ms_per_iter']:8.2f} ms/iter {tokens_per_s:12,.0f} tok/s "
        f"MFU {100 * row['mfu']:5.1f}% mem {row['peak_mem_mb']:8.0f} MiB (warmup {warmup_s:.0f} s)",
        flush=True,
    )
    del runner, model, opts, out
    if device == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()  # each run compiles under its own global settings
    return row


def nanogpt_reference(checkout, a):
    """Run nanoGPT's bench.py from `checkout` with this benchmark's batch and sequence
    length; its own printed time per iteration, as tokens per second."""
    bench = Path(checkout) / "bench.py"
    if not bench.is_file():
        raise SystemExit(f"--nanogpt {checkout}: no bench.py there (a nanoGPT checkout?)")
    sha256 = {
        f: hashlib.sha256((Path(checkout) / f).read_bytes()).hexdigest()[:16]
        for f in ("bench.py", "model.py")
    }
    args = [f"--batch_size={a.batch_size}", f"--block_size={a.seq_len}", "--real_data=False"]
    proc = subprocess.run(
        [sys.executable, "bench.py", *args], cwd=checkout, capture_output=True, text=True
    )
    found = re.findall(r"time per iteration: ([0-9.]+)ms", proc.stdout)
    if proc.returncode or not found:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise SystemExit(f"nanoGPT's bench.py failed (exit {proc.returncode}):\n{tail}")
    ms = float(found[-1])
    row = {
        "name": "reference",
        "what": "nanoGPT bench.py " + " ".join(args),
        "sha256": sha256,  # of the files run: which nanoGPT version this was
        "ms_per_iter": ms,
        "tokens_per_s": a.batch_size * a.seq_len / ms * 1000,
    }
    print(f"{'reference':14s} {ms:8.2f} ms/iter {row['tokens_per_s']:12,.0f} tok/s", flush=True)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="bench/results/gpt2_bench.json", help="JSON results file")
    p.add_argument("--quick", action="store_true", help="CPU smoke test: tiny model, few steps")
    p.add_argument("--model", default="124M", help="preset (tiny, 124M, 350M)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--warmup", type=int, default=15, help="untimed steps first (compilation)")
    p.add_argument("--iters", type=int, default=50, help="timed steps")
    p.add_argument("--runs", default=",".join(r[0] for r in RUNS), help="subset of run names")
    p.add_argument("--nanogpt", metavar="DIR", help="nanoGPT checkout: measure its bench.py")
    a = p.parse_args(argv)
    if a.quick:
        a.batch_size, a.seq_len, a.warmup, a.iters, a.compile = 4, 64, 1, 3, False
    device = "cuda" if torch.cuda.is_available() and not a.quick else "cpu"
    if device == "cuda":
        torch.cuda.init()

    reference = nanogpt_reference(a.nanogpt, a) if a.nanogpt else None
    rows = []
    for name, optimizer, profile, bias, grad_clip in RUNS:
        if name not in a.runs.split(","):
            continue
        try:
            rows.append(measure(name, optimizer, profile, bias, grad_clip, a, device))
        except Exception as e:  # one failing run (e.g. a kernel without a deterministic
            print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)  # version) is data
            rows.append(
                {
                    "name": name,
                    "optimizer": optimizer,
                    "profile": profile,
                    "error": f"{type(e).__name__}: {e}",
                }
            )
    by = {r["name"]: r for r in rows if "error" not in r}
    for r in by.values():  # > 1: faster than nanoGPT's bench.py in this run
        r["vs_reference"] = r["tokens_per_s"] / reference["tokens_per_s"] if reference else None
    ratio = lambda a_, b_: (
        by[a_]["ms_per_iter"] / by[b_]["ms_per_iter"] if a_ in by and b_ in by else None
    )  # noqa: E731
    result = {
        "benchmark": "gpt2_train_step",
        "device": (
            torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
        ),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "settings": {
            "model": "tiny" if a.quick else a.model,
            "batch_size": a.batch_size,
            "seq_len": a.seq_len,
            "precision": a.precision,
            "compile": a.compile,
            "warmup": a.warmup,
            "iters": a.iters,
            "peak_flops": PEAK_FLOPS,
        },
        "reference": reference,
        "runs": rows,
        "muon_overhead": ratio("muon-maxout", "adamw-maxout"),  # time ratio, 1.0 = free
        "paper_repro_cost": ratio("adamw-repro", "adamw-maxout"),
        "bias_and_clip_cost": ratio("adamw-maxout", "adamw-nanogpt"),
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bench_result(out, result)
    print(f"wrote {out}")
    return 0 if rows and all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
