"""Is the fine structure of the pre-training transects set by fp32 rounding? The deepest
depth of the committed fp32 transects (one H100, Newton-Schulz in fp32,
bench/results/llmmap_pretrain_transects_ns32_h100_results.csv: 129 points a line, steps
of 3.05e-5 decades; or another depth, --depth) trained again on the CPU in fp32, three
times:

- "as_committed": the points' learning rates as the probe built them;
- "shifted": every learning rate times (1 + 2^-20), a relative 9.5e-7 or 4.1e-7 decades:
  1.4% of the step between neighbours, but every update rounds otherwise;
- "again": as_committed once more for the first line, the control (it must agree
  bitwise).

Labels that flip between as_committed and shifted about as often as they change between
neighbours along a line are set by the arithmetic's rounding, not by the learning rate.
The CPU's arithmetic is not the GPU's: this tests fp32 training of the same points, not
the committed labels themselves.

    OMP_NUM_THREADS=1 python bench/llmmap_fp32_rounding.py \\
        --out bench/results/llmmap_fp32_rounding_cpu.json
    OMP_NUM_THREADS=1 python bench/llmmap_fp32_rounding.py --depth 6 --no-control \\
        --out bench/results/llmmap_fp32_rounding_cpu_depth6.json
    python bench/llmmap_fp32_rounding.py --lines t0 --limit 8 --steps 5 --out /tmp/x.json

Two processes (one a core, one thread each) train chunks of the points, each chunk one
batch of gpt2.params.cpu_batch_models models (llmmap.maps.run_batch through the
framecheck's Runner: seeded and profiled as a worker does it). With --device cuda one
process trains each line as one batch on the GPU, and --csv names the transects to read
(a GPU run's results.csv) and --points its LLMMAP_POINTS:

    python bench/llmmap_fp32_rounding.py --device cuda --points 1025 --lines t0,t1,t2 \\
        --csv results/<name>/results.csv --limit 257 --out $OUT/rounding_gpu.json
"""

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from kmatrix.manifest import write_bench_result  # noqa: E402
from llmmap_framecheck import Runner, agreement, depth_rows, line_stats  # noqa: E402

TRANSECTS = ROOT / "bench/results/llmmap_pretrain_transects_ns32_h100_results.csv"
SHIFT = 1 + 2.0**-20
_RUNNER = None


def _start(defconfig, steps, keep_losses):
    global _RUNNER
    import torch

    torch.set_num_threads(1)
    _RUNNER = Runner(defconfig, "cpu", steps=steps)
    _RUNNER.keep_losses = keep_losses


def _train(chunk):
    return _RUNNER.train(chunk, "chunk")


def train_all(
    lines, k, procs, steps, gpu=None, defconfig="llmmap-pretrain-transects", keep_losses=False
):
    """Rows of every point of the lines (lists of points), trained in chunks of k models of
    one line by procs processes (or by `gpu`, a Runner on the GPU, in this one): a line's
    chunks are the same in every run. keep_losses: each row holds its per-step losses."""
    chunks = [pts[i : i + k] for pts in lines for i in range(0, len(pts), k)]
    if gpu is not None:
        return [row for chunk in chunks for row in gpu.train(chunk, "chunk")]
    args = (defconfig, steps, keep_losses)
    with ProcessPoolExecutor(procs, initializer=_start, initargs=args) as pool:
        return [row for rows in pool.map(_train, chunks) for row in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", default="t0,t1", help="transect lines of the CSV")
    ap.add_argument("--depth", type=int, default=-1, help="the depth (0: the widest; -1: deepest)")
    ap.add_argument("--limit", type=int, default=0, help="points a line (0: all)")
    ap.add_argument("--no-control", action="store_true", help="skip the control run")
    ap.add_argument("--steps", type=int, default=0, help="GPT2_MAX_STEPS (0: the defconfig's)")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: one batch a line")
    ap.add_argument("--csv", default=str(TRANSECTS), help="the transects' results.csv")
    ap.add_argument("--points", type=int, default=0, help="its LLMMAP_POINTS (0: defconfig's)")
    ap.add_argument("--defconfig", default="llmmap-pretrain-transects", help="the transects'")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from gpt2.params import cpu_batch_models

    probe = Runner(args.defconfig, args.device, steps=args.steps)
    source = Path(args.csv).resolve()
    level = args.depth % probe.cfg.llmmap_depths
    depth = depth_rows(source, args.lines.split(","), level, args.defconfig, args.points)
    if args.limit:
        depth = {
            n: rows[(len(rows) - args.limit) // 2 :][: args.limit] for n, rows in depth.items()
        }
    names = sorted(depth)
    p = probe.grid0.params
    gpu = probe if args.device.startswith("cuda") else None
    k = cpu_batch_models(p, p["vocab_size"] or 256)  # the driver's bound (256: characters)
    if gpu is not None:
        k = max(len(rows) for rows in depth.values())
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "device": args.device,
        "defconfig": args.defconfig,
        "source": str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else str(source),
        "lines": names,
        "depth": level,
        "points_per_line": len(depth[names[0]]),
        "steps": p["max_steps"],
        "precision": p["precision"],
        "shift": SHIFT,
        "models_per_batch": k,
        "processes": args.procs,
        "load_avg_1m_before": os.getloadavg()[0],
        "runs": {},
        "seconds": {},
    }
    report["committed_trainable_changes"] = {
        n: sum(a["trainable"] != b["trainable"] for a, b in zip(depth[n], depth[n][1:]))
        for n in names
    }
    lines = [[(float(r["matrix_lr"]), float(r["unembedding_lr"])) for r in depth[n]] for n in names]
    shifted = [[(x * SHIFT, y * SHIFT) for x, y in line] for line in lines]
    rows = {}
    runs = [("as_committed", lines), ("shifted", shifted), ("again", lines[:1])]
    for name, todo in runs[:2] if args.no_control else runs:
        t0 = time.perf_counter()
        rows[name] = train_all(todo, k, args.procs, args.steps, gpu, args.defconfig)
        report["seconds"][name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {len(rows[name])} points in {report['seconds'][name]} s", flush=True)

    def per_line(r):
        out, at = {}, 0
        for n in names:
            out[n] = r[at : at + len(depth[n])]
            at += len(depth[n])
        return out

    for name, r in rows.items():
        report["runs"][name] = {n: line_stats(v) for n, v in per_line(r).items() if v}
    a, b = per_line(rows["as_committed"]), per_line(rows["shifted"])
    report["shifted_against_committed"] = {n: agreement(a[n], b[n]) for n in names}
    if "again" in rows:
        c = per_line(rows["again"])
        report["control_again"] = {names[0]: agreement(a[names[0]], c[names[0]])}
    report["load_avg_1m_after"] = os.getloadavg()[0]
    write_bench_result(Path(args.out), report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
