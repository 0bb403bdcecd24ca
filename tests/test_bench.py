"""Benchmarks as a suite: every result carries its provenance, and every number README.md
and docs/ quote appears in the result file they cite beside it."""

import json
import re
import shutil
import sys

import numpy as np

from kmatrix import manifest

from tests.conftest import ROOT


def test_a_bench_result_is_stamped_with_its_provenance(tmp_path):
    path = tmp_path / "out" / "bench.json"
    manifest.write_bench_result(path, {"rate": 1.5}, device="cpu")
    data = json.loads(path.read_text())
    assert data["rate"] == 1.5
    stamp = data["provenance"]
    assert stamp["argv"] == sys.argv and stamp["device"] == "cpu"
    assert stamp["git"]["sha"] and stamp["git"]["dirty"] in (True, False)
    assert stamp["versions"]["python"] and stamp["versions"]["numpy"]
    assert stamp["date"].startswith("20") and stamp["machine"]


def test_a_list_of_rows_is_kept_under_rows(tmp_path):
    manifest.write_bench_result(tmp_path / "rows.json", [{"a": 1}])
    assert json.loads((tmp_path / "rows.json").read_text())["rows"] == [{"a": 1}]


def test_every_bench_script_writes_through_the_stamp():
    for script in sorted((ROOT / "bench").glob("*.py")):
        text = script.read_text()
        if 'add_argument("--out"' in text:
            assert "write_bench_result(" in text, f"{script.name} does not stamp its results"


# The citation convention: a paragraph (or a table together with the paragraph just
# above it) that names a result file under bench/results/ quotes that file, and every
# decimal number in it (1.51, 72.7, 0.8%, 13.9 M) must be one of the file's numbers
# rounded to the digits shown (as is, or scaled by 100, 1e-3, 1e-6, 1e-9). Integers are
# left alone: they are mostly settings (256 x 256, 1000 steps), not measurements.
CITED = re.compile(r"bench/results/[\w.*/-]+\.(?:json|log|txt)")
DECIMAL = re.compile(r"(?<![\w.^/-])(\d+\.\d+)(?![\w.]*\w)")
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
SCALES = (1, 100, 1e-3, 1e-6, 1e-9, 1e-12)


def quoting_blocks(text):
    """(first line, text) of each paragraph; a table joins the paragraph above it."""
    blocks, start, lines = [], 0, []
    for n, line in enumerate(text.splitlines() + [""], 1):
        if line.strip():
            start = start or n
            lines.append(line)
        elif lines:
            joined = "\n".join(lines)
            if lines[0].lstrip().startswith("|") and blocks:
                blocks[-1] = (blocks[-1][0], blocks[-1][1] + "\n" + joined)
            else:
                blocks.append((start, joined))
            start, lines = 0, []
    return blocks


def file_numbers(pattern):
    paths = sorted(ROOT.glob(pattern))
    assert paths, f"cites {pattern}, which does not exist"
    return paths, [float(m) for p in paths for m in NUMBER.findall(p.read_bytes())]


def appears(quoted, values):
    digits = len(quoted.split(".")[1])
    return any(round(v * s, digits) == float(quoted) for v in values for s in SCALES)


def test_every_quoted_number_is_in_the_file_it_cites():
    problems = []
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for doc in docs:
        for line, block in quoting_blocks(doc.read_text()):
            cited = sorted(set(CITED.findall(block)))
            if not cited:
                continue
            values = [v for c in cited for v in file_numbers(c)[1]]
            for quoted in DECIMAL.findall(block):
                if not appears(quoted, values):
                    problems.append(
                        f"{doc.relative_to(ROOT)}:{line}: {quoted} is not in {', '.join(cited)}"
                    )
    assert not problems, "quoted numbers missing from the file they cite:\n" + "\n".join(problems)


def test_the_citation_check_catches_a_number_the_file_lacks(tmp_path):
    assert appears("1.13", [1.1348]) and appears("34.6", [0.3461]) and appears("72.7", [72.7e6])
    assert not appears("1.14", [1.1348, 1.18])
    blocks = quoting_blocks("a `bench/results/x.json`\nsays 1.5\n\n| t | 1.2 |\n\nlast\n")
    assert blocks == [(1, "a `bench/results/x.json`\nsays 1.5\n| t | 1.2 |"), (6, "last")]


