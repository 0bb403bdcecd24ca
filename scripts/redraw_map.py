"""Draw an LLM map's trainability figure again, with today's figure code, from the grid its
summary saved (`summary/grid-<name>.npz`): for a map too costly to rerun for a new layout.

    python scripts/redraw_map.py --npz bench/results/llm_refine_129_grid.npz \
        --defconfig fractal-129x129-gpu --grid muon-bf16-0 --out docs/img/llm_refine_129.png

The defconfig gives the axes' names, the training budget and the trainable rule of the
title; the labels, losses and inferred points are the saved grid's. A grid saved before
the loss ratio was (an older summary) draws its middle panel as "not recorded".
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kmatrix import kconfig  # noqa: E402
from kmatrix.config import Config  # noqa: E402
from kmatrix.plan import plan  # noqa: E402
from llmmap import maps  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", required=True, help="a summary's grid-<name>.npz")
    ap.add_argument("--defconfig", required=True, help="the defconfig the map ran")
    ap.add_argument("--grid", default="grid", help="the grid's name (the npz's <name>)")
    ap.add_argument("--out", required=True, help="the PNG to write")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        values = kconfig.apply_defconfig(args.defconfig, dotconfig=Path(tmp) / ".config")
    cfg = Config(values)
    cells = plan(cfg)
    g = dict(np.load(args.npz))
    g["optimizer"] = cells[0].params.get("optimizer")
    title = maps.map_title(cfg, args.grid, cells[0].params)
    title += f"\nredrawn from {args.npz}"
    if "ratio" not in g:
        title += " (saved without the loss ratio)"
    maps.trainability_figure(g, cfg, title, Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
