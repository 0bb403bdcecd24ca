"""The job protocol and the executor interface (kmatrix/job.py, kmatrix/executor.py)."""

import json
import pickle

import pytest

from kmatrix import estimate as estimate_module
from kmatrix import results
from kmatrix.executor import LocalExecutor, local_slots
from kmatrix.job import Job, make_job
from kmatrix.plan import plan
from kmatrix.progress import Progress
from kmatrix.schedule import schedule
from tests.conftest import make_cfg


def test_a_job_crosses_the_process_boundary_as_json_and_pickle(tmp_path):
    cfg = make_cfg(tmp_path, seeds=[0, 1])
    cells = plan(cfg)
    job = make_job(cfg, "run", results.results_dir(cfg)).for_cells(cells, attempt=2)
    for copy in (
        Job.from_dict(json.loads(json.dumps(job.to_dict()))),
        pickle.loads(pickle.dumps(job)),
    ):
        assert copy == job and [c.id for c in copy.cells] == [c.id for c in cells]
    assert job.id == f"{cells[0].id} +1" and job.for_cells(cells[:1]).id == cells[0].id
    assert [r["id"] for r in job.lost("gone")] == [c.id for c in cells]
    with pytest.raises(ValueError, match="kind"):
        make_job(cfg, "train", tmp_path)


def test_one_job_runs_several_cells_each_with_its_own_files(tmp_path, capsys):
    cfg = make_cfg(tmp_path, seeds=[0, 1, 2], exec_cpu_workers=1)
    cells = plan(cfg)
    root = results.results_dir(cfg)
    job = make_job(cfg, "run", root)
    with LocalExecutor(local_slots(cfg, max_cells=1)) as executor:
        progress = Progress(len(cells), live=False)
        final = schedule(cfg, cells, executor, job, progress, batches=[cells])
    assert {k: r["status"] for k, r in final.items()} == {c.id: "ok" for c in cells}
    for cell in cells:
        directory = results.cell_dir(root, cell.id)
        assert results.read_result(root, cell.id)["status"] == "ok"
        assert json.loads((directory / "manifest.json").read_text())["cell"] == cell.id
        assert f"== cell {cell.id} attempt 1" in (directory / "log.txt").read_text()
    out = capsys.readouterr().out
    assert all(f"ok       {c.id}" in out for c in cells) and progress.done == len(cells)


def test_executors_say_whether_they_run_on_cpu(tmp_path):
    cfg = make_cfg(tmp_path)
    assert LocalExecutor(local_slots(cfg)).cpu
    assert not LocalExecutor(local_slots(cfg, gpus=[0])).cpu


def test_estimate_counts_the_slots_of_the_executor_it_probes_on(tmp_path, monkeypatch, capsys):
    # Under EXEC_EXECUTOR_RAY the probes run on Ray's slots, not on this machine's CPU
    # workers: the rounds and the slots named must be the executor's (here three).
    cfg = make_cfg(tmp_path, seeds=[0, 1, 2], exec_executor="ray", exec_cpu_workers=1)
    assert len(local_slots(cfg, max_cells=3)) == 1
    ray_like = [(f"ray{k}", env) for k, (_, env) in enumerate(local_slots(cfg, max_cells=1) * 3)]
    monkeypatch.setattr(estimate_module, "make_executor", lambda *a, **k: LocalExecutor(ray_like))
    assert estimate_module.estimate(cfg) == 0
    out = capsys.readouterr().out
    assert "on 3 slot(s): ray0, ray1, ray2" in out


def test_quiet_progress_counts_and_prints_nothing(capsys):
    progress = Progress(2, quiet=True, live=True)
    progress.finished("a", "ok", 1.0, "cpu0")
    progress.finished("b", "failed", 1.0, "cpu0")
    assert (progress.done, progress.failed) == (2, 1) and capsys.readouterr().out == ""