def test_a_capped_probe_run_is_rated_by_the_cells_it_finished():
    """A probe cut off by its cap plans cells it never reaches (`missing`): the report's
    rate counts only the cells that finished."""
    from bench.llmmap_report import compact

    summary = {
        "name": "zoom",
        "config_hash": "0",
        "cells": 100,
        "counts": {"ok": 50, "diverged": 10, "missing": 40},
        "workload_summary": {"probe": {"kind": "zoom", "frames": []}},
    }
    report = compact(summary, wall=6.0)
    assert report["cells_finished"] == 60 and report["cells_per_s"] == 10.0


def test_a_probe_report_says_what_its_cells_ran_on(tmp_path):
    """A run resumed on another machine (or reported on the CPU) keeps each cell's own
    commit and GPU: the report counts them from the manifests."""
    from bench.llmmap_report import ran_on

    runs = [("a" * 40, "NVIDIA H100 80GB HBM3")] * 3 + [("b" * 40, None)]
    for k, (sha, gpu) in enumerate(runs):
        cell = tmp_path / "cells" / f"c{k}"
        cell.mkdir(parents=True)
        manifest = {"git": {"sha": sha}, "gpu": gpu and {"name": gpu}, "device": "cpu"}
        (cell / "manifest.json").write_text(json.dumps(manifest))
        (cell / "result.json").write_text("{}")
    (tmp_path / "cells" / "broken").mkdir()
    (tmp_path / "cells" / "broken" / "manifest.json").write_text("{")
    (tmp_path / "cells" / "broken" / "result.json").write_text("{}")
    (tmp_path / "cells" / "cut_off").mkdir()  # started, never finished
    (tmp_path / "cells" / "cut_off" / "manifest.json").write_text(json.dumps(manifest))
    assert ran_on(tmp_path) == [
        {"commit": "a" * 12, "device": "NVIDIA H100 80GB HBM3", "cells": 3},
        {"commit": None, "device": None, "cells": 1},
        {"commit": "b" * 12, "device": "cpu", "cells": 1},
    ]


def test_a_resume_check_holds_out_finished_cells_and_finds_a_changed_loss(tmp_path):
    from bench.resume_check import compare, hold

    root, cells = tmp_path / "run", tmp_path / "run" / "cells"
    for k, status in enumerate(["ok", "ok", "diverged", "failed", "ok"]):
        (cells / f"c{k}").mkdir(parents=True)
        result = {"id": f"c{k}", "status": status, "losses": [5.0, 4.0 - k]}
        result["metrics"] = {"trainable": k % 2 == 0}
        result["finished_at"] = f"2026-12-06T12:0{4 - k}:00+00:00"  # c4 finished first
        (cells / f"c{k}" / "result.json").write_text(json.dumps(result))
    latest = tmp_path / "latest"
    assert sorted(hold(root, latest, count=10, latest=2)) == ["c0", "c1"]
    for name in ["c0", "c1"]:
        shutil.move(latest / "cells" / name, cells / name)
    held = tmp_path / "held"
    chosen = hold(root, held, count=10)
    assert sorted(chosen) == ["c0", "c1", "c2", "c4"]  # finished cells only, all moved
    assert sorted(p.name for p in cells.iterdir()) == ["c3"]
    for name in chosen[:3]:  # the resumed run computes three of them again, one differently
        shutil.copytree(held / "cells" / name, cells / name)
    again = json.loads((cells / chosen[0] / "result.json").read_text())
    again["losses"][-1] += 1e-7
    (cells / chosen[0] / "result.json").write_text(json.dumps(again))
    report = compare(root, held)
    assert (report["held"], report["recomputed"], report["identical"]) == (4, 3, 2)
    assert [d["cell"] for d in report["different"]] == [chosen[0]]
    assert report["different"][0]["same_labels"]


def test_the_path_figure_draws_each_rule_and_names_a_missing_run(tmp_path):
    """bench/auto_paths_figure.py takes each rule's frames from a report's JSON, and an
    argument naming a run the file lacks stops with the runs it has."""
    import pytest

    from bench.auto_paths_figure import sheets
    from fractal import figures

    path = {"experiment": "tanh", "frame_dimensions": {"0": 1.0, "1": 1.5}, "dimension": 1.2}
    runs = {
        "runs": {
            "run-a": {
                "paths": {
                    "tanh/paper": {**path, "path": "paper"},
                    "tanh/auto": {**path, "path": "auto", "dimension": 1.7},
                }
            }
        }
    }
    f = tmp_path / "report.json"
    f.write_text(json.dumps(runs))
    found = sheets([f"paper={f}:run-a:paper", f"auto={f}:run-a:auto"])
    assert sorted(found) == ["auto tanh", "paper tanh"]
    p, _, stats = found["auto tanh"]
    assert p["label"] == "auto" and stats["dimension"] == 1.7
    assert stats["frame_dimensions"] == {0: 1.0, 1: 1.5}
    assert figures.slopes_vs_depth(found, tmp_path / "rules.png")
    assert (tmp_path / "rules.png").stat().st_size > 0
    with pytest.raises(SystemExit, match=r"no run 'run-b' .* \['run-a'\]"):
        sheets([f"x={f}:run-b:auto"])


