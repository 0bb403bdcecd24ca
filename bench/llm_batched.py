"""Cells per second of an LLM map trained K models per step (gpt2/batched.py) against one
model per cell (gpt2/runner.run, what a worker runs without batching), same defconfig,
same process, K swept; the memory per model on a GPU.

    OMP_NUM_THREADS=1 python bench/llm_batched.py --defconfig fractal-16x16 --ks 1,4,16 \\
        --out cpu.json
    python bench/llm_batched.py --defconfig fractal-char-65x65-gpu --steps 300 \\
        --ks 16,64,256 --single 3 --out gpu.json

Cells are the defconfig's first grid points (differing learning rates, the shared seed);
each K trains K of them as one batch (setup included, as a worker's job). The one-model
rate is measured on --single cells, run one after another with the model kept between
them, as a worker does; its first cell (the model build, a compile) is left out of the
rate and reported on its own; so is the batched path's first job (its compile, with
GPT2_COMPILE). Results are saved after each K. Rates are per wall-clock second and, for a shared CPU
whose load changes under the run, per second of this process's CPU time. --vmap also times one forward and backward of
torch.func.vmap over functional_call against the batched module at the largest K.
--profile K runs one more batch of K models for --profile-steps steps under
torch.profiler and saves its operators' device (and CPU) time, largest first: where a
batched step's time goes.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gpt2 import runner  # noqa: E402
from kmatrix import kconfig  # noqa: E402
from kmatrix.cell import RunContext  # noqa: E402
from kmatrix.config import Config  # noqa: E402
from kmatrix.errors import Diverged  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402
from kmatrix.plan import plan  # noqa: E402
from kmatrix.seeding import apply_profile, seed_everything  # noqa: E402


def device_name(device):
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cells_of(defconfig, n, sets, tmp):
    values = kconfig.apply_defconfig(defconfig, dotconfig=Path(tmp) / ".config")
    cfg = Config(values).replace(**sets)
    cells = plan(cfg)
    # spread over the grid: every (len / n)-th point, so the batch holds both sides
    step = max(1, len(cells) // n)
    return cfg, [c for c in cells[::step]][:n]


def contexts(n, device, cache):
    ctxs = []
    for _ in range(n):
        ctx = RunContext(device=device, out_dir=Path("."), cache=cache)
        ctx.log = lambda *a: None
        ctxs.append(ctx)
    return ctxs


def diverged(outs):
    return sum(isinstance(o, Diverged) for o in outs)


def one_model_per_cell(cells, device, cache):
    """Seconds of each cell run by runner.run, one after another (a worker's cache)."""
    times, cpu = [], []
    for cell in cells:
        seed_everything(cell.run_seed)
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            runner.run(cell, contexts(1, device, cache)[0])
        except Diverged:
            pass
        sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def batched(cells, device, cache, k, compile_=None):
    for c in cells:
        c.params["batch_models"] = k
        if compile_ is not None:
            c.params["compile"] = compile_
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seed_everything(cells[0].run_seed)
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    outs = runner.run_batch(cells, contexts(len(cells), device, cache))
    sync(device)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = dict(k=k, cells=len(cells), seconds=seconds, cells_per_s=len(cells) / seconds)
    row["compiled"] = cells[0].params["compile"]
    row["cpu_seconds"], row["cells_per_cpu_s"] = cpu, len(cells) / cpu
    row["diverged"] = diverged(outs)
    if device.startswith("cuda"):
        row["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        row["mem_per_model_mb"] = row["peak_mem_mb"] / k
    return row


def profile_batch(cells, device, cache, k, steps, top=25):
    """One batch of k cells trained `steps` steps under torch.profiler: the job's wall
    and CPU time and its `top` operators by self device time (CPU time where no device is
    profiled). The rows hold both an operator (aten::bmm) and the kernels it launched,
    each with the same device time: read one level, do not add them up."""
    from torch.profiler import ProfilerActivity, profile

    for c in cells[:k]:
        c.params["batch_models"], c.params["max_steps"] = k, steps
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    seed_everything(cells[0].run_seed)
    sync(device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        runner.run_batch(cells[:k], contexts(k, device, cache))
        sync(device)
    seconds = time.perf_counter() - t0

    def dev(e):  # microseconds; the attribute's name changed across torch versions
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

    events = prof.key_averages()
    on_device = device.startswith("cuda")
    key = dev if on_device else (lambda e: e.self_cpu_time_total)
    rows = [
        {
            "op": e.key,
            "calls": e.count,
            "self_device_ms": dev(e) / 1e3,
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
        }
        for e in sorted(events, key=key, reverse=True)[:top]
    ]
    return {
        "k": k,
        "steps": steps,
        "seconds": seconds,
        "self_cpu_ms_total": sum(e.self_cpu_time_total for e in events) / 1e3,
        "top": rows,
    }


def vmap_against_module(cell, device, k, cache):
    """One forward + backward of k models: vmap(functional_call) against BatchedGPT."""
    from torch.func import functional_call, vmap

    from gpt2.batched import BatchedGPT
    from gpt2.presets import config_from_preset

    p = cell.params
    td = runner._token_data(p, contexts(1, device, cache)[0])
    sizes = {key: p[key] for key in ("n_layer", "n_head", "n_embd", "block_size")}
    config = config_from_preset(
        p["model"], arch=p["arch"], bias=p["bias"], vocab_size=runner._vocab(p, td), **sizes
    )
    with torch.device(device):
        model = runner.GPT(config)
    bm = BatchedGPT(model, k)
    gen = torch.Generator().manual_seed(0)
    x, y = td.get_batch("train", p["batch_size"], p["block_size"], gen, device)

    def loss_vmap():
        f = lambda params, x, y: functional_call(model, params, (x, y))[1]  # noqa: E731
        return vmap(f, in_dims=(0, None, None))(bm.params, x, y)

    out = {}
    for name, fn in (("vmap", loss_vmap), ("module", lambda: bm.losses(x, y))):
        times = []
        for _ in range(4):
            sync(device)
            t0 = time.perf_counter()
            fn().sum().backward()
            sync(device)
            times.append(time.perf_counter() - t0)
            for q in bm.params.values():
                q.grad = None
        out[f"{name}_s"] = min(times[1:])
    out["module_speedup"] = out["vmap_s"] / out["module_s"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defconfig", default="fractal-16x16")
    ap.add_argument("--ks", default="1,4,16", help="batch sizes K to sweep")
    ap.add_argument("--single", type=int, default=4, help="cells run one model per cell")
    ap.add_argument("--steps", type=int, default=0, help="GPT2_MAX_STEPS (0: the defconfig's)")
    ap.add_argument("--precision", default="", help="fp32 or bf16 (default: the defconfig's)")
    ap.add_argument("--vmap", action="store_true", help="also time vmap against the module")
    ap.add_argument(
        "--eager-ks", default="", help="also these K batched without torch.compile (GPT2_COMPILE=n)"
    )
    ap.add_argument("--profile", type=int, default=0, help="profile one batch of this K")
    ap.add_argument("--profile-steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--set", action="append", default=[], help="KEY=VALUE config overrides (a dry run)"
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    knobs = apply_profile("paper_repro")
    ks = [int(k) for k in args.ks.split(",")]
    sets = {"exec_gpus": ["none"], "track_wandb": "disabled"}
    if args.steps:
        sets["gpt2_max_steps"] = args.steps
    for kv in args.set:  # e.g. gpt2_n_layer=1: a CPU dry run of the GPU's command
        key, value = kv.split("=", 1)
        sets[key.lower()] = json.loads(value) if value[:1].isdigit() else value
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"llm_batched_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    cfg, cells = cells_of(args.defconfig, max(ks + [args.single + 1, args.profile]), sets, tmp)
    if args.precision:
        for c in cells:
            c.params["precision"] = args.precision
    cache = {}
    p = cells[0].params
    result = {
        "defconfig": args.defconfig,
        "device": device_name(args.device),
        "torch": torch.__version__,
        "profile": "paper_repro",
        "deterministic": knobs.get("deterministic"),
        "model": {k: p[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "arch")},
        "tokenizer": p["data"].get("tokenizer", "gpt2"),
        "optimizer": p["optimizer"],
        "precision": p["precision"],
        "compile_one_model": p["compile"],
        "steps": p["max_steps"],
        "tokens_per_step": p["batch_size"] * p["block_size"] * p["grad_accum"],
        "threads": torch.get_num_threads(),  # a CPU worker's: OMP_NUM_THREADS=1 on 2 cores
        "load_avg_1m_before": os.getloadavg()[0],
    }
    print(json.dumps(result), flush=True)
    times, cpu = one_model_per_cell(cells[: args.single + 1], args.device, cache)
    rate, cpu_rate = args.single / sum(times[1:]), args.single / sum(cpu[1:])
    result["one_model_per_cell"] = {
        "cells": args.single,
        "first_cell_s": times[0],
        "seconds_per_cell": sum(times[1:]) / args.single,
        "cells_per_s": rate,
        "cpu_seconds_per_cell": sum(cpu[1:]) / args.single,
        "cells_per_cpu_s": cpu_rate,
    }
    print(json.dumps(result["one_model_per_cell"]), flush=True)
    cache.pop("gpt2.model", None)  # the compiled one-model graph: not the batch's memory
    write_bench_result(Path(args.out), result)  # saved as each stage ends: a run cut short
    # keeps what finished
    # The batch's first job pays for its compile (or, eager, the kernels' first launch), as
    # the one model's first cell does: timed on its own, left out of the rates below. K is
    # a dynamic size of the compiled graphs, so every K after it reuses them.
    first = batched(cells[: min(ks)], args.device, cache, min(ks))
    result["batched_first_job"] = first
    print(json.dumps({"batched_first_job": first}), flush=True)
    rows = []
    eager_ks = [int(k) for k in args.eager_ks.split(",") if k]
    for k, compile_ in [(k, None) for k in ks] + [(k, False) for k in eager_ks]:
        try:
            row = batched(cells[:k], args.device, cache, k, compile_)
        except torch.OutOfMemoryError as e:  # record it; smaller K still count
            row = dict(k=k, out_of_memory=str(e).splitlines()[0], cells_per_s=0.0)
            row["compiled"] = cells[0].params["compile"]
            torch.cuda.empty_cache()
        row["speedup"] = row["cells_per_s"] / rate
        if "cells_per_cpu_s" in row:  # the CPU time: what a loaded machine does not change
            row["cpu_time_speedup"] = row["cells_per_cpu_s"] / cpu_rate
        rows.append(row)
        print(json.dumps(row), flush=True)
        result["batched"] = rows
        result["best_speedup"] = max(r["speedup"] for r in rows)
        write_bench_result(Path(args.out), result)
    if args.vmap:
        try:
            vm = vmap_against_module(cells[0], args.device, max(ks), cache)
        except RuntimeError as e:  # on CUDA vmap's attention backward can fail outright
            vm = {"vmap_error": f"{type(e).__name__}: {e}".splitlines()[0]}
        result["vmap_against_module"] = {"k": max(ks), **vm}
        print(json.dumps(result["vmap_against_module"]), flush=True)
    if args.profile:
        result["profile"] = profile_batch(
            cells, args.device, cache, args.profile, args.profile_steps
        )
        print(json.dumps(result["profile"], indent=1), flush=True)
    write_bench_result(Path(args.out), result)


if __name__ == "__main__":
    main()
