"""Adaptive refinement of a grid at its boundary: exact where computed, inferred elsewhere,
on label functions whose boundary is known (a line, a circle) and on a fractal one (the
paper's tanh image), then through the driver: levels, resume, summary."""

import csv
import json

import numpy as np
import pytest

from kmatrix import driver, refine, results
from kmatrix.errors import ConfigError
from kmatrix.plan import plan
from tests.conftest import refined_cfg


def refined(truth, levels, guard=1, verify=0):
    """derive() driven to the end by an oracle: (labels as an array, walk dict, computed)."""
    return refine.replay(truth.astype(bool), levels, guard, verify)


def grid(n):
    t = np.linspace(-1, 1, n)
    return np.meshgrid(t, t)


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_a_line_and_a_circle_are_found_exactly(levels):
    x, y = grid(65)
    for truth in (y < 0.3 * x + 0.1, x**2 + y**2 < 0.5):
        labels, out, computed = refined(truth, levels)
        assert (labels == truth).all()
        assert set(out["inferred"]).isdisjoint(computed)
        assert len(computed) < 0.5 * truth.size  # the point of it


def test_guard_band_catches_what_the_coarse_cell_misses():
    n = 33  # levels=3: coarse points every 8
    j, i = np.mgrid[0:n, 0:n]
    # a boundary at j = 12 with a spike down to j = 19 between the coarse columns 16 and
    # 24: the coarse cell [16, 24] x [16, 24] it reaches into has four corners of one label
    truth = (j < 12) | ((i >= 19) & (i <= 21) & (j < 20))
    without, _, _ = refined(truth, levels=3, guard=0)
    assert (without != truth).sum() > 0  # no guard: the spike's tip is inferred wrong
    with_guard, _, _ = refined(truth, levels=3, guard=1)
    assert (with_guard == truth).all()  # the band sees the boundary next to that cell


def test_a_feature_touching_no_coarse_point_is_missed_at_any_guard():
    j, i = np.mgrid[0:33, 0:33]
    blob = (i - 17) ** 2 + (j - 18) ** 2 < 4  # inside one coarse cell, away from its corners
    for guard in (0, 1, 2):  # every coarse label is the same: a known limit of refinement
        labels, _, _ = refined(blob, levels=3, guard=guard)
        assert not labels.any()


def test_a_small_grid_is_walked_stage_by_stage_in_point_order():
    # 5 x 5 points, one level (coarse points every 2), no guard; the label is True for
    # i >= 3, so the coarse columns i = 0, 2 are False and i = 4 is True
    def truth(i, j):
        return i >= 3

    for band, last in ((0, []), (1, [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (4, 1), (4, 3)])):
        stages = []

        def walk(label_of):
            out = refine.derive(1, 0, 0, 5, 5, label_of, band=band)
            stages.append(out["pending"])
            return out

        out, _ = refine.drive(walk, truth)
        assert stages[0] == [(i, j) for i in (0, 2, 4) for j in (0, 2, 4)]
        # cells i in [0, 2] hold False only, cells i in [4, 4] True only, [2, 4] both
        assert stages[1] == [(2, 1), (2, 3), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)]
        # the band (1 point) around the change between i = 2 and 3 takes in i = 1 and 4
        assert stages[2:] == ([last, []] if band else [[]])
        inferred = [(0, 1), (0, 3)] + (
            [] if band else [(1, j) for j in range(5)] + [(4, 1), (4, 3)]
        )
        assert list(out["inferred"].items()) == [(p, truth(*p)) for p in inferred]
        assert sorted(out["labels"].items()) == [
            ((i, j), i >= 3) for i in range(5) for j in range(5)
        ]
        assert out["level"] == 2 and out["verified"] == []
        # all 9 inferred points were within 4 points of the coarse change when counted
        assert out["strata"] == {(1, 0): 9, (1, 1): 0, (1, 2): 0, (1, 3): 0, (1, 4): 0}


def test_a_fractal_boundary_from_the_paper_engine():
    from fractal import engine
    from fractal.common import EXPERIMENTS

    image = engine.compute_image(
        **EXPERIMENTS["tanh"],
        window=(0.9, 1.3, 2.1, 2.5),  # 0.4 decades around a wiggly part of the boundary
        resolution=33,
        steps=100,
        backend="torch",
    )
    truth = image["converged"]
    assert 0.1 < truth.mean() < 0.9
    labels, out, computed = refined(truth, levels=3, guard=1, verify=50)
    assert all(labels[j, i] == truth[j, i] for i, j in computed)  # computed: exact
    misses = (labels != truth).mean()
    assert misses < 0.02, misses  # measured: 0.2% of 4225 points, all near the boundary
    assert len(computed) < 0.6 * truth.size
    assert out["verified"] and all(v[3] == truth[v[1], v[0]] for v in out["verified"])


def test_a_grid_that_cannot_nest_is_refused(tmp_path):
    cfg = refined_cfg(tmp_path, sweep_x_points=10)
    with pytest.raises(ConfigError, match="SWEEP_X_POINTS: 10 points cannot be refined 2 times"):
        plan(cfg)


def test_the_driver_runs_a_refined_grid_level_by_level_and_resumes(tmp_path, capsys):
    cfg = refined_cfg(tmp_path)
    assert [(c.point["i"], c.point["j"]) for c in plan(cfg)] == [
        (i, j) for i in (0, 4, 8, 12, 16) for j in (0, 4, 8, 12, 16)
    ]
    assert driver.run_matrix(cfg, live=False) == 0
    out = capsys.readouterr().out
    assert "stage 1:" in out and "stage 2:" in out
    root = results.results_dir(cfg)
    ran = {p.parent.name for p in root.glob("cells/*/result.json")}
    assert 25 < len(ran) < 0.75 * 289
    with open(root / "summary" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 289
    statuses = [r["status"] for r in rows]
    assert statuses.count("ok") == len(ran) and statuses.count("inferred") == 289 - len(ran)
    for r in rows:  # every label right: the boundary lr = momentum is a line
        assert (r["inside"] == "True") == (float(r["lr"]) < float(r["momentum"])), r
    report = json.loads((root / "summary" / "summary.json").read_text())["refinement"]
    (grid,) = report.values()
    assert grid["complete"] and grid["computed"] + grid["inferred"] == 289
    assert 0 < grid["verified"] <= 6 and grid["miss_rate"] == 0.0  # up to 3 per level
    # a run killed during the last level: its cells are missing, and make resumes there
    last = [c for c in ran if int(c[-2:]) % 2]  # odd j: points new at the last level
    for cell in last:
        (root / "cells" / cell / "result.json").unlink()
    assert driver.run_matrix(cfg, live=False) == 0
    out = capsys.readouterr().out
    assert "stage 1:" in out and "0 to run" in out and f"{len(last)} to run" in out
    assert driver.summary_only(cfg) == 0  # make summary replays the levels from results
