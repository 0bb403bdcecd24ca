"""Benchmark of the fractal engine against the JAX port of the paper's notebook, in one run.

    python3 bench/fractal_bench.py --jax-ref --out bench/results/fractal_bench.json
    .venv/bin/python bench/fractal_bench.py --quick          # CPU smoke test, no reference

Sections, each on CUDA unless --quick (the tanh experiment, width 16, 272 points, float64,
1000 steps, unless said):

- reference: the JAX port of the notebook's training loop (bench/sd_jax.py: jitted, vmapped
  over pixels, chunks of at most 50,000 pixels; --jax-ref FILE takes another), on the opening
  window at 256 x 256 (1000 steps) and 1024 x 1024 (--ref-1024-steps, its rate per step
  is constant), with our seeded data; the signs of its 256 x 256 image against ours.
- engine: whole-image pixel-steps/s (pixels x steps / wall time) of the default kernel at
  256 and 1024 on the opening window and on deep tanh frames (the notebook's data, the
  paper's tanh panel and 2^10 deeper), without early exit and with the exact one; the
  speed-up over the reference measured above.
- threshold: the threshold exit against the exact one on all six experiments (notebook
  data, the paper's steps, 257 x 257) at the opening window, the paper's panel and 2^10
  deeper: pixels whose sign or value changed, pixel-steps saved.
- scale: each experiment's paper-panel frame at 257 and 1025 pixels, to scale the
  fractal-paper defconfig's wall time to 1025 x 1025.
- sweep (--sweep): the Triton launch configurations at 256 x 256, 200 steps.
"""

import argparse
import importlib.util
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fractal import notebook, zoom  # noqa: E402
from fractal.common import WIDTH  # noqa: E402
from fractal.common import EXPERIMENTS, OPENING_WINDOW  # noqa: E402
from fractal.engine import compute_image  # noqa: E402
from fractal.problem import make_problem  # noqa: E402
from kmatrix.kconfig import load_kconfig  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402

N, D = EXPERIMENTS["tanh"]["n_points"], WIDTH
_KCONFIG = load_kconfig()
PAPER_STEPS = {  # the paper's steps per experiment: FRACTAL_STEPS_<NAME>'s defaults
    name: int(_KCONFIG.syms[f"FRACTAL_STEPS_{name.upper()}"].defaults[0][0].name)
    for name in EXPERIMENTS
}


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


def run(res, steps, device, name="tanh", window=OPENING_WINDOW, grid=None, **kw):
    """compute_image, timed after a tiny run of the same kernel (its compilation)."""
    e = EXPERIMENTS[name]
    compute_image(**e, window=OPENING_WINDOW, resolution=4, steps=2, device=device, **kw)
    place = dict(grid=grid) if grid is not None else dict(window=window, resolution=res)
    r = compute_image(**e, **place, steps=steps, device=device, **kw)
    return r, {
        "experiment": name,
        "resolution": res,
        "steps": steps,
        "runtime_s": r["runtime_s"],
        "pixel_steps_per_s": r["pixel_steps_per_s"],
        "pixel_steps_trained_fraction": r["pixel_steps"] / (res * res * steps),
        "backend": r["backend"],
        "early_exit": r["early_exit"],
        "converged_fraction": float(r["converged"].mean()),
        "triton_config": r.get("triton_config"),
    }


def sweep(device, steps, res=256):
    rows, configs = [], _configs()
    for cfg in configs:
        _, row = run(res, steps, device, backend="triton", triton_config=cfg, early_exit="none")
        rows.append(row)
        print(f"  {cfg}: {row['pixel_steps_per_s'] / 1e6:8.1f} M pixel-steps/s", flush=True)
    best = max(range(len(rows)), key=lambda i: rows[i]["pixel_steps_per_s"])
    return configs[best].__dict__, rows


