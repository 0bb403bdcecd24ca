"""How close `make estimate` comes to the real run, through make, as a user runs them.

    python bench/estimate_check.py --out bench/results/estimate_check.json \
        default gpt2-tiny-cpu fractal-16x16 [--keep DIR] [--set EXEC_BATCH=n]

For each defconfig, in a scratch copy of this checkout (its results start empty; the
prepared data/ is shared): `make defconfig-<name>`, `make estimate`, then `make`, timed
from start to exit. W&B at its default (offline). Records the estimate's central value
and range, the real wall time and their ratio, and the 1-minute load average before, during
(sampled every 5 s) and after each, since on a shared machine the load sets the time.
--keep DIR copies each run's summary (figures, summary.json, results.csv) to DIR/<name>/.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kmatrix.manifest import git_info, write_bench_result  # noqa: E402

from scratch import copy_checkout  # noqa: E402  (bench/scratch.py)


def seconds(text):
    """'4.5 min' or '41 s' -> seconds."""
    value, unit = text.split()
    return float(value) * (60 if unit == "min" else 1)


def make(tree, *args):
    cmd = ["make", "--no-print-directory", f"PYTHON={sys.executable}", *args]
    return subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=True).stdout


class Load:
    """The 1-minute load average before, during (every 5 s) and after a block."""

    def __enter__(self):
        self.before, self.during, self.done = os.getloadavg()[0], [], threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self):
        while not self.done.wait(5.0):
            self.during.append(os.getloadavg()[0])

    def __exit__(self, *exc):
        self.done.set()
        self.after = os.getloadavg()[0]

    def record(self):
        d = self.during or [self.before]
        return {
            "before": round(self.before, 2),
            "during_mean": round(sum(d) / len(d), 2),
            "during_max": round(max(d), 2),
            "after": round(self.after, 2),
        }


def check(name, tree, keep=None, settings=None):
    make(tree, f"defconfig-{name}")
    if settings:  # e.g. EXEC_BATCH=n: the same defconfig with one switch changed
        make(tree, f"SET={settings}", "setconfig")
    started = time.time()
    with Load() as estimate_load:
        out = make(tree, "estimate")
    estimate_wall = time.time() - started
    m = re.search(
        r"TOTAL\s+about ([\d.]+ (?:min|s)) \(range ([\d.]+ (?:min|s)) \.\. ([\d.]+ (?:min|s))\)",
        out,
    )
    central, low, high = (seconds(g) for g in m.groups())
    started = time.time()
    with Load() as run_load:
        make(tree)
    real = time.time() - started
    if keep:
        shutil.copytree(tree / "results" / name / "summary", Path(keep) / name, dirs_exist_ok=True)
    return {
        "defconfig": name,
        "settings": settings,
        "estimate_s": round(central, 1),
        "range_s": [round(low, 1), round(high, 1)],
        "real_s": round(real, 1),
        "estimate_over_real": round(central / real, 3),
        "estimate_took_s": round(estimate_wall, 1),
        "load_avg_1m_estimate": estimate_load.record(),
        "load_avg_1m_run": run_load.record(),
        "estimate_output": out.strip().splitlines(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("defconfigs", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--keep", help="copy each run's summary directory here")
    ap.add_argument("--set", help="setconfig values after each defconfig, e.g. EXEC_BATCH=n")
    args = ap.parse_args()
    rows = []
    copied = git_info()  # the code that runs; the stamp at the end may see a later commit
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "kmatrix"
        copy_checkout(tree, share_data=True)
        for name in args.defconfigs:
            rows.append(check(name, tree, args.keep, args.set))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "estimate_output"}))
    report = {
        "machine": f"{platform.node()}: {os.cpu_count()} CPU cores",
        "python": platform.python_version(),
        "commit_copied": copied,
        "runs": rows,
    }
    write_bench_result(args.out, report)


if __name__ == "__main__":
    main()
