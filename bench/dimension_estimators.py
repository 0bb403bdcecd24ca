"""Which box-counting estimator reads shapes of known dimension right at which size.

    python bench/dimension_estimators.py --out bench/results/dimension_estimators.json

Straight lines and a circle (dimension 1) drawn as the boundary of a label map of n x n
points, as an LLM trainability map's boundary is drawn (llmmap.maps.boundary), measured
with the paper's estimator (porespy's box sizes, 10 px to the side) and ours (powers of
two from 1 px to a quarter of the side). The result decides the estimator of a map.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fractal import dimension  # noqa: E402
from llmmap import maps  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402

SHAPES = {
    "vertical line": lambda x, y: x < 0.3,
    "oblique line": lambda x, y: x + 0.7 * y < 0.8,
    "circle": lambda x, y: (x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1,
}


def estimate(edges, method):
    return round(float(np.median(dimension.edge_box_count(edges, method)["slopes"])), 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    for n in (16, 33, 65, 129, 257, 513, 1025):
        y, x = np.mgrid[0:n, 0:n] / (n - 1)
        for name, inside in SHAPES.items():
            edges = maps.boundary(inside(x, y).astype(float))
            row = {"points": n, "shape": name, "true": 1.0}
            row.update({m: estimate(edges, m) for m in ("paper", "pow2")})
            rows.append(row)
            print(row)
    write_bench_result(args.out, rows)


if __name__ == "__main__":
    main()
