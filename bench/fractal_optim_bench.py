"""Pixel-steps per second of the fractal engine per optimizer, beside plain gradient
descent in the same run: the tanh experiment (272 points, float64) on the opening window
at 1024 x 1024, every pixel training every step (no early exit).

    python3 bench/fractal_optim_bench.py --out bench/results/fractal_optim_bench.json
    python bench/fractal_optim_bench.py --quick        # CPU smoke test (16 x 16, torch)

Rows: gradient descent in the default kernel (Gluon) and in the tl kernel at the
optimizers' launch configuration; momentum, Nesterov, Adam, AdamW and RMSprop in the tl
kernel; Muon (and, as its baseline, gradient descent) on the torch backend; Adam at a few
other launch configurations. Each row is timed after a small warm-up image that compiles
its kernel. The target: the kernel's optimizers at >= half the gradient-descent rate.
"""

import argparse
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fractal.common import EXPERIMENTS, OPENING_WINDOW  # noqa: E402
from fractal.engine import compute_image  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402


def rows(quick):
    """(label, optimizer, backend, triton Config or None, steps)."""
    if quick:
        return [(f"{o}/torch", o, "torch", None, 10) for o in ("gd", "adam", "muon")]
    from fractal import triton_engine as te

    kernel_steps, torch_steps = 100, 10  # the rate per step is constant without early exit
    out = [
        ("gd/gluon", "gd", "triton", te.DEFAULT_CONFIG, kernel_steps),
        ("gd/tl", "gd", "triton", te.OPT_CONFIG, kernel_steps),
        ("gd/tl-portable", "gd", "triton", te.PORTABLE_CONFIG, kernel_steps),
    ]
    for opt in ("momentum", "nesterov", "adam", "adamw", "rmsprop"):
        out.append((f"{opt}/tl", opt, "triton", te.OPT_CONFIG, kernel_steps))
    for cfg in (te.Config(2, 16, 2, tanh="fast", maxnreg=0), te.Config(1, 16, 1, tanh="fast")):
        label = f"adam/tl-p{cfg.block_p}-w{cfg.num_warps}-r{cfg.maxnreg}"
        out.append((label, "adam", "triton", cfg, kernel_steps))
    out += [(f"{o}/torch", o, "torch", None, torch_steps) for o in ("gd", "adam", "muon")]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/fractal_optim_bench.json")
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and not args.quick
    device = "cuda" if cuda else "cpu"
    n = args.resolution if not args.quick else 16
    kw = dict(EXPERIMENTS["tanh"], window=OPENING_WINDOW, device=device, early_exit="none")
    commit = (
        os.environ.get("KMATRIX_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )  # a copied tree (the lent GPU's) names its commit in KMATRIX_COMMIT
    out = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "commit": commit or None,
        "experiment": "tanh, opening window, float64, no early exit",
        "resolution": n,
        "rows": [],
    }
    if cuda:
        import triton

        out["triton"] = triton.__version__
    started = time.perf_counter()
    for label, opt, backend, cfg, steps in rows(args.quick):
        extra = dict(optimizer=opt, backend=backend, triton_config=cfg)
        compute_image(**kw, **extra, resolution=8, steps=3)  # compiles the kernel
        res = compute_image(**kw, **extra, resolution=n, steps=steps)
        row = {
            "label": label,
            "optimizer": opt,
            "backend": res["backend"],
            "steps": steps,
            "runtime_s": res["runtime_s"],
            "pixel_steps_per_s": res["pixel_steps_per_s"],
            "converged_fraction": float(res["converged"].mean()),
            "triton_config": res.get("triton_config"),
        }
        out["rows"].append(row)
        print(f"{label:28s} {row['pixel_steps_per_s']:.3e} pixel-steps/s "
              f"({row['runtime_s']:.2f} s, converged {row['converged_fraction']:.3f})",
              flush=True)  # fmt: skip
    rate = {r["label"]: r["pixel_steps_per_s"] for r in out["rows"]}
    if cuda:
        out["ratio_to_gd_gluon"] = {k: v / rate["gd/gluon"] for k, v in rate.items()}
        out["ratio_to_gd_tl"] = {k: v / rate["gd/tl"] for k, v in rate.items()}
    out["bench_wall_s"] = time.perf_counter() - started
    write_bench_result(args.out, out)


if __name__ == "__main__":
    main()
