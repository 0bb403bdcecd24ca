"""The paper-mode fractal workload on the CPU: zoom geometry, the centre descent, the
staged plan (centres, then frames), runs with pixel reuse, dry runs and the summary."""

import json
import math

import numpy as np
import pytest
import torch

from fractal import paper_cells, zoom
from fractal import paper as workload
from kmatrix.cell import Cell, RunContext, cell_id
from kmatrix.config import Config
from kmatrix.errors import ConfigError
from kmatrix.plan import plan
from kmatrix.files import write_json_atomic

BASE = dict(
    name="t",
    workload="fractal",
    profile="paper_repro",
    seeds=[0],
    fractal_engine="mlp",
    fractal_experiments=["tanh", "paraminit"],
    fractal_resolution=8,
    fractal_steps=50,
    fractal_steps_per_experiment=False,
    fractal_dtype="float64",
    fractal_backend="torch",
    fractal_data="seeded",
    fractal_x_min=-3.0,
    fractal_x_max=6.0,
    fractal_y_min=-3.0,
    fractal_y_max=6.0,
    fractal_zoom_frames=1,
    fractal_paths=["paper", "auto"],
    fractal_zoom_outer_width=6.0,
    fractal_descent_resolution=9,
    fractal_zoom_point_x=None,
    fractal_zoom_point_y=None,
    fractal_zoom_point_width=None,
    fractal_dimension="pow2",
    fractal_exit="nonfinite",
    fractal_exit_verify=False,
    fractal_reuse_pixels=True,
    fractal_minibatch_size=16,
    fractal_tail=20,
)
ZOOM = dict(fractal_zoom_frames=3, fractal_resolution=9, fractal_steps=40)


def make_cell(cfg, point, index=0):
    return Cell(
        point["experiment"], index, "fractal.paper", point, 0, workload.cell_params(cfg, point)
    )


def run_stages(cfg, tmp_path, device="cpu"):
    """What the driver does with a staged plan: run every cell of a stage, then ask for the
    next stage, until there is none. Returns (cells, results)."""
    cells, results, todo = [], {}, plan(cfg)
    while todo:
        cells += todo
        for cell in todo:
            ctx = RunContext(device, tmp_path / "cells" / cell.id, {}, "paper_repro", root=tmp_path)
            results[cell.id] = json.loads(json.dumps(workload.run(cell, ctx)))
            write_json_atomic(ctx.out_dir / "result.json", results[cell.id])
        specs = workload.next_stage(cfg, cells, results)  # ids as the core builds them
        todo = [
            Cell(cell_id(s["point"], list(s["point"])), len(cells) + i, "fractal.paper",
                 s["point"], s["run_seed"], s["params"])
            for i, s in enumerate(specs)
        ]  # fmt: skip
    return cells, results


# ------------------------------------------------------------------------------ geometry


def test_ladder_puts_the_paper_panels_at_their_frames():
    for name, (_, _, width, frame) in zoom.PAPER_PANELS.items():
        w0, j = zoom.ladder(width)
        assert j == frame, name
        assert 6.0 <= w0 < 12.0 and w0 == math.ldexp(width, frame)
    assert zoom.ladder(9.0) == (9.0, 0)
    assert zoom.ladder(13.0) == (6.5, -1)


