"""How long `make setconfig` takes to check a long list for repeats (SEEDS).

    python bench/seeds_check.py --out bench/results/seeds_check.json

A list of N distinct seeds is set through kconfig.setconfig (the path `make setconfig`
takes: parse, type, domain, repeats, write .config and config.json), for N up to 20,000.
Checking for repeats is linear, so the time grows with N, not N^2.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kmatrix import kconfig  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/seeds_check.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dotconfig = Path(tmp) / ".config"
        kconfig.apply_defconfig("default", dotconfig=dotconfig)
        for n in (1_000, 5_000, 20_000):
            seeds = " ".join(map(str, range(n)))
            t0 = time.perf_counter()
            kconfig.setconfig([("SEEDS", seeds)], dotconfig=dotconfig)
            rows.append({"seeds": n, "setconfig_s": round(time.perf_counter() - t0, 3)})
            print(rows[-1], flush=True)
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    write_bench_result(
        args.out,
        {
            "commit": git.stdout.strip(),
            "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor()})",
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
