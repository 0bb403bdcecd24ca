"""The summary's apples-to-apples check: every setting that differs between the cells it
compares besides their axes, from each cell's manifest and result."""

import json

from kmatrix import compare, results
from kmatrix.cell import Cell
from kmatrix.files import write_json_atomic
from tests.conftest import make


def _cell(root, cell_id, manifest=None, **result):
    """A finished cell with the manifest a CPU worker writes, changed by `manifest`."""
    cell = Cell(cell_id, 0, "tests.fake_workload", {"seed": 0}, 0, {"batch_size": 8, "lr": 0.1})
    directory = results.make_cell_dir(root, cell_id)
    base = {
        "cell": cell_id,
        "config_hash": "abc",
        "git": {"sha": "0123456789abcdef", "dirty": False},
        "torch": "2.11.0",
        "cuda": None,
        "cudnn": None,
        "gpu": None,
        "device": "cpu",
        "knobs": {"profile": "paper_repro", "deterministic_algorithms": True, "tf32": False},
        "params": cell.params,
    }
    write_json_atomic(directory / "manifest.json", {**base, **(manifest or {})})
    done = {"id": cell_id, "status": "ok", "attempt": 1, "params": cell.params, **result}
    write_json_atomic(directory / "result.json", done)
    return cell, done


def test_cells_alike_have_no_differences(tmp_path):
    cells = [_cell(tmp_path, f"c{i}") for i in range(3)]
    report = compare.differences(tmp_path, [c for c, _ in cells], {c.id: r for c, r in cells})
    assert report == {"cells": 3, "without_manifest": 0, "differences": {}}
    assert compare.warning_lines(report) == []


def test_each_difference_is_found_with_its_cells(tmp_path):
    """Known answers: one cell on another GPU and driver, one run with an OOM fallback's
    smaller batch, one retried, one whose result was made with another max lr, and one
    without a manifest (not compared). The CPU cells record no driver: only the GPU cell
    says one, so the driver is no difference of its own (the GPU is)."""
    h100 = {"gpu": {"name": "NVIDIA H100 80GB HBM3", "driver": "570.86"}, "device": "cuda"}
    fallback = {"ran_with": {"batch_size": 4, "grad_accum": 2, "oom_retries": 1}}
    cells = [
        _cell(tmp_path, "plain"),
        _cell(tmp_path, "h100", h100),
        _cell(tmp_path, "fallback", fallback),
        _cell(tmp_path, "retried", attempt=3),
        _cell(tmp_path, "old", params={"batch_size": 8, "lr": 0.2}),
        _cell(
            tmp_path,
            "tf32",
            {"knobs": {"profile": "maxout_speed", "deterministic_algorithms": False, "tf32": True}},
        ),
    ]
    lost, _ = _cell(tmp_path, "lost")
    (tmp_path / "cells" / "lost" / "manifest.json").unlink()
    found = {c.id: r for c, r in cells}
    found["lost"] = {"id": "lost", "status": "ok"}
    report = compare.differences(tmp_path, [c for c, _ in cells] + [lost], found)
    assert report["cells"] == 6 and report["without_manifest"] == 1
    diff = report["differences"]
    assert sorted(diff) == sorted(
        [
            "gpu",
            "profile",
            "deterministic",
            "tf32",
            "attempt",
            "batch_size",
            "grad_accum",
            "oom_retries",
            "param lr",
        ]
    )
    assert diff["gpu"] == [
        {"value": "cpu", "cells": 5, "e.g.": "plain"},
        {"value": "NVIDIA H100 80GB HBM3", "cells": 1, "e.g.": "h100"},
    ]
    assert diff["batch_size"][1] == {"value": "8 -> 4", "cells": 1, "e.g.": "fallback"}
    assert diff["oom_retries"][1]["value"] == "0 -> 1"
    assert diff["attempt"][1] == {"value": "3", "cells": 1, "e.g.": "retried"}
    assert diff["param lr"] == [
        {"value": "as planned", "cells": 5, "e.g.": None},
        {"value": "0.2 (this configuration: 0.1)", "cells": 1, "e.g.": "old"},
    ]
    lines = compare.warning_lines(report)
    assert lines[0].startswith("warning: the figures compare 6 cells that differ in more than")
    assert "  gpu: cpu (5 cells, e.g. plain); NVIDIA H100 80GB HBM3 (1 cell, e.g. h100)" in lines


