"""Resolution without moving the path: every frame of a finished zoom run box-counted at
its own resolution and at every 2nd and 4th pixel (1025 -> 513 -> 257 pixels of the same
window, the pixels a coarser frame there would compute), pooled per experiment and path.

    python bench/paper_subsample.py --out paper_subsample.json fractal-paper-1025 \\
        [--check cells.tar.gz]

A zoom path run at another resolution follows other boundary points below its panel (the
nearest boundary point depends on the pixels), so a table of runs at 257, 513 and 1025
pixels mixes the resolution with the path. Here the windows are the same and only the
pixels counted change. --check: an earlier run of the same paths, compared frame by frame
for equality with this one (another machine: the same arithmetic?): its frames' slopes
(the _cells.tar.gz bench/auto_paths_gpu.sh packs) or, from a summary.json, each frame's
median slope.
"""

import argparse
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fractal import dimension  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402


def frames(root):
    """(meta, values) of each frame cell under results/<name>/cells, in path order."""
    out = []
    for meta_file in sorted((root / "cells").glob("*/meta.json")):
        meta = json.loads(meta_file.read_text())
        values = meta_file.parent / "frame.npy"
        if "frame" in meta and values.is_file():
            out.append((meta, values))
    return sorted(out, key=lambda mv: (mv[0]["experiment"], mv[0]["path"], mv[0]["frame"]))


def earlier_frames(path):
    """{(experiment, path, frame): slopes} of the frames packed by
    bench/auto_paths_gpu.sh, or from a summary.json the frame's median slope."""
    out = {}
    if str(path).endswith(".json"):
        summary = json.loads(Path(path).read_text())["workload_summary"]
        for s in summary.values():
            for k, d in s["frame_dimensions"].items():
                out[(s["experiment"], s["path"], int(k))] = d
        return out
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.name.endswith("/result.json"):
                r = json.load(tar.extractfile(member))
                point = r.get("point") or {}
                if "slopes" in r and "frame" in point:
                    out[(point["experiment"], point["path"], point["frame"])] = r["slopes"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a finished matrix under results/")
    ap.add_argument("--strides", default="1,2,4")
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", help="an earlier run's _cells.tar.gz or summary.json")
    args = ap.parse_args()
    root = Path("results") / args.name
    method = json.loads((root / "config" / "config.json").read_text())["fractal_dimension"]
    strides = [int(s) for s in args.strides.split(",")]
    earlier = earlier_frames(args.check) if args.check else None
    paths, same, differ = {}, 0, []
    for meta, values_file in frames(root):
        v = np.load(values_file)
        n = v.shape[0]
        key = f"{meta['experiment']}/{meta['path']}"
        path = paths.setdefault(key, {"frames": [], "n": n, "slopes": {s: [] for s in strides}})
        row = {"frame": meta["frame"], "arithmetic": bool(meta.get("arithmetic"))}
        for s in strides:
            slopes = dimension.box_count(v[::s, ::s], method=method)["slopes"]
            path["slopes"][s].append(slopes)
            row[str(v[::s, ::s].shape[0])] = float(np.median(slopes)) if slopes else None
        path["frames"].append(row)
        if earlier is not None:
            theirs = earlier.get((meta["experiment"], meta["path"], meta["frame"]))
            ours = meta["slopes"] if isinstance(theirs, list) else row[str(n)]
            if theirs == ours:
                same += 1
            else:
                cell = values_file.parent.name
                differ.append({"cell": cell, "ours": ours, "earlier": theirs})
    out = {"name": args.name, "method": method, "paths": {}}
    for key, path in paths.items():
        pooled = {}
        for s in strides:
            px = str(len(range(0, path["n"], s)))  # the pixels a side at this stride
            lo, hi = dimension.bootstrap(path["slopes"][s])
            pooled[px] = {
                "dimension": dimension.pooled_median(path["slopes"][s]),
                "spread_16_84": [lo, hi],
            }
        out["paths"][key] = {"pooled": pooled, "frames": path["frames"]}
        print(key, {px: round(p["dimension"], 3) for px, p in pooled.items()})
    if earlier is not None:
        out["check"] = {"frames_equal": same, "frames_differ": differ}
        print(f"frames equal to the earlier run's: {same}; differ: {[d['cell'] for d in differ]}")
    write_bench_result(args.out, out)


if __name__ == "__main__":
    main()
