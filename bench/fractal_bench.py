"""Benchmark of the fractal engine: tanh, width 16, 272 points, float64, 1000 steps.

    .venv/bin/python bench/fractal_bench.py --out results/fractal_bench.json   # CUDA, ~5 min
    .venv/bin/python bench/fractal_bench.py --quick                            # CPU smoke test

On CUDA: a sweep over the Triton configurations (256 x 256, fewer steps) picks the fastest;
then pixel-steps/s of both backends at 256 x 256 and 1024 x 1024, the wall time of
4096 x 4096 with Triton, and the fraction of the float64 peak. Reference (DESIGN.md 8, JAX
notebook on an H200): 7.9 M pixel-steps/s at 256 x 256, 13.9 M at 1024 x 1024.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fractal.engine import EXPERIMENTS, OPENING_WINDOW, compute_image  # noqa: E402

N, D = EXPERIMENTS["tanh"]["n_points"], 16
REFERENCE = {256: 7.9e6, 1024: 13.9e6}  # JAX notebook, H200, pixel-steps/s


def flops_per_pixel_step(n=N, d=D):
    """Floating-point operations of one training step of one pixel, from the shapes."""
    count = {
        "x @ W0 (dot)": 2 * n * d * d,
        "X^T @ dZ (dot)": 2 * n * d * d,
        "scale a, phi'(h) = 1 - h^2": 3 * n * d,
        "y_hat = h . w1, dW1 = h^T r": 4 * n * d,
        "dZ = r * w1 * phi'": 2 * n * d,
        "residual, loss": 3 * n,
        "update W0, W1": 2 * (d * d + d),
    }
    dots = count["x @ W0 (dot)"] + count["X^T @ dZ (dot)"]
    return sum(count.values()), dots, count  # plus n*d tanh evaluations, not counted


def run(res, steps, backend, device, config=None):
    kw = dict(EXPERIMENTS["tanh"], window=OPENING_WINDOW, resolution=res, steps=steps)
    r = compute_image(**kw, device=device, backend=backend, triton_config=config)
    return {k: r[k] for k in ("runtime_s", "pixel_steps_per_s", "backend")} | {
        "resolution": res,
        "steps": steps,
        "converged_fraction": float(r["converged"].mean()),
        "triton_config": r.get("triton_config"),
    }


def _configs():
    """The sweep list. tl kernel: w0 and g0 are 16 x block_p*16 doubles each and every
    [bn, block_p*16] temporary as many again, spread over num_warps*32 threads at 2
    registers per double, so block_p and bn are bounded by num_warps; Triton on sm_90 needs
    K >= 16 in tl.dot, and bn is the K of the dW0 product: bn >= 16. The kernels are
    latency-bound at ~200 registers (2 warps per scheduler), so capping registers with
    maxnreg buys occupancy for a few spills to L1, and wins. Fastest on an H200
    (results/fractal_bench.json of commit 964f023, 256 x 256, 200 steps): Gluon at 168
    registers 71.4 M pixel-steps/s (68.2 M at 128, 69.2 M uncapped), the tl kernel at 128
    registers 55.9 M."""
    from fractal.triton_engine import Config

    return [
        Config(2, 16, 2, tanh="fast"),
        Config(2, 16, 2, tanh="fast", maxnreg=128),
        Config(4, 16, 4, tanh="fast", maxnreg=128),
        Config(2, 16, 2, tanh="libdevice", maxnreg=128),
        Config(1, 16, 1, tanh="fast", kernel="gluon"),
        Config(1, 16, 1, tanh="fast", maxnreg=128, kernel="gluon"),
        Config(1, 16, 1, tanh="fast", maxnreg=144, kernel="gluon"),
        Config(1, 16, 1, tanh="fast", maxnreg=168, kernel="gluon"),
        Config(1, 16, 1, tanh="libdevice", maxnreg=128, kernel="gluon"),
        Config(2, 16, 2, tanh="fast", maxnreg=168, kernel="gluon"),
    ]


def sweep(device, steps, res=256):
    rows = []
    configs = _configs()
    for cfg in configs:
        run(16, 2, "triton", device, cfg)  # compile
        row = run(res, steps, "triton", device, cfg)
        rows.append(row)
        print(f"  {cfg}: {row['pixel_steps_per_s'] / 1e6:8.1f} M pixel-steps/s", flush=True)
    best = max(range(len(rows)), key=lambda i: rows[i]["pixel_steps_per_s"])
    return configs[best], rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--peak-tflops", type=float, default=67.0, help="fp64 tensor-core peak")
    ap.add_argument(
        "--torch-1024-steps",
        type=int,
        default=100,
        help="steps of the (slow, memory-bound) torch run at 1024 x 1024",
    )
    ap.add_argument(
        "--max-4096-s",
        type=float,
        default=200.0,
        help="if 4096 x 4096 would take longer, run fewer steps and extrapolate",
    )
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--sweep-only", action="store_true", help="only the configuration sweep")
    args = ap.parse_args()

    cuda = args.device.startswith("cuda")
    total, dots, count = flops_per_pixel_step()
    out = {
        "device": torch.cuda.get_device_name(args.device) if cuda else "cpu",
        "torch": torch.__version__,
        "flops_per_pixel_step": total,
        "dot_flops_per_pixel_step": dots,
        "flop_count": count,
        "peak_tflops": args.peak_tflops,
        "runs": [],
    }
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    t_start = time.perf_counter()

    if args.quick or not cuda:
        # smoke mode: the torch engine on the CPU (triton too if TRITON_INTERPRET=1)
        for res in (16, 32):
            out["runs"].append(run(res, 20, "torch", args.device))
        if os.environ.get("TRITON_INTERPRET") == "1" and out["triton"]:
            out["runs"].append(run(4, 5, "triton", args.device))
    else:
        from fractal import triton_engine as te

        best = te.DEFAULT_CONFIG
        if not args.no_sweep:
            print("config sweep, 256 x 256, 200 steps:", flush=True)
            best, out["sweep"] = sweep(args.device, 200)
        out["best_config"] = best.__dict__
    if cuda and not args.quick and not args.sweep_only:
        run(16, 2, "torch", args.device)  # warm-up (cuBLAS handles, allocator)
        run(16, 2, "triton", args.device, best)
        for res, steps in [(256, args.steps), (1024, args.steps)]:
            out["runs"].append(run(res, steps, "triton", args.device, best))
            torch_steps = args.steps if res == 256 else args.torch_1024_steps
            out["runs"].append(run(res, torch_steps, "torch", args.device))
        rate = out["runs"][-2]["pixel_steps_per_s"]  # triton at 1024
        estimate = 4096 * 4096 * args.steps / rate
        steps = (
            args.steps
            if estimate <= args.max_4096_s
            else max(10, int(args.steps * args.max_4096_s / estimate))
        )
        r = run(4096, steps, "triton", args.device, best)
        r["wall_s_1000_steps"] = r["runtime_s"] * args.steps / steps
        r["extrapolated"] = steps != args.steps
        out["runs"].append(r)
    for r in out["runs"]:
        rate = r["pixel_steps_per_s"]
        r["tflops"] = rate * total / 1e12
        r["fraction_of_fp64_peak"] = rate * total / (args.peak_tflops * 1e12)
        r["dot_fraction_of_fp64_peak"] = rate * dots / (args.peak_tflops * 1e12)
        if r["resolution"] in REFERENCE and r["steps"] == 1000:
            r["speedup_vs_reference"] = rate / REFERENCE[r["resolution"]]
    out["bench_wall_s"] = time.perf_counter() - t_start

    print(f"\n{out['device']}, torch {out['torch']}, triton {out['triton']}")
    print(
        f"one pixel-step = {total / 1e3:.0f} K flop ({dots / 1e3:.0f} K in the two dots)"
        f" + {N * D} tanh; peak {args.peak_tflops} TFLOP/s"
    )
    print(
        f"{'res':>6} {'backend':>7} {'steps':>5} {'wall s':>8} {'M px-steps/s':>12} "
        f"{'TFLOP/s':>8} {'% peak':>6} {'x ref':>6}"
    )
    for r in out["runs"]:
        wall = r.get("wall_s_1000_steps", r["runtime_s"])
        mark = "*" if r.get("extrapolated") else ""
        print(
            f"{r['resolution']:>6} {r['backend']:>7} {r['steps']:>5} {wall:>7.2f}{mark:1}"
            f" {r['pixel_steps_per_s'] / 1e6:>12.3f} {r['tflops']:>8.2f}"
            f" {100 * r['fraction_of_fp64_peak']:>6.1f} {r.get('speedup_vs_reference', 0):>6.1f}"
        )
    if any(r.get("extrapolated") for r in out["runs"]):
        print("* wall time extrapolated to 1000 steps from a shorter run")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2, default=str)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
