"""The resolution table of the paper's paths: per experiment the dimension at each
resolution (pooled over the frames, with the 16-84% spread), the change at each doubling,
and the same over only the frames whose windows agree at every resolution.

    python bench/paper_resolution_table.py --out paper_resolution_44.json \\
        257=bench/results/fractal_paper_paths_h100.json \\
        513=bench/results/fractal_paper_513_h100.json \\
        1025=bench/results/fractal_paper_1025_h100.json

Each input is a bench/auto_paths_report.py file. Below its panel a paper path follows
the boundary point nearest the previous centre, which depends on the pixels: runs at two
resolutions end at centres a few 1e-9 apart, so their deep frames are other windows. The
shared frames are those in which every run's centre lies within one pixel of a 257-pixel
frame of the others'; over them the change is the resolution's alone (the median of the
frames' dimensions, since a file holds each frame's median slope, not its slopes).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix.manifest import write_bench_result  # noqa: E402

CRITERION = 0.03  # a doubling that moves no dimension by more than this: converged


def paper_paths(report):
    """{experiment: path record} of a report's paper paths."""
    out = {}
    for run in report["runs"].values():
        for p in run["paths"].values():
            if p["path"] == "paper":
                out[p["experiment"]] = p
    return out


def shared_frames(records, widest):
    """The leading frames whose windows agree: every centre within 1/256 of the width."""
    centres = [np.array(r["centre"]) for r in records]
    offset = max(float(np.abs(a - b).max()) for a in centres for b in centres)
    n = min(r["frames"] for r in records)
    return sum(1 for k in range(n) if offset < widest * 2.0**-k / 256), offset


def spread(values):
    return [float(np.percentile(values, 16)), float(np.percentile(values, 84))]


def table(reports):
    """reports: {pixels: auto_paths_report dict}, in rising resolution."""
    pixels = sorted(reports)
    paths = {px: paper_paths(reports[px]) for px in pixels}
    out = {}
    for name in paths[pixels[0]]:
        records = [paths[px][name] for px in pixels]
        widest = records[0]["widest_width"]
        row = {"resolutions": {}}
        for px, r in zip(pixels, records):
            row["resolutions"][str(px)] = {
                "dimension": r["dimension"],
                "spread_16_84": r["spread_16_84"],
                "frames_done": r["frames_done"],
                "arithmetic_frames": len(r["arithmetic_frames"]),
                "centre": r["centre"],
            }
        dims = [r["dimension"] for r in records]
        row["change_at_doubling"] = {
            f"{a}-{b}": d1 - d0 for a, b, d0, d1 in zip(pixels, pixels[1:], dims, dims[1:])
        }
        n, offset = shared_frames(records, widest)
        medians = [[r["frame_dimensions"][str(k)] for k in range(n)] for r in records]
        sd = [float(np.median(m)) for m in medians]
        row["shared_windows"] = {
            "frames": n,
            "centre_offset": offset,
            "dimension": {str(px): d for px, d in zip(pixels, sd)},
            "spread_16_84": {str(px): spread(m) for px, m in zip(pixels, medians)},
            "change_at_doubling": {
                f"{a}-{b}": d1 - d0 for a, b, d0, d1 in zip(pixels, pixels[1:], sd, sd[1:])
            },
        }
        out[name] = row
    last = f"{pixels[-2]}-{pixels[-1]}"
    converged = {
        "criterion": CRITERION,
        "doubling": last,
        "whole_paths": all(abs(r["change_at_doubling"][last]) <= CRITERION for r in out.values()),
        "shared_windows": all(
            abs(r["shared_windows"]["change_at_doubling"][last]) <= CRITERION for r in out.values()
        ),
    }
    return out, converged


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="PIXELS=auto_paths_report JSON")
    ap.add_argument("--summaries", nargs="+", required=True, help="PIXELS=summary.json")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    reports, sources = {}, {}
    for item in args.inputs:
        px, path = item.split("=", 1)
        reports[int(px)] = json.loads(Path(path).read_text())
        prov = reports[int(px)].get("provenance", {})
        sources[px] = {
            "file": path,
            "commit": (prov.get("git") or {}).get("sha"),
            "machine": prov.get("machine"),
            "wall_s": sum(r["wall_s"] for r in reports[int(px)]["runs"].values()),
        }
    for item in args.summaries:  # the widest frame's width is in the summaries
        px, path = item.split("=", 1)
        ws = json.loads(Path(path).read_text())["workload_summary"]
        for p in paper_paths(reports[int(px)]).values():
            p["widest_width"] = ws[f"{p['experiment']}/paper"]["widest_width"]
    rows, converged = table(reports)
    for name, row in rows.items():
        dims = "  ".join(f"{px} {r['dimension']:.3f}" for px, r in row["resolutions"].items())
        shared = row["shared_windows"]
        sd = "  ".join(f"{px} {d:.3f}" for px, d in shared["dimension"].items())
        print(f"{name:17s} {dims} | frames 0-{shared['frames'] - 1}: {sd}")
    print(f"converged at the last doubling (<= {CRITERION}): {converged}")
    write_bench_result(args.out, {"sources": sources, "paths": rows, "converged": converged})


if __name__ == "__main__":
    main()
