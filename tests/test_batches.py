"""Cells grouped into batch jobs (kmatrix/batches.py) by the workload's batch_key."""

from kmatrix import kconfig
from kmatrix.batches import halves, make_batches
from kmatrix.config import Config
from kmatrix.plan import plan


def _cfg(tmp_path, **kw):
    values = kconfig.apply_defconfig("fractal-16x16", dotconfig=tmp_path / ".config")
    return Config(values).replace(sweep_x_points=4, sweep_y_points=3, **kw)


def _ids(batches):
    return [[c.id for c in b] for b in batches]


def test_a_grid_with_shared_seeds_forms_even_batches(tmp_path):
    cfg = _cfg(tmp_path)
    cells = plan(cfg)
    assert cfg.exec_batch  # on by default
    batches = make_batches(cfg, cells, n_slots=2)
    assert [len(b) for b in batches] == [6, 6]
    assert sum(_ids(batches), []) == [c.id for c in cells]
    assert [len(b) for b in make_batches(cfg.replace(exec_batch_cells=5), cells)] == [5, 5, 2]
    assert _ids(make_batches(cfg.replace(exec_batch=False), cells)) == [[c.id] for c in cells]


def test_on_a_cpu_the_workload_limits_its_batches(tmp_path):
    # gpt2.params.batch_limit: on a CPU a model trains in a batch only while it is small
    # (CPU_BATCH_BYTES); the flagship's 50,304-token model trains alone there
    from gpt2.params import CPU_BATCH_BYTES, model_bytes

    cfg = _cfg(tmp_path)
    cells = plan(cfg)
    assert model_bytes(cells[0].params, 50304) > CPU_BATCH_BYTES
    assert [len(b) for b in make_batches(cfg, cells, n_slots=1, cpu=True)] == [1] * 12
    assert [len(b) for b in make_batches(cfg, cells, n_slots=1)] == [12]  # a GPU's
    forced = cfg.replace(exec_batch_cells=4)  # a number set by hand is taken as it is
    assert [len(b) for b in make_batches(forced, cells, n_slots=1, cpu=True)] == [4, 4, 4]
    values = kconfig.apply_defconfig("fractal-char-16x16", dotconfig=tmp_path / ".config")
    char = plan(Config(values).replace(sweep_x_points=4, sweep_y_points=3))
    sizes = [len(b) for b in make_batches(Config(values), char, n_slots=1, cpu=True)]
    assert sizes == [5, 5, 2]  # a 2-layer character model of about 6 MB: 5 to a batch


def test_cells_that_cannot_share_batches_run_alone(tmp_path):
    per_point = plan(_cfg(tmp_path, sweep_seeds="per_point"))  # other seeds, other batches
    assert all(len(b) == 1 for b in make_batches(_cfg(tmp_path), per_point))
    cells = plan(_cfg(tmp_path))
    cells[3].params["n_embd"] = 32  # another shape: another group
    cells[5].params["checkpoint_interval"] = 10  # unbatchable: alone
    batches = make_batches(_cfg(tmp_path), cells, n_slots=1)
    assert sorted(len(b) for b in batches) == [1, 1, 10]
    assert [cells[3].id] in _ids(batches) and [cells[5].id] in _ids(batches)


def test_a_failed_batch_splits_in_halves():
    assert halves([1, 2, 3, 4, 5]) == [[1, 2, 3], [4, 5]]
    assert halves([1, 2]) == [[1], [2]]


def _fake_cfg(tmp_path, **kw):
    from tests.conftest import make_cfg

    base = dict(behaviours=["ok", "raise", "diverge", "other"], seeds=[0, 1], batched=True)
    return make_cfg(tmp_path, exec_batch=True, exec_cpu_workers=1, **{**base, **kw})


def test_a_failed_batch_runs_again_in_halves_and_only_the_bad_cells_fail(tmp_path):
    from kmatrix import driver, results

    cfg = _fake_cfg(tmp_path)
    cells = plan(cfg)
    driver.run_matrix(cfg, live=False)
    root = results.results_dir(cfg)
    status = {c.id: results.read_result(root, c.id)["status"] for c in cells}
    for c in cells:
        want = {"raise": "failed", "diverge": "diverged"}.get(c.point["behaviour"], "ok")
        assert status[c.id] == want, c.id
    batches = [line.split() for line in (tmp_path / "count" / "batches").read_text().splitlines()]
    assert batches[0] == [c.id for c in cells]  # one batch first (one worker)
    bad = {c.id for c in cells if c.point["behaviour"] == "raise"}
    assert [len(b) for b in batches] == [8, 4, 4, 2, 2]  # halves, then quarters, then
    for c in cells:  # single cells (run alone, not in a batch): every cell ran to its
        assert len((tmp_path / "count" / c.id).read_text().split()) == 1, c.id  # result once
    log = (root / "cells" / cells[0].id / "log.txt").read_text()
    assert "trained together" in log


def test_resume_reruns_only_the_unfinished_cells_of_a_batch(tmp_path):
    from kmatrix import driver, results

    cfg = _fake_cfg(tmp_path, behaviours=["ok", "other"])
    cells = plan(cfg)
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    for c in (cells[1], cells[2]):  # killed before these two finished
        (root / "cells" / c.id / "result.json").unlink()
    assert driver.run_matrix(cfg, live=False) == 0
    batches = (tmp_path / "count" / "batches").read_text().splitlines()
    assert batches[-1].split() == [cells[1].id, cells[2].id]  # the two, as one batch
    for n, c in enumerate(cells):
        assert len((tmp_path / "count" / c.id).read_text().split()) == (2 if n in (1, 2) else 1)
        assert results.read_result(root, c.id)["status"] == "ok"


def test_repro_check_runs_a_batched_cell_in_a_batch(tmp_path):
    from kmatrix.repro import repro_check

    cfg = _fake_cfg(tmp_path, behaviours=["ok", "other", "diverge"])
    lines = []
    assert repro_check(cfg, gpus=[], out=lines.append) == 0
    assert "in a batch of 4" in lines[0] and "PASS" in lines[-1]
    batches = (tmp_path / "count" / "batches").read_text().splitlines()
    assert len(batches) == 2 and all(len(b.split()) == 4 for b in batches)  # runs a and b
