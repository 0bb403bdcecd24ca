"""Per experiment, the per-frame dimension along zoom paths chosen by different rules,
from bench/auto_paths_report.py's JSON files (fractal.figures.slopes_vs_depth).

    python bench/auto_paths_figure.py --figure docs/img/fractal_path_rules.png \\
        "paper=bench/results/fractal_paper_paths_h100.json:fractal-paper:paper" \\
        "greedy=bench/results/fractal_paper_paths_h100.json:fractal-paper:auto" ...

Each argument is LABEL=FILE:RUN:PATH: the run (a matrix name in the file's "runs") and
the path kind ("paper" or "auto") whose frames are drawn under LABEL. A dashed line is a
path's pooled dimension.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fractal import figures  # noqa: E402


def sheets(specs):
    """{"LABEL experiment": ({"experiment", "label"}, None, {"frame_dimensions",
    "dimension"})} from LABEL=FILE:RUN:PATH specs."""
    out = {}
    for spec in specs:
        label, _, source = spec.partition("=")
        file, run, kind = source.rsplit(":", 2)
        runs = json.loads(Path(file).read_text())["runs"]
        if run not in runs:
            raise SystemExit(f"{spec}: no run {run!r} in {file} (it has {sorted(runs)})")
        for q in runs[run]["paths"].values():
            if q["path"] != kind:
                continue
            fd = {int(k): v for k, v in q["frame_dimensions"].items()}
            stats = {"frame_dimensions": fd, "dimension": q["dimension"]}
            p = {"experiment": q["experiment"], "label": label}
            out[f"{label} {q['experiment']}"] = (p, None, stats)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--figure", required=True, help="the PNG to write")
    ap.add_argument("--title", default=None)
    ap.add_argument("paths", nargs="+", help="LABEL=FILE:RUN:PATH")
    args = ap.parse_args()
    found = sheets(args.paths)
    if not found:
        raise SystemExit("no path matched: check RUN and PATH in each argument")
    print(figures.slopes_vs_depth(found, args.figure, args.title))


if __name__ == "__main__":
    main()