@pytest.mark.parametrize("n", [9, 257, 1025])
def test_frames_share_pixels_bitwise(n):
    # frame k's inner quarter is every other point of frame k + 1: the same float64
    # log10 coordinates and learning rates, bit for bit, at any depth
    inner, deeper = zoom.shared_pixels(n)
    assert len(inner) == (n + 1) // 2 and inner[0] == (n - 1) // 4
    for name, (x, y, width, _) in zoom.PAPER_PANELS.items():
        w0, _ = zoom.ladder(width)
        for k in (0, 7, 23, 42):
            gx, gy = zoom.frame_grid((x, y), w0, k, n)
            hx, hy = zoom.frame_grid((x, y), w0, k + 1, n)
            assert np.array_equal(gx[inner], hx[deeper]) and np.array_equal(gy[inner], hy[deeper])
            assert np.array_equal(10.0 ** gx[inner], 10.0 ** hx[deeper])
            assert gx[(n - 1) // 2] == x  # the centre is a pixel
            assert np.isclose(gx[-1] - gx[0], math.ldexp(w0, -k), rtol=1e-9)
    assert len(zoom.shared_pixels(8)[0]) == 0  # even sizes share nothing


def test_known_from_deeper():
    deeper = np.arange(81.0).reshape(9, 9)
    mask, values = zoom.known_from_deeper(deeper)
    assert mask.sum() == 25 and mask[2:7, 2:7].all()
    assert values[2, 2] == deeper[0, 0] and values[4, 4] == deeper[4, 4]
    assert values[6, 3] == deeper[8, 2]


# ------------------------------------------------------------------------------ descent


def disc(n, cx, cy, r):
    y, x = np.mgrid[0:n, 0:n]
    return np.where((x - cx) ** 2 + (y - cy) ** 2 < r * r, -1.0, 1.0)


def test_choose_point_moves_onto_the_boundary():
    v = disc(33, 16, 16, 3)  # the boundary is a ring 3 px from the centre
    (dx, dy), info = zoom.choose_point(v, "near")
    assert info["status"] == "ok" and 2 <= math.hypot(dx, dy) <= 4
    assert max(abs(dx), abs(dy)) <= 4  # within the middle quarter: the frames nest
    # a ring 10 px out is beyond the middle quarter: a step towards it, clipped
    (dx, dy), info = zoom.choose_point(disc(33, 16, 16, 10), "near")
    assert info["status"] == "outside" and max(abs(dx), abs(dy)) == 4
    assert zoom.choose_point(-np.ones((9, 9)))[1]["status"] == "blank"


def test_choose_point_prefers_dense_boundary_and_avoids_speckle():
    rng = np.random.default_rng(0)
    v = np.where(np.arange(65)[None, :] < 40, 1.0, -1.0) * np.ones((65, 1))  # a line at x=40
    v[:, [24, 25, 28, 29]] = -1.0  # stripes: more boundary than the line, and no speckle
    v[:, :20] = np.where(rng.random((65, 20)) < 0.5, -1.0, 1.0)  # sign noise left of them
    (dx, _), info = zoom.choose_point(v, "dense")
    # the stripes' next windows reach into the noise: the line, whose window is clean
    assert info["status"] == "ok" and dx + 32 == 39.5 and info["isolated_fraction"] == 0
    clean = v.copy()
    clean[:, :20] = 1.0
    found, _ = zoom.candidates(clean, "dense")
    assert len(found) > 1 and -8 <= found[0][0] <= -2  # without the noise the stripes win
    stats = zoom.frame_stats(v)
    assert stats["speckled"] and not stats["blank"]
    assert not zoom.frame_stats(disc(65, 30, 30, 20))["speckled"]
    noise = np.where(rng.random((65, 65)) < 0.5, -1.0, 1.0)
    assert zoom.candidates(noise)[0] == [] and zoom.choose_point(noise)[1]["status"] == "speckled"


def test_descent_follows_a_boundary_and_is_deterministic():
    # a circle of radius 0.3 decades around (1, 1): the descent from a point 0.2 away
    # ends on it, and the same inputs give the same centre
    def compute(c, w, n=33):
        g = (np.arange(n) - (n - 1) / 2) * (w / (n - 1))
        y, x = np.meshgrid(c[1] + g, c[0] + g, indexing="ij")
        return np.where((x - 1) ** 2 + (y - 1) ** 2 < 0.09, -1.0, 1.0)

    a = zoom.descend(compute, (1.2, 1.0), 1.0, 1e-6, 33, "near")
    b = zoom.descend(compute, (1.2, 1.0), 1.0, 1e-6, 33, "near")
    assert a == b and len(a["levels"]) == 20  # widths 1, 1/2, ..., 2^-19 >= 2e-6
    r = math.hypot(a["centre"][0] - 1, a["centre"][1] - 1)
    assert abs(r - 0.3) < 1e-5
    assert all(lv["status"] == "ok" for lv in a["levels"])


def speckle_world(c, w, n=33):
    """The line x = 0 and, right of it, a region that looks like dense clean stripes from
    afar (windows wider than 0.3) and is sign noise from closer: a trap for a greedy
    descent that prefers dense boundary."""
    g = (np.arange(n) - (n - 1) / 2) * (w / (n - 1))
    y, x = np.meshgrid(c[1] + g, c[0] + g, indexing="ij")
    if w > 0.3:
        inside = np.sin(2 * np.pi * x / 0.06) < 0
    else:
        inside = np.modf(np.abs(np.sin(x * 12989.8 + y * 78233.0) * 43758.5453))[0] < 0.5
    trap = (x > 0.04) & (x < 0.2) & (np.abs(y) < 0.1)
    return np.where(trap, np.where(inside, -1.0, 1.0), np.where(x < 0, -1.0, 1.0))


def test_descent_backs_out_of_speckle_and_its_frames_are_clean():
    found = zoom.descend(speckle_world, (0.05, 0.0), 2.0, 1e-4, 33, "dense")
    assert found["backtracks"] >= 1 and found["images"] <= 2 * len(found["levels"])
    assert abs(found["centre"][0]) < 1e-3  # on the clean line, not in the trap
    for k in range(15):  # every frame around the final centre, 2 down to 1.2e-4 wide
        stats = zoom.frame_stats(speckle_world(found["centre"], math.ldexp(2.0, -k)))
        assert not stats["blank"] and not stats["speckled"], (k, stats)
    # the frames nest: each within the descent image twice as wide (the first move may go
    # twice as far: to anywhere a window half as wide fits)
    for i, lv in enumerate(found["levels"]):
        off = max(abs(a - b) for a, b in zip(found["centre"], lv["centre"]))
        assert off <= lv["width"] * (3 / 8 if i == 0 else 1 / 4)
    assert found == zoom.descend(speckle_world, (0.05, 0.0), 2.0, 1e-4, 33, "dense")


# ------------------------------------------------------------------------------ planning


def test_plan_and_validate():
    cfg = Config(BASE)
    workload.validate(cfg)
    assert workload.axes(cfg) == [("experiment", ["tanh", "paraminit"])]
    assert workload.axes(cfg.replace(seeds=[0, 1]))[1] == ("seed", [0, 1])
    p = workload.cell_params(cfg, {"experiment": "paraminit"})
    assert p["axes"] == "paraminit_vs_lr" and p["window"] == [-3.0, 6.0, -3.0, 6.0]
    assert p["kind"] == "image"
    json.dumps(p)  # params must be JSON
    z = cfg.replace(**ZOOM)
    assert workload.axes(z)[1] == ("path", ["paper", "auto"])
    p = workload.cell_params(z, {"experiment": "tanh", "path": "paper"})
    assert p["kind"] == "centre" and p["anchor_frame"] == 23 and p["prefer"] == "near"
    assert p["deepest_width"] == p["width0"] / 4
    assert [c.id for c in plan(z)][:2] == ["tanh-paper", "tanh-auto"]
    steps = z.replace(fractal_steps_per_experiment=True, fractal_steps_tanh=500)
    assert workload.cell_params(steps, {"experiment": "tanh", "path": "auto"})["steps"] == 500
    for bad, symbol in [
        (dict(fractal_x_min=7.0), "FRACTAL_X_MIN"),
        (dict(fractal_experiments=[]), "FRACTAL_EXPERIMENT_TANH"),
        (dict(fractal_steps=10), "FRACTAL_STEPS"),
        (dict(fractal_dimension="paper"), "FRACTAL_DIMENSION_PAPER"),
        (dict(**ZOOM, fractal_paths=[]), "FRACTAL_PATH_PAPER"),
        (dict(**ZOOM, fractal_paths=["given"]), "FRACTAL_ZOOM_POINT_X"),
        (dict(fractal_data="file", fractal_data_file_path="/nonexistent/{experiment}.npz"),
         "FRACTAL_DATA_FILE_PATH"),
        (dict(fractal_data="notebook", fractal_experiments=["minibatch"]), "FRACTAL_STEPS"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError) as e:
            workload.validate(cfg.replace(**bad))
        assert e.value.symbol == symbol


# ------------------------------------------------------------------------------ running


def test_image_run_and_summary(tmp_path):
    cfg = Config(BASE)
    cells = [make_cell(cfg, {"experiment": "tanh"}), make_cell(cfg, {"experiment": "paraminit"}, 1)]
    cell = cells[0]
    out = tmp_path / "cells" / cell.id
    result = workload.run(cell, RunContext("cpu", out, profile="paper_repro"))
    assert result["status"] == "ok"
    m = result["metrics"]
    assert 0 <= m["converged_fraction"] <= 1 and m["pixel_steps_per_s"] > 0
    v = np.load(out / "frame_00.npy")
    assert v.shape == (8, 8) and (out / "frame_00.png").stat().st_size > 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["steps"] == 50 and meta["dtype"] == "float64" and meta["device"] == "cpu"
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temp files
    json.dumps(result)
    (tmp_path / "summary").mkdir()
    summary = workload.summarize(
        tmp_path / "summary", cells, {cell.id: result, cells[1].id: None}, cfg
    )
    assert set(summary) == {"tanh"} and summary["tanh"]["frames"] == 1


def test_staged_zoom_run_reuses_pixels_and_summarises(tmp_path):
    cfg = Config({**BASE, **ZOOM, "fractal_experiments": ["tanh"], "fractal_data": "notebook"})
    cells, results = run_stages(cfg, tmp_path)
    ids = [c.id for c in cells]
    assert ids[:2] == ["tanh-paper", "tanh-auto"]
    # frames deepest first, interleaved across paths
    assert ids[2:] == [f"tanh-{p}-f{k}" for k in (2, 1, 0) for p in ("paper", "auto")]
    paper_path = results["tanh-paper"]
    # three frames down to 1.6 decades, shallower than the panel: the centre is the panel's
    assert paper_path["centre"] == list(zoom.PAPER_PANELS["tanh"][:2])
    assert paper_path["descent"] == []
    auto = results["tanh-auto"]
    assert len(auto["descent"]) == 2 and auto["width0"] == 9.0  # images 9 and 4.5 wide
    for k in (0, 1):  # every shallower frame copied a quarter from the deeper one
        r = results[f"tanh-paper-f{k}"]
        assert r["metrics"]["reused_pixels"] == 25
    assert results["tanh-paper-f2"]["metrics"]["reused_pixels"] == 0
    # the copied pixels are those the frame would have computed (torch: to rounding,
    # since the products change shape; the kernels: bitwise, tested on the GPU)
    c = next(c for c in cells if c.id == "tanh-auto-f0")

    fresh, _, _ = paper_cells.frame_values({**c.params, "reuse": False}, "cpu")
    saved = np.load(tmp_path / "cells" / c.id / "frame.npy")
    assert np.array_equal(fresh["values"] < 0, saved < 0)
    np.testing.assert_allclose(saved, fresh["values"], rtol=1e-10)
    meta = json.loads((tmp_path / "cells" / c.id / "meta.json").read_text())
    assert meta["width"] == 9.0 and meta["data_digest"] and len(meta["slopes"]) >= 1
    # the summary (the core hands it every stage the results decide, kmatrix/stages.py)
    (tmp_path / "summary").mkdir(exist_ok=True)
    s = workload.summarize(tmp_path / "summary", cells, results, cfg)
    assert set(s) == {"tanh/paper", "tanh/auto"}
    assert s["tanh/paper"]["frames_done"] == 3 and s["tanh/paper"]["reused_pixels"] == 50
    lo, hi = s["tanh/auto"]["spread_16_84"]
    assert lo is None or lo <= s["tanh/auto"]["dimension"] <= hi
    for name in ("fractal_summary.png", "slopes_vs_depth.png", "frames-tanh-paper.png"):
        assert (tmp_path / "summary" / name).stat().st_size > 1000
    assert workload.next_stage(cfg, cells, results) == []  # frames planned: complete


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_staged_run_on_the_gpu(tmp_path):
    # every experiment through the Triton backend: centres, frames with reuse, summary
    names = ["tanh", "relu", "identity", "minibatch", "single_datapoint", "paraminit"]
    cfg = Config({**BASE, **ZOOM, "fractal_experiments": names, "fractal_backend": "auto",
                  "fractal_resolution": 33, "fractal_dimension": "paper"})  # fmt: skip
    cells, results = run_stages(cfg, tmp_path, "cuda")
    frames = [r for r in results.values() if "frame" in r]
    assert len(frames) == 6 * 2 * 3 and all(r["backend"] == "triton" for r in frames)
    assert sum(r["metrics"]["reused_pixels"] for r in frames) == 6 * 2 * 2 * 17 * 17
    (tmp_path / "summary").mkdir()
    s = workload.summarize(tmp_path / "summary", cells, results, cfg)
    assert len(s) == 12 and all(v["frames_done"] == 3 for v in s.values())


def test_threshold_verification_reports_changes(tmp_path):
    cfg = Config({**BASE, **ZOOM, "fractal_experiments": ["relu"], "fractal_paths": ["auto"],
                  "fractal_exit": "threshold", "fractal_exit_verify": True})  # fmt: skip
    cells, results = run_stages(cfg, tmp_path)
    r = results["relu-auto-f0"]
    assert set(r["verify"]) == {"sign_changed", "value_changed", "pixel_steps_saved"}
    assert r["verify"]["pixel_steps_saved"] >= 0


def test_dry_run(tmp_path):
    for extra in ({}, ZOOM):
        cfg = Config({**BASE, **extra})
        for name in ["tanh", "relu", "identity", "minibatch", "single_datapoint", "paraminit"]:
            point = {"experiment": name, **({"path": "auto"} if extra else {})}
            workload.dry_run(make_cell(cfg, point), RunContext("cpu", tmp_path))


def test_probe_scales_a_smaller_real_cell_to_the_cell(tmp_path):
    """`make estimate`: an image cell is run at 33 pixels, every step, figures included,
    and its training scaled by the pixels; a zoom path counts its frames less the quarter
    each reuses."""
    cfg = Config({**BASE, "fractal_resolution": 66, "fractal_steps": 30})
    image = workload.probe(make_cell(cfg, {"experiment": "tanh"}), RunContext("cpu", tmp_path))
    assert image["per_cell"] == 66 * 66 * 30 and image["unit"] == "pixel-steps"
    assert image["seconds_per_cell"] > 0 and (tmp_path / "frame_00.png").is_file()
    zoom = Config({**BASE, **ZOOM, "fractal_resolution": 33, "fractal_steps": 30})
    path = make_cell(zoom, {"experiment": "tanh", "path": "auto"})
    frames = workload.probe(path, RunContext("cpu", tmp_path / "z"))
    assert frames["per_cell"] == 33 * 33 * 30 * 3  # three frames
    assert (tmp_path / "z" / "frame.png").is_file()  # a frame's files are timed too
