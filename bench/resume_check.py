"""Does a resumed run compute what the first one did? Hold out finished cells, resume,
compare.

A probe resumed on another machine (its results unpacked there) trains the new cells
from a checkpoint and with arithmetic that machine made again. Before resuming, `hold`
moves a seeded sample of finished cells out of the results, so the resumed run computes
them again; `compare` then checks them against the held copies, loss by loss:

    python bench/resume_check.py hold --name llmmap-ft-zoom --count 64 --held held
    make
    python bench/resume_check.py compare --name llmmap-ft-zoom --held held \\
        --out bench/results/resume_check.json

The report counts the cells whose every train loss is bitwise the held one, and lists
those that differ (with their labels' agreement).
"""

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix.manifest import write_bench_result  # noqa: E402
from kmatrix.results import cell_dir, is_done, read_result  # noqa: E402


def hold(root, held, count, seed=0, latest=0):
    """Move `count` finished cells (seeded choice; among the `latest` last finished, if
    given) from the results directory `root` to `held`, laid out as one (held/cells/);
    their ids. Cells of the stage under way are computed again in its own batches; cells
    of earlier stages each cost a small batch."""
    finished = []
    for d in Path(root, "cells").iterdir():
        r = read_result(root, d.name)
        if is_done(r):
            finished.append((str(r.get("finished_at")), d.name))
    finished = [name for _, name in sorted(finished)[-latest if latest else 0 :]]
    chosen = random.Random(seed).sample(sorted(finished), min(count, len(finished)))
    Path(held, "cells").mkdir(parents=True, exist_ok=False)
    for name in chosen:
        shutil.move(cell_dir(root, name), cell_dir(held, name))
    return chosen


def compare(root, held):
    """{"held", "recomputed", "identical", "different": [...]} of the held cells."""
    report = {"held": 0, "recomputed": 0, "identical": 0, "different": []}
    for name in sorted(p.name for p in Path(held, "cells").iterdir()):
        report["held"] += 1
        old, new = read_result(held, name), read_result(root, name)
        if not is_done(new):
            continue
        report["recomputed"] += 1
        if old.get("losses") == new.get("losses") and old.get("status") == new.get("status"):
            report["identical"] += 1
            continue
        labels = [
            {k: (r.get("metrics") or {}).get(k) for k in ("stable", "trainable")}
            for r in (old, new)
        ]
        report["different"].append(
            {"cell": name, "same_labels": labels[0] == labels[1], "labels": labels}
        )
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["hold", "compare"])
    ap.add_argument("--name", required=True, help="the configuration's name (results/<name>)")
    ap.add_argument("--results", default="results")
    ap.add_argument("--held", required=True, help="folder the held cells move to")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latest", type=int, default=0, help="hold among the last K finished")
    ap.add_argument("--out")
    args = ap.parse_args()
    root = Path(args.results) / args.name
    if args.action == "hold":
        chosen = hold(root, args.held, args.count, args.seed, args.latest)
        print(f"held {len(chosen)} cells")
        return
    report = compare(root, args.held)
    if args.out:  # the provenance stamp names the machine's GPUs
        write_bench_result(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
