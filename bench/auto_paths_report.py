"""The automatic paths of finished fractal-paper runs: per experiment the blank and
speckled frames, the dimension and the descent, printed and written to one JSON.

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
        if s.get("path") != "auto":
            continue
        centre = read_result(root, f"{s['experiment']}-auto")
        levels = centre["descent"]
        paths[s["experiment"]] = {
            "blank_frames": s["blank_frames"],
            "speckled_frames": s["speckled_frames"],
            "frames_done": s["frames_done"],
            "frames": s["frames"],
            "dimension": s["dimension"],
            "spread_16_84": s["spread_16_84"],
            "isolated_fraction_max": s["isolated_fraction_max"],
            "centre": s["centre"],
            "descent_images": centre["images"],
            "descent_backtracks": centre["backtracks"],
            "descent_s": centre.get("runtime_s"),
            "descent_not_ok": [lv["width"] for lv in levels if lv["status"] != "ok"],
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
        for exp, p in r["paths"].items():
            bad = p["blank_frames"] or p["speckled_frames"]
            ok &= not bad and p["frames_done"] == p["frames"]
            print(
                f"  {exp:17s} D {p['dimension'] or float('nan'):.3f} {p['spread_16_84']} "
                f"blank {p['blank_frames']} speckled {p['speckled_frames']} "
                f"iso max {p['isolated_fraction_max']:.4f} descent {p['descent_images']} images, "
                f"{p['descent_backtracks']} back-ups, not ok at {p['descent_not_ok']}"
            )
    out["criterion_met"] = bool(ok)
    print(
        "criterion (no blank or speckled frame on any automatic path):", "met" if ok else "NOT met"
    )
    write_bench_result(args.out, out)


if __name__ == "__main__":
    main()
