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
    assert [len(b) for b in make_batches(cfg, cells, n_slots=1, cpu=True)] == [12]
    assert _ids(make_batches(cfg.replace(exec_batch=False), cells)) == [[c.id] for c in cells]


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
