"""Transects and zoom sequences of LLM maps (llmmap/): on label functions of known
structure (a smooth boundary, a Weierstrass function's zero set, the Mandelbrot set),
then wired into the LLM workload's stages and summary with stand-in results."""

import math

import numpy as np
import pytest

from fractal import dimension
from llmmap import maps as llm
from kmatrix import kconfig, refine, stages
from kmatrix.config import Config
from kmatrix.errors import ConfigError
from kmatrix.plan import plan
from llmmap import probes, transects, zoom_maps


def run_transects(truth, lines, points, depths):
    """transects.walk driven to the end by an oracle truth(line, u)."""
    return refine.drive(lambda label_of: transects.walk(lines, points, depths, label_of), truth)


def weierstrass(x, a=0.7, b=2, terms=40):
    return sum(a**k * math.cos(b**k * math.pi * x) for k in range(terms))


def test_a_smooth_boundary_has_one_change_at_every_depth_and_shares_half():
    P, D = 65, 10
    unit = transects.unit(1.0, P, D)
    out, known = run_transects(lambda n, u: u * unit > 0.0123 * (n + 1), 2, P, D)
    for line in out["lines"]:
        assert [len(r["changes"]) for r in line] == [1] * D
    assert len(known) == 2 * (P + (D - 1) * (P - 1) // 2)  # each depth shares half


def test_a_fractal_zero_set_shows_more_changes_with_depth():
    P, D = 65, 8
    unit = transects.unit(1.0, P, D)
    x0 = 0.3  # a zero of W near here: the walk finds the change nearest the centre
    out, _ = run_transects(lambda n, u: weierstrass(x0 + u * unit) > 0, 1, P, D)
    counts = [len(r["changes"]) for r in out["lines"][0]]
    assert all(c >= 1 for c in counts) and len(counts) == D
    assert np.median(counts[2:]) >= 3, counts  # structure at every scale: never one crossing


def test_a_line_that_loses_the_boundary_stops():
    out, _ = run_transects(lambda n, u: True, 1, 9, 4)
    assert [r["status"] for r in out["lines"][0]] == ["lost"]


def mandelbrot(x, y, iters=200):
    c, z = x + 1j * y, np.zeros_like(x, dtype=complex)
    inside = np.ones(np.shape(x), dtype=bool)
    for _ in range(iters):
        z = np.where(inside, z * z + c, z)
        inside &= np.abs(z) <= 2
    return inside


def run_zoom(truth, frames, n, **settings):
    return refine.drive(lambda label_of: zoom_maps.walk(frames, n, label_of, **settings), truth)


def frame_image(frame, n):
    img = np.zeros((n, n))
    for (i, j), lab in frame["labels"].items():
        img[j, i] = 1.0 if lab else -1.0
    return img


def test_zoom_frames_nest_share_a_quarter_and_read_a_line_as_one():
    n, F = 33, 5
    unit = zoom_maps.unit(1.0, n, F)
    out, known = run_zoom(lambda u, v: v * unit < 0.3 * u * unit + 0.01, F, n)
    assert [f["status"] for f in out["frames"]] == ["ok"] * F
    h = (n - 1) // 2
    shared = (h // 2 * 2 + 1) ** 2  # the quarter around the new centre, at even offsets
    assert len(known) <= n * n + (F - 1) * (n * n - shared) + 2 * F * n
    assert len(known) < F * n * n * 0.85
    for f in out["frames"]:
        d = dimension.fractal_dimension(frame_image(f, n))
        assert abs(d - 1.0) < 0.1, d


def test_zoom_into_the_mandelbrot_boundary_reads_above_one_refined():
    n, F = 33, 5
    unit = zoom_maps.unit(0.05, n, F)
    x0, y0 = -0.7473, 0.1102

    def truth(u, v):
        return bool(mandelbrot(np.array(x0 + u * unit), np.array(y0 + v * unit)))

    out, known = run_zoom(truth, F, n, levels=2, guard=1, verify=5, band=1)
    assert len(out["frames"]) == F and all(f["status"] == "ok" for f in out["frames"])
    assert any(f["inferred"] for f in out["frames"]) and len(known) < F * n * n
    slopes = [
        dimension.box_count(frame_image(f, n), method="pow2")["slopes"] for f in out["frames"]
    ]
    assert dimension.pooled_median(slopes) > 1.2


# ---------------------------------------------------------------------------- wiring


@pytest.fixture
def probe_cfg(tmp_path):
    values = kconfig.apply_defconfig("fractal-16x16", dotconfig=tmp_path / ".config")
    return Config(values).replace(
        sweep_x_points=5,
        sweep_y_points=5,
        exec_results_root=str(tmp_path / "results"),
        exec_gpus=["none"],
        track_wandb="disabled",
        llmmap_probe="transects",
        llmmap_points=9,
        llmmap_depths=4,
        llmmap_width=1.0,
        llmmap_lines=2,
        llmmap_centres=[],
        llmmap_zoom_refine_levels=0,
        llmmap_zoom_guard=1,
        llmmap_zoom_band=1,
        llmmap_zoom_verify=0,
    )


BOUNDARY = -1.4  # log10 unembedding lr: the stand-in map is trainable below it


def stand_in(cell):
    y = math.log10(cell.params["unembedding_lr"])
    return {
        "id": cell.id,
        "status": "ok",
        "metrics": {"stable": True, "trainable": y < BOUNDARY, "final_train_loss": 5.0 + y},
    }


def staged_run(cfg):
    cells = plan(cfg)
    found = {c.id: stand_in(c) for c in cells}
    while True:
        new = stages.next_stage(cfg, cells, found)
        if not new:
            return cells, found
        found.update({c.id: stand_in(c) for c in new})
        cells = cells + new


@pytest.mark.parametrize("kind", ["transects", "zoom"])
def test_probes_run_as_stages_and_summarize(probe_cfg, tmp_path, kind):
    cfg = probe_cfg.replace(llmmap_probe=kind, llmmap_points=9 if kind == "transects" else 17)
    cells, found = staged_run(cfg)
    grid, probe = probes.split(cells)
    assert len(grid) == 25 and probe
    assert len({c.id for c in cells}) == len(cells)  # shared points planned once
    assert {c.run_seed for c in probe} == {grid[0].run_seed}
    out = llm.summarize(tmp_path, cells, found, cfg)["probe"]
    assert out["complete"] and out["probe_cells_computed"] == len(probe)
    if kind == "transects":
        assert (tmp_path / "probe-transects.png").is_file()
        for line in out["lines"]:
            assert abs(line["direction"][1]) > 0.99  # across a boundary of constant y
            assert [d["label_changes"] for d in line["depths"]] == [1] * 4
            assert [d["trainable_changes"] for d in line["depths"]] == [1] * 4
            y = math.log10(line["depths"][-1]["centre"][1])
            assert abs(y - BOUNDARY) <= line["depths"][-1]["step_decades"] + 1e-12
            assert line["deepest_fp32_resolved_depth"] > 10
    else:
        assert (tmp_path / "probe-zoom.png").is_file()
        assert len(out["frames"]) == 4
        assert all(f["dimension"] == pytest.approx(1.0, abs=0.1) for f in out["frames"])
        assert sum(f["shared_with_earlier_frames"] for f in out["frames"]) > 0


def test_probes_refuse_a_refined_grid_and_even_points(probe_cfg):
    with pytest.raises(ConfigError, match="LLMMAP_PROBE: .*computed in full"):
        llm.validate(probe_cfg.replace(sweep_refine=True))
    with pytest.raises(ConfigError, match="LLMMAP_POINTS"):
        llm.validate(probe_cfg.replace(llmmap_points=8))
