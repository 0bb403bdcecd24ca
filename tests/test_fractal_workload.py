"""The paper-mode fractal workload end to end on the CPU: plan, run, dry run, summary."""

import json

import numpy as np
import pytest

from fractal import workload
from kmatrix.cell import Cell, RunContext
from kmatrix.config import Config
from kmatrix.errors import ConfigError

BASE = dict(
    name="t",
    profile="paper_repro",
    seeds=[0],
    fractal_engine="mlp",
    fractal_experiments=["tanh", "paraminit"],
    fractal_resolution=8,
    fractal_steps=50,
    fractal_dtype="float64",
    fractal_backend="torch",
    fractal_x_min=-3.0,
    fractal_x_max=6.0,
    fractal_y_min=-3.0,
    fractal_y_max=6.0,
    fractal_zoom_frames=2,
    fractal_zoom_factor=2.0,
    fractal_zoom_point_x=None,
    fractal_zoom_point_y=None,
    fractal_minibatch_size=16,
    fractal_tail=20,
)


def make_cell(cfg, point, index=0):
    return Cell(
        f"{point['experiment']}",
        index,
        "fractal.workload",
        point,
        0,
        workload.cell_params(cfg, point),
    )


def test_plan_and_validate():
    cfg = Config(BASE)
    workload.validate(cfg)
    assert workload.axes(cfg) == [("experiment", ["tanh", "paraminit"])]
    assert workload.axes(cfg.replace(seeds=[0, 1]))[1] == ("seed", [0, 1])
    p = workload.cell_params(cfg, {"experiment": "paraminit"})
    assert p["axes"] == "paraminit_vs_lr" and p["window"] == [-3.0, 6.0, -3.0, 6.0]
    json.dumps(p)  # params must be JSON
    for bad, symbol in [
        (dict(fractal_x_min=7.0), "FRACTAL_X_MIN"),
        (dict(fractal_experiments=[]), "FRACTAL_EXPERIMENT_TANH"),
        (dict(fractal_zoom_factor=1.0), "FRACTAL_ZOOM_FACTOR"),
        (dict(fractal_zoom_point_x=1.0), "FRACTAL_ZOOM_POINT_X"),
    ]:
        with pytest.raises(ConfigError) as e:
            workload.validate(cfg.replace(**bad))
        assert e.value.symbol == symbol


def test_run_end_to_end_and_summary(tmp_path):
    cfg = Config(BASE)
    cells = [make_cell(cfg, {"experiment": "tanh"}), make_cell(cfg, {"experiment": "paraminit"}, 1)]
    cell = cells[0]
    out = tmp_path / "cells" / cell.id
    result = workload.run(cell, RunContext("cpu", out, profile="paper_repro"))
    assert result["status"] == "ok"
    m = result["metrics"]
    assert 0 <= m["converged_fraction"] <= 1 and m["pixel_steps_per_s"] > 0
    assert len(result["frames"]) == 2
    for k in range(2):
        v = np.load(out / f"frame_{k:02d}.npy")
        assert v.shape == (8, 8)
        assert (out / f"frame_{k:02d}.png").stat().st_size > 0
    assert (out / "zoom.gif").exists() and result["animation"] == "zoom.gif"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["steps"] == 50 and meta["dtype"] == "float64" and meta["device"] == "cpu"
    w0, w1 = meta["frames"][0]["window"], meta["frames"][1]["window"]
    assert w0[0] <= w1[0] < w1[1] <= w0[1] and np.isclose(w1[1] - w1[0], 4.5)
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temp files
    json.dumps(result)

    # summary with the second cell missing
    summary = (
        workload.summarize(
            tmp_path / "summary_dir", cells, {cell.id: result, cells[1].id: None}, cfg
        )
        if (tmp_path / "summary_dir").mkdir() is None
        else None
    )
    assert set(summary) == {"tanh"} and summary["tanh"]["frames"] == 2


def test_dry_run(tmp_path):
    cfg = Config(BASE)
    for name in ["tanh", "relu", "identity", "minibatch", "single_datapoint", "paraminit"]:
        workload.dry_run(make_cell(cfg, {"experiment": name}), RunContext("cpu", tmp_path))
