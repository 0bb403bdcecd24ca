"""How close `make estimate` comes to the real run, through make, as a user runs them.

    python bench/estimate_check.py --out bench/results/estimate_check.json \
        default gpt2-tiny-cpu fractal-16x16

For each defconfig, in a scratch copy of this checkout (its results start empty; the
prepared data/ is shared): `make defconfig-<name>`, `make estimate`, then `make`, timed
from start to exit. W&B at its default (offline). Records the estimate's central value
and range, the real wall time and their ratio.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kmatrix.manifest import write_bench_result  # noqa: E402

from scratch import copy_checkout  # noqa: E402  (bench/scratch.py)


def seconds(text):
    """'4.5 min' or '41 s' -> seconds."""
    value, unit = text.split()
    return float(value) * (60 if unit == "min" else 1)


def make(tree, *args):
    cmd = ["make", "--no-print-directory", f"PYTHON={sys.executable}", *args]
    return subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=True).stdout


def check(name, tree):
    make(tree, f"defconfig-{name}")
    started = time.time()
    out = make(tree, "estimate")
    estimate_wall = time.time() - started
    m = re.search(
        r"TOTAL\s+about ([\d.]+ (?:min|s)) \(range ([\d.]+ (?:min|s)) \.\. ([\d.]+ (?:min|s))\)",
        out,
    )
    central, low, high = (seconds(g) for g in m.groups())
    started = time.time()
    make(tree)
    real = time.time() - started
    return {
        "defconfig": name,
        "estimate_s": round(central, 1),
        "range_s": [round(low, 1), round(high, 1)],
        "real_s": round(real, 1),
        "estimate_over_real": round(central / real, 3),
        "estimate_took_s": round(estimate_wall, 1),
        "estimate_output": out.strip().splitlines(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("defconfigs", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "kmatrix"
        copy_checkout(tree, share_data=True)
        for name in args.defconfigs:
            rows.append(check(name, tree))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "estimate_output"}))
    report = {
        "machine": f"{platform.node()}: {os.cpu_count()} CPU cores",
        "python": platform.python_version(),
        "runs": rows,
    }
    write_bench_result(args.out, report)


if __name__ == "__main__":
    main()
