"""The zoom paths of finished fractal-paper runs: per experiment and path the dimension
with its spread and its stretches, the blank frames and those whose structure the noise
test calls arithmetic, and the descent; printed and written to one JSON.

    python bench/auto_paths_report.py --out auto_paths_gpu.json fractal-paper=190 ...

Each argument is a matrix name (results/<name>/) and its wall time in seconds
(bench/auto_paths_gpu.sh passes them).
"""

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix.manifest import nvidia_smi  # noqa: E402
from kmatrix.results import read_result  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402


def device():
    names = nvidia_smi("--query-gpu=name", "--format=csv,noheader")
    return names.replace("\n", ", ") if names else platform.node()


def report(name, wall_s):
    root = Path("results") / name
    summary = json.loads((root / "summary" / "summary.json").read_text())
    paths = {}
    for key, s in (summary.get("workload_summary") or {}).items():
        centre = read_result(root, f"{s['experiment']}-{s['path']}")
        levels = centre["descent"]
        paths[key] = {
            "experiment": s["experiment"],
            "path": s["path"],
            "blank_frames": s["blank_frames"],
            "noise_test": s.get("noise_test", "ratio"),
            "arithmetic_frames": s["arithmetic_frames"],
            # of those, the grid's own float64 floor (the rest: redrawn by 1/8-pixel shifts)
            "grid_floor_frames": s.get("grid_floor_frames"),
            "frames_done": s["frames_done"],
            "frames": s["frames"],
            "resolution": s["resolution"],
            "dimension": s["dimension"],
            "spread_16_84": s["spread_16_84"],
            # over the frames neither blank nor the arithmetic's (summaries before it: None)
            "dimension_resolved": s.get("dimension_resolved"),
            "spread_resolved_16_84": s.get("spread_resolved_16_84"),
            "frames_resolved": s.get("frames_resolved"),
            "stretches_of_8_frames": s["stretches_of_8_frames"],
            "frame_dimensions": s["frame_dimensions"],
            "noise_ratio_max": s["noise_ratio_max"],
            "isolated_fraction_max": s["isolated_fraction_max"],
            "centre": s["centre"],
            "descent_start_width": centre.get("descent_start_width"),
            "descent_images": centre["images"],
            "descent_backtracks": centre["backtracks"],
            "descent_s": (centre.get("metrics") or {}).get("runtime_s") or centre.get("runtime_s"),
            "descent_not_ok": [
                [lv["width"], lv["status"]] for lv in levels if lv["status"] != "ok"
            ],
            "frames_runtime_s": s["runtime_s"],
        }
    return {"wall_s": wall_s, "counts": summary.get("counts"), "paths": paths}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="name=wall seconds")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = {"device": device(), "runs": {}}
    ok = True
    for item in args.runs:
        name, wall = item.split("=")
        r = out["runs"][name] = report(name, float(wall))
        print(f"{name}: {r['wall_s']:.0f} s, cells {r['counts']}")
        for key, p in r["paths"].items():
            bad = p["blank_frames"] or p["arithmetic_frames"]
            if p["path"] == "auto":  # the target is the automatic paths'
                ok &= not bad and p["frames_done"] == p["frames"]
            d = p["dimension"]
            print(
                f"  {key:24s} D {d if d is not None else float('nan'):.3f} {p['spread_16_84']} "
                f"resolved frames {p['frames_resolved']}: D {p['dimension_resolved']} "
                f"blank {p['blank_frames']} arithmetic by {p['noise_test']} {p['arithmetic_frames']} "
                f"(the grid's floor: {p['grid_floor_frames']}) "
                f"noise ratio max {p['noise_ratio_max']} descent {p['descent_images']} images, "
                f"{p['descent_backtracks']} back-ups, not ok at {p['descent_not_ok']}"
            )
        for exp in sorted({p["experiment"] for p in r["paths"].values()}):
            dims = {
                p["path"]: p["dimension"] for p in r["paths"].values() if p["experiment"] == exp
            }
            if dims.get("paper") is not None and dims.get("auto") is not None:
                r.setdefault("auto_minus_paper", {})[exp] = dims["auto"] - dims["paper"]
        if r.get("auto_minus_paper"):
            print("  auto - paper:", {k: round(v, 3) for k, v in r["auto_minus_paper"].items()})
    out["criterion_met"] = bool(ok)
    print(
        "criterion (automatic paths: no blank frame, none the noise test calls arithmetic,"
        " all frames done):",
        "met" if ok else "NOT met",
    )
    write_bench_result(args.out, out)


if __name__ == "__main__":
    main()
