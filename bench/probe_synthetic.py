"""The map instruments on synthetic maps of known structure (CPU, seconds): what
refinement finds and misses (a smooth curve, one-pixel islands, islands of the detection
limit's size, one-pixel filaments, a Mandelbrot window), and what transects and zoom
sequences read on a smooth boundary and on fractal ones.

    python bench/probe_synthetic.py --out bench/results/probe_synthetic.json

The maps are those of tests/test_refine_sees.py and tests/test_llmmap.py (129 x 129,
4 levels from the 9 x 9 grid, guard 1: the 129 x 129 LLM map's settings).
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fractal.dimension import box_count, fractal_dimension, pooled_median  # noqa: E402
from kmatrix import refine  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402
from llmmap import transects, zoom_maps  # noqa: E402

N, LEVELS = 129, 4


def refined(truth, verify=20, band=0, guard=1):
    return refine.replay(truth.astype(bool), LEVELS, guard, verify, band)


J, I = np.mgrid[0:N, 0:N]
CURVE = J < 60 + 20 * np.sin(I / 20)


def islands(size, count, far=6, seed=0):
    rng = np.random.default_rng(seed)
    truth, corners = CURVE.copy(), []
    while len(corners) < count:
        a, b = rng.integers(1, N - size - 1, 2)
        if abs(b + size / 2 - (60 + 20 * np.sin((a + size / 2) / 20))) > far + size:
            corners.append((a, b))
            truth[b : b + size, a : a + size] = ~CURVE[b : b + size, a : a + size]
    return truth, corners


def mandelbrot(x, y, iters=200):
    c = np.asarray(x + 1j * y)
    z = np.zeros(c.shape, dtype=complex)
    inside = np.ones(c.shape, dtype=bool)
    for _ in range(iters):
        z = np.where(inside, z * z + c, z)
        inside &= np.abs(z) <= 2
    return inside


def refinement_rows():
    rows = []
    filaments = CURVE.copy()
    for r in (21, 37, 99, 115):
        filaments[r, 10:118] = ~filaments[r, 10:118]
    t = np.linspace(0, 1, N)
    maps = {
        "smooth curve": (CURVE, None),
        "40 one-pixel islands": islands(1, 40),
        "12 islands of 16 x 16": islands(16, 12, far=20, seed=1),
        "4 one-pixel filaments": (filaments, None),
        "Mandelbrot window": (
            mandelbrot(-0.75 + 0.05 * t[None, :], 0.10 + 0.05 * t[:, None]),
            None,
        ),
    }
    for name, (truth, corners) in maps.items():
        for band in (0, 1):
            labels, out, computed = refined(truth, band=band)
            rep = refine.verification_report(out)
            row = {
                "map": name,
                "band": band,
                "computed": len(computed),
                "points": truth.size,
                "wrong": int((labels != truth).sum()),
                "differing_from_curve": int((truth != CURVE).sum()),
                "verified": sum(r["verified"] for r in rep),
                "verify_misses": sum(r["misses"] for r in rep),
                "verified_within_8_points": sum(r["verified"] for r in rep[:2]),
                "strata": rep,
                "dimension_full": fractal_dimension(truth.astype(float) - 0.5),
                "dimension_refined": fractal_dimension(labels.astype(float) - 0.5),
            }
            if corners:
                row["features_found"] = sum(bool((labels[b, a] == truth[b, a])) for a, b in corners)
                row["features"] = len(corners)
            rows.append(row)
    return rows


def weierstrass(x, a=0.7, b=2, terms=40):
    return sum(a**k * math.cos(b**k * math.pi * x) for k in range(terms))


def transect_rows():
    rows = []
    P, D = 129, 10
    unit = transects.unit(1.0, P, D)
    for name, truth in {
        "smooth (a step)": lambda u: u * unit > 0.0123,
        "Weierstrass zero set (a = 0.7, b = 2)": lambda u: weierstrass(0.3 + u * unit) > 0,
    }.items():
        out, known = refine.drive(
            lambda label_of: transects.walk(1, P, D, label_of), lambda n, u: truth(u)
        )
        rows.append(
            {
                "line": name,
                "points": P,
                "depths": D,
                "computed": len(known),
                "label_changes_per_depth": [len(r["changes"]) for r in out["lines"][0]],
            }
        )
    return rows


def zoom_rows():
    rows = []
    n, F = 65, 6
    for name, width, (x0, y0), truth in (
        ("straight line", 1.0, (0.0, 0.0), lambda x, y: y < 0.3 * x + 0.01),
        ("Mandelbrot boundary", 0.05, (-0.7473, 0.1102), mandelbrot),
    ):
        unit = zoom_maps.unit(width, n, F)
        out, known = refine.drive(
            lambda label_of: zoom_maps.walk(F, n, label_of, levels=3, guard=1, verify=20, band=1),
            lambda u, v: bool(truth(np.array(x0 + u * unit), np.array(y0 + v * unit))),
        )
        slopes = []
        for f in out["frames"]:
            img = np.zeros((n, n))
            for (i, j), lab in f["labels"].items():
                img[j, i] = 1.0 if lab else -1.0
            slopes.append(box_count(img, method="pow2")["slopes"])
        rows.append(
            {
                "boundary": name,
                "frames": len(out["frames"]),
                "points_per_side": n,
                "computed": len(known),
                "points": len(out["frames"]) * n * n,
                "dimension_per_frame": [float(np.median(s)) for s in slopes],
                "pooled_dimension": pooled_median(slopes),
            }
        )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    report = {
        "grid": {"points_per_side": N, "levels": LEVELS, "guard": 1, "verify_per_level": 20},
        "detection_limit": refine.detection_limit(LEVELS, 1, 1),
        "refinement": refinement_rows(),
        "transects": transect_rows(),
        "zoom": zoom_rows(),
    }
    write_bench_result(args.out, report, device="cpu")
    brief = {k: report[k] for k in ("transects", "zoom")}
    brief["refinement"] = [
        {k: v for k, v in r.items() if k != "strata"} for r in report["refinement"]
    ]
    print(json.dumps(brief, indent=1))


if __name__ == "__main__":
    main()