def reference(path, device, ref_1024_steps):
    """The JAX port at 1024 (ref_1024_steps) and 256 (1000 steps, twice: the faster) on the
    opening window, our seeded data, after a run at 256 with ref_1024_steps steps (the
    compilation of every shape the 1024 run uses: chunks of 32768 pixels); returns (rows,
    the 256 x 256 image)."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave memory to torch
    spec = importlib.util.spec_from_file_location("sd_jax_ref", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    import jax

    p = make_problem(n_points=N, steps=1)
    X, Y = p["X"].numpy(), p["Y"].numpy()
    theta = [p["W0"].numpy(), p["W1"].numpy()[:, None]]
    exp = ref.Experiment(**ref.EXPERIMENTS["tanh"])
    mnmx = [OPENING_WINDOW[2], OPENING_WINDOW[3], OPENING_WINDOW[0], OPENING_WINDOW[1]]
    ref.timed_gen_img(exp, mnmx, 256, X=X, Y=Y, theta=theta, num_steps=ref_1024_steps)
    rows, image = [], None
    for res, steps in [(1024, ref_1024_steps), (256, 1000), (256, 1000)]:
        V, wall = ref.timed_gen_img(exp, mnmx, res, X=X, Y=Y, theta=theta, num_steps=steps)
        rows.append(
            {"resolution": res, "steps": steps, "runtime_s": wall,
             "pixel_steps_per_s": res * res * steps / wall}
        )  # fmt: skip
        if res == 256:
            image = V
        print(f"  JAX {res}: {rows[-1]['pixel_steps_per_s'] / 1e6:.2f} M pixel-steps/s", flush=True)
    devices = [str(d) for d in jax.devices()]
    if rows[1]["pixel_steps_per_s"] > rows[2]["pixel_steps_per_s"]:
        rows[1], rows[2] = rows[2], rows[1]
    rows[1]["note"] = "the slower of two runs (the first compiles the loss readout)"
    return {"jax": jax.__version__, "devices": devices, "runs": rows}, image


def deep_tanh_grids(res):
    """The paper's tanh panel and a frame 2^10 deeper, centred on the panel's centre."""
    x, y, width, _ = zoom.PAPER_PANELS["tanh"]
    return {
        "paper tanh panel (7.7e-7 decades)": zoom.frame_grid((x, y), width, 0, res),
        "2^10 deeper (7.6e-10 decades)": zoom.frame_grid((x, y), width, 10, res),
    }


def engine_section(device, ref_rates):
    """At 256: every place with and without the exit; at 1024 the opening window both ways
    and the deepest frame with the exit (without it, its rate is the opening window's)."""
    out = []
    tanh_data = notebook.problem_arrays(N, "full")
    for res in (256, 1024):
        places = [("opening window", dict(window=OPENING_WINDOW), None)]
        places += [(k, dict(grid=g), tanh_data) for k, g in deep_tanh_grids(res).items()]
        if res == 1024:
            places = [places[0], places[2]]
        for where, place, data in places:
            for mode in ("none", "nonfinite") if res == 256 or not data else ("nonfinite",):
                _, row = run(res, 1000, device, **place, data=data, early_exit=mode)
                row["where"] = where
                if where == "opening window" and res in ref_rates:
                    row["speedup_vs_reference"] = row["pixel_steps_per_s"] / ref_rates[res]
                out.append(row)
                print(
                    f"  {res} {where:34s} exit={mode:9s} {row['runtime_s']:7.2f} s "
                    f"{row['pixel_steps_per_s'] / 1e6:7.1f} M pixel-steps/s "
                    f"(trained {100 * row['pixel_steps_trained_fraction']:.0f}%)",
                    flush=True,
                )
    return out


def threshold_section(device, res=257):
    out = []
    for name, e in EXPERIMENTS.items():
        data = notebook.problem_arrays(e["n_points"], e["batch"])
        steps = PAPER_STEPS[name]
        x, y, width, _ = zoom.PAPER_PANELS[name]
        places = {
            "opening window": zoom.frame_grid((1.5, 1.5), 9.0, 0, res),
            "paper panel": zoom.frame_grid((x, y), width, 0, res),
            "2^10 deeper": zoom.frame_grid((x, y), width, 10, res),
        }
        for where, grid in places.items():
            exact, row = run(res, steps, device, name, grid=grid, data=data)
            thr, trow = run(res, steps, device, name, grid=grid, data=data, early_exit="threshold")
            a, b = exact["values"], thr["values"]
            out.append(
                {
                    "experiment": name,
                    "where": where,
                    "steps": steps,
                    "resolution": res,
                    "sign_changed": int(((a < 0) != (b < 0)).sum()),
                    "value_changed": int((a != b).sum()),
                    "max_relative_change": float(np.max(np.abs(b - a) / np.abs(a))),
                    "trained_fraction_exact": row["pixel_steps_trained_fraction"],
                    "trained_fraction_threshold": trow["pixel_steps_trained_fraction"],
                    "runtime_s_exact": row["runtime_s"],
                    "runtime_s_threshold": trow["runtime_s"],
                }
            )
            o = out[-1]
            print(
                f"  {name:17s} {where:15s} signs changed {o['sign_changed']:5d} values "
                f"{o['value_changed']:6d}  trained {o['trained_fraction_exact']:.2f} -> "
                f"{o['trained_fraction_threshold']:.2f}",
                flush=True,
            )
    return out


def scale_section(device):
    out = []
    for name, e in EXPERIMENTS.items():
        data = notebook.problem_arrays(e["n_points"], e["batch"])
        x, y, width, _ = zoom.PAPER_PANELS[name]
        row = {"experiment": name, "steps": PAPER_STEPS[name]}
        for res in (257, 1025):
            grid = zoom.frame_grid((x, y), width, 0, res)
            _, r = run(res, PAPER_STEPS[name], device, name, grid=grid, data=data)
            row[f"runtime_s_{res}"] = r["runtime_s"]
        row["ratio"] = row["runtime_s_1025"] / row["runtime_s_257"]
        out.append(row)
        print(
            f"  {name:17s} 257: {row['runtime_s_257']:.2f} s  1025: {row['runtime_s_1025']:.2f} s"
        )
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--jax-ref", nargs="?", const=os.path.join(os.path.dirname(__file__), "sd_jax.py"),
        help="run the JAX reference (default file: bench/sd_jax.py)",
    )  # fmt: skip
    ap.add_argument("--ref-1024-steps", type=int, default=200)
    ap.add_argument("--peak-tflops", type=float, default=67.0, help="fp64 tensor-core peak")
    ap.add_argument("--sweep", action="store_true", help="also sweep launch configurations")
    ap.add_argument("--skip", default="", help="comma-separated sections to leave out")
    args = ap.parse_args()

    skip = set(filter(None, args.skip.split(",")))
    cuda = args.device.startswith("cuda")
    total, dots, count = flops_per_pixel_step()
    out = {
        "device": torch.cuda.get_device_name(args.device) if cuda else "cpu",
        "torch": torch.__version__,
        "flops_per_pixel_step": total,
        "dot_flops_per_pixel_step": dots,
        "flop_count": count,
        "peak_tflops": args.peak_tflops,
    }
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    t_start = time.perf_counter()
    if args.quick or not cuda:  # smoke mode: the torch engine on the CPU
        out["engine"] = [run(16, 20, args.device, early_exit=m)[1] for m in ("none", "nonfinite")]
        out["threshold"] = []
    else:
        if args.sweep:
            out["best_config"], out["sweep"] = sweep(args.device, 200)
        ref_rates = {}
        if args.jax_ref and "reference" not in skip:
            print("JAX reference, opening window:", flush=True)
            out["reference"], image = reference(args.jax_ref, args.device, args.ref_1024_steps)
            ref_rates = {r["resolution"]: r["pixel_steps_per_s"] for r in out["reference"]["runs"]}
            ref_rates[256] = out["reference"]["runs"][2]["pixel_steps_per_s"]  # the faster
            ours, _ = run(256, 1000, args.device)
            out["reference"]["sign_agreement_256"] = float(
                np.mean((image < 0) == ours["converged"])
            )
        if "engine" not in skip:
            print("engine:", flush=True)
            out["engine"] = engine_section(args.device, ref_rates)
        if "threshold" not in skip:
            print("threshold exit against the exact one:", flush=True)
            out["threshold"] = threshold_section(args.device)
        if "scale" not in skip:
            print("one frame at 257 and 1025 pixels:", flush=True)
            out["scale"] = scale_section(args.device)
    for r in out.get("engine", []):
        r["tflops_equivalent"] = r["pixel_steps_per_s"] * total / 1e12
        r["fraction_of_fp64_peak_equivalent"] = r["tflops_equivalent"] / args.peak_tflops
    out["bench_wall_s"] = time.perf_counter() - t_start
    print(f"\n{out['device']}, torch {out['torch']}, triton {out['triton']}")
    for r in out.get("engine", []):
        x = r.get("speedup_vs_reference")
        print(
            f"{r['resolution']:>5} {r.get('where', 'opening window'):34s} {r['early_exit']:9s}"
            f" {r['runtime_s']:7.2f} s {r['pixel_steps_per_s'] / 1e6:7.1f} M/s"
            + (f"  {x:.2f}x the reference" if x else "")
        )
    if args.out:
        write_bench_result(args.out, out, args.device)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