def test_a_cell_that_only_ran_as_planned_is_no_difference(tmp_path):
    """ran_with that equals the plan (no fallback happened) changes nothing."""
    as_planned = {"ran_with": {"batch_size": 8, "grad_accum": 1, "oom_retries": 0}}
    cells = [_cell(tmp_path, "a"), _cell(tmp_path, "b", as_planned)]
    cells[0][0].params["grad_accum"] = cells[1][0].params["grad_accum"] = 1
    report = compare.differences(tmp_path, [c for c, _ in cells], {c.id: r for c, r in cells})
    assert report["differences"] == {}


def _make(tree, *args):
    proc = make(tree, *args, share_data=True)
    assert proc.returncode == 0, f"make {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def test_the_summary_warns_through_make(tree):
    """A gpt2 matrix without variants, run by make: alike. Then one cell's manifest says
    it ran on an H100 with a halved batch and another was retried: `make summary` says so
    on stdout, in summary.json and on each figure."""
    _make(tree, "defconfig-gpt2-ablation-cpu")
    small = "VARIANTS= SEEDS='0 1' GPT2_MAX_STEPS=4 GPT2_WARMUP_STEPS=1 GPT2_EVAL_INTERVAL=2"
    _make(tree, f"SET={small}", "setconfig")
    run = _make(tree)
    assert "warning: the figures compare" not in run
    root = tree / "results" / "gpt2-ablation-cpu"
    summary = json.loads((root / "summary" / "summary.json").read_text())
    assert summary["apples_to_apples"] == {"cells": 2, "without_manifest": 0, "differences": {}}
    figure = root / "summary" / "loss_curves.png"
    height = _png_height(figure)

    manifest = root / "cells" / "adamw-fp32-s1" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["gpu"] = {"name": "NVIDIA H100 80GB HBM3", "driver": "570.86"}
    data["ran_with"] = {"batch_size": 4, "grad_accum": 2, "oom_retries": 1}
    manifest.write_text(json.dumps(data))
    result = root / "cells" / "adamw-fp32-s0" / "result.json"
    data = json.loads(result.read_text())
    data["attempt"] = 2
    result.write_text(json.dumps(data))

    out = _make(tree, "summary")
    assert (
        "warning: the figures compare 2 cells that differ in more than their axes (gpu, "
        "attempt, batch_size, grad_accum, oom_retries):"
    ) in out
    assert "  batch_size: as planned (1 cell, e.g. adamw-fp32-s0); 8 -> 4 (1 cell, e.g. " in out
    found = json.loads((root / "summary" / "summary.json").read_text())["apples_to_apples"]
    assert set(found["differences"]) == {
        "gpu",
        "attempt",
        "batch_size",
        "grad_accum",
        "oom_retries",
    }
    assert found["stamped"] == ["final_val_loss.png", "loss_curves.png"]
    assert _png_height(figure) > height  # the line under the figure


def _png_height(path):
    import matplotlib.pyplot as plt

    return plt.imread(path).shape[0]


def test_a_setting_a_cell_does_not_record_is_no_difference(tmp_path):
    """A diverged gpt2 run records no runtime knobs (compile, tf32 ...): its silence is
    not a value that differs from the others' (seen on a GPU transect run, where every
    diverged cell made the summary warn about compile)."""
    cells = [
        _cell(tmp_path, "ok", {"knobs": {"profile": "paper_repro", "compile": False}}),
        _cell(tmp_path, "diverged", {"knobs": {"profile": "paper_repro"}}, status="diverged"),
    ]
    report = compare.differences(tmp_path, [c for c, _ in cells], {c.id: r for c, r in cells})
    assert report["differences"] == {} and report["cells"] == 2
    other = _cell(tmp_path, "compiled", {"knobs": {"profile": "paper_repro", "compile": True}})
    cells.append(other)
    report = compare.differences(tmp_path, [c for c, _ in cells], {c.id: r for c, r in cells})
    assert [v["value"] for v in report["differences"]["compile"]] in (
        ["false", "true"],
        ["true", "false"],
    )