def test_the_resolution_table_compares_only_windows_the_runs_share():
    """bench/paper_resolution_table.py: two runs whose centres lie 1e-4 apart share the
    frames wider than 256e-4 (frames 0-5 from width 1.0), and the change at the doubling
    is taken over the whole paths and over those frames alone."""
    from bench.paper_resolution_table import table

    def report(centre, deep):
        dims = {str(k): 1.2 if k < 8 else deep for k in range(10)}
        path = {
            "experiment": "tanh",
            "path": "paper",
            "centre": centre,
            "frames": 10,
            "frames_done": 10,
            "widest_width": 1.0,
            "dimension": 1.2 if deep == 1.2 else 1.25,
            "spread_16_84": [1.1, 1.3],
            "arithmetic_frames": [],
            "frame_dimensions": dims,
        }
        return {"runs": {"r": {"paths": {"tanh/paper": path}}}}

    rows, converged = table({257: report([0.0, 0.0], 1.2), 513: report([1e-4, 0.0], 1.9)})
    row = rows["tanh"]
    assert row["shared_windows"]["frames"] == 6
    assert abs(row["change_at_doubling"]["257-513"] - 0.05) < 1e-12
    assert row["shared_windows"]["change_at_doubling"]["257-513"] == 0.0
    assert converged == {
        "criterion": 0.03,
        "doubling": "257-513",
        "whole_paths": False,
        "shared_windows": True,
    }


def test_the_subsampled_frames_read_a_line_as_a_line_at_every_stride(tmp_path, monkeypatch):
    """bench/paper_subsample.py box-counts a frame at every 1st, 2nd and 4th pixel: a
    straight boundary reads 1 at each, and --check tells equal slopes from changed ones."""
    import tarfile

    from bench import paper_subsample
    from fractal import dimension

    root = tmp_path / "results" / "run"
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.json").write_text(json.dumps({"fractal_dimension": "pow2"}))
    x = np.linspace(-1, 1, 257)
    line = np.where(x[:, None] + 0.3 * x[None, :] > 0.01, 1.0, -1.0)
    slopes = []
    for k in range(2):
        cell = root / "cells" / f"tanh-paper-f{k}"
        cell.mkdir(parents=True)
        np.save(cell / "frame.npy", line)
        s = dimension.box_count(line, method="pow2")["slopes"]
        slopes.append(s)
        meta = {"experiment": "tanh", "path": "paper", "frame": k, "slopes": s}
        (cell / "meta.json").write_text(json.dumps(meta))
        point = {"experiment": "tanh", "path": "paper", "frame": k}
        result = {"point": point, "slopes": s if k == 0 else [9.0]}
        (cell / "result.json").write_text(json.dumps(result))
    with tarfile.open(tmp_path / "cells.tar.gz", "w:gz") as tar:
        for k in range(2):
            name = f"run/cells/tanh-paper-f{k}/result.json"
            tar.add(root.parent / name, arcname=name)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sub.json"
    argv = ["paper_subsample.py", "run", "--out", str(out), "--check", "cells.tar.gz"]
    monkeypatch.setattr(sys, "argv", argv)
    paper_subsample.main()
    report = json.loads(out.read_text())
    pooled = report["paths"]["tanh/paper"]["pooled"]
    assert sorted(pooled, key=int) == ["65", "129", "257"]
    assert all(abs(p["dimension"] - 1.0) < 0.1 for p in pooled.values())
    check = report["check"]
    assert check["frames_equal"] == 1 and [d["cell"] for d in check["frames_differ"]] == [
        "tanh-paper-f1"
    ]
    medians = {"0": float(np.median(slopes[0])), "1": 2.0}  # a summary: each frame's median
    summary = {"workload_summary": {"tanh/paper": {"experiment": "tanh", "path": "paper"}}}
    summary["workload_summary"]["tanh/paper"]["frame_dimensions"] = medians
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    argv[-1] = "summary.json"
    paper_subsample.main()
    check = json.loads(out.read_text())["check"]
    assert check["frames_equal"] == 1 and check["frames_differ"][0]["earlier"] == 2.0
