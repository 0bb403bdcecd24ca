"""The matrix driver with the fake workload: resume, faults, retries, lock, pinning."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kmatrix import driver, results
from kmatrix.errors import ConfigError
from kmatrix.executor import LocalExecutor, local_slots
from kmatrix.plan import plan, read_plan
from kmatrix.estimate import estimate
from tests.conftest import make_cfg, runs_of, status_of

ROOT = Path(__file__).resolve().parent.parent


def test_statuses_exit_code_and_resume(tmp_path, capsys):
    cfg = make_cfg(tmp_path, behaviours=["ok", "diverge", "raise"], seeds=[0, 1])
    assert driver.run_matrix(cfg, live=False) == 1  # a failed cell -> non-zero
    out = capsys.readouterr().out
    assert "2 cell(s) failed" in out and "raise-s0" in out and "log.txt" in out
    assert status_of(cfg, "ok-s0") == "ok"
    assert status_of(cfg, "diverge-s1") == "diverged"  # a result, not a failure
    assert status_of(cfg, "raise-s0") == "failed"
    assert runs_of(cfg, "raise-s0") == 1  # not transient: no retry
    root = results.results_dir(cfg)
    assert (root / "summary" / "results.csv").exists()
    assert json.loads((root / "summary" / "summary.json").read_text())["counts"]["failed"] == 2
    assert len(json.loads((root / "plan.json").read_text())["cells"]) == 6
    assert read_plan(root / "plan.json") == plan(cfg)  # fully resolved, compactly written

    # Rerun: ok and diverged cells are skipped, failed ones run again.
    assert driver.run_matrix(cfg, live=False) == 1
    assert runs_of(cfg, "ok-s0") == 1 and runs_of(cfg, "diverge-s0") == 1
    assert runs_of(cfg, "raise-s0") == 2

    ok_only = make_cfg(tmp_path / "b", behaviours=["ok", "diverge"])
    assert driver.run_matrix(ok_only, live=False) == 0


def test_transient_failures_are_retried(tmp_path):
    cfg = make_cfg(tmp_path, behaviours=["transient", "raise"])
    assert driver.run_matrix(cfg, live=False) == 1
    assert status_of(cfg, "transient-s0") == "ok"
    assert runs_of(cfg, "transient-s0") == 2  # failed once with ConnectionError, retried
    assert runs_of(cfg, "raise-s0") == 1  # ValueError is not transient

    no_retries = make_cfg(tmp_path / "b", behaviours=["transient"], exec_retries=0)
    assert driver.run_matrix(no_retries, live=False) == 1
    assert runs_of(no_retries, "transient-s0") == 1


def test_dead_worker_costs_only_its_cell(tmp_path):
    cfg = make_cfg(
        tmp_path, behaviours=["exit", "segfault", "ok"], seeds=[0, 1], exec_cpu_workers=1
    )
    assert driver.run_matrix(cfg, live=False) == 1
    root = results.results_dir(cfg)
    exit_result = results.read_result(root, "exit-s0")
    assert exit_result["status"] == "failed" and "status 7" in exit_result["error"]
    assert "SIGSEGV" in results.read_result(root, "segfault-s1")["error"]
    # The single slot got a fresh worker after each death and finished the rest.
    assert status_of(cfg, "ok-s0") == "ok" and status_of(cfg, "ok-s1") == "ok"


def _children(pid):
    """Pids of the processes whose parent is `pid` (the driver's workers)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    return [int(p) for p, pp in (line.split() for line in out.splitlines()) if int(pp) == pid]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split()[2] == "Z")  # a zombie is dead


def test_cell_timeout(tmp_path):
    # The timeout leaves the ok cell (well under a second) room on a loaded machine.
    cfg = make_cfg(tmp_path, behaviours=["hang", "ok"], exec_cell_timeout=8, exec_cpu_workers=1)
    assert driver.run_matrix(cfg, live=False) == 1
    assert "timeout" in results.read_result(results.results_dir(cfg), "hang-s0")["error"]
    assert status_of(cfg, "ok-s0") == "ok"


def test_lock_refuses_a_second_driver(tmp_path):
    cfg = make_cfg(tmp_path)
    root = results.results_dir(cfg)
    with results.Lock(root):
        with pytest.raises(ConfigError, match="another driver is running"):
            driver.run_matrix(cfg, live=False)
    assert driver.run_matrix(cfg, live=False) == 0  # released


def test_config_change_is_refused_unless_forced(tmp_path):
    cfg = make_cfg(tmp_path)
    assert driver.run_matrix(cfg, live=False) == 0
    changed = cfg.replace(behaviours=["ok", "diverge"])
    with pytest.raises(ConfigError, match="another configuration"):
        driver.run_matrix(changed, live=False)
    # Where it runs is not what it computes: more workers is not a new configuration.
    assert driver.run_matrix(cfg.replace(exec_cpu_workers=1), live=False) == 0
    assert driver.run_matrix(changed, force=True, live=False) == 0
    assert runs_of(cfg, "ok-s0") == 1


def test_gpu_pinning_with_fake_ids(tmp_path):
    cfg = make_cfg(tmp_path, seeds=list(range(8)), sleep=0.2, exec_jobs_per_gpu=2)
    slots = local_slots(cfg, gpus=[3, 5])
    assert [name for name, _ in slots] == ["gpu3.0", "gpu3.1", "gpu5.0", "gpu5.1"]
    executor = LocalExecutor(slots)
    assert driver.run_matrix(cfg, executor=executor, live=False) == 0
    root = results.results_dir(cfg)
    seen = {}
    for cell in plan(cfg):
        result = results.read_result(root, cell.id)
        seen.setdefault(result["metrics"]["pid"], set()).add(result["env"]["CUDA_VISIBLE_DEVICES"])
    assert all(len(ids) == 1 for ids in seen.values())  # each worker sees one GPU
    assert set().union(*seen.values()) == {"3", "5"}


def test_kill_9_of_the_driver_loses_nothing(tmp_path):
    """kill -9 mid-matrix, rerun: no finished cell lost, none run twice."""
    gate = tmp_path / "gate"  # cells of seed >= 3 wait for it: exactly 3 finish first
    cfg = make_cfg(tmp_path, seeds=list(range(12)), gate=str(gate), gate_seed=3)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(cfg.as_dict()))
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from kmatrix import config, driver
        sys.exit(driver.run_matrix(config.load({str(config_path)!r}), live=False))
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    root = results.results_dir(cfg)
    deadline = time.time() + 60
    while time.time() < deadline:
        done = [c for c in plan(cfg) if results.is_done(results.read_result(root, c.id))]
        if len(done) >= 3:
            break
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30  # workers die with the driver (PR_SET_PDEATHSIG)
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)
    finished = {c.id for c in plan(cfg) if results.is_done(results.read_result(root, c.id))}
    assert len(finished) == 3
    gate.touch()
    assert driver.run_matrix(cfg, live=False) == 0  # the lock died with the driver
    for cell in plan(cfg):
        assert status_of(cfg, cell.id) == "ok"
        if cell.id in finished:
            assert runs_of(cfg, cell.id) == 1, cell.id  # finished before the kill: kept


def test_check_catches_a_broken_option(tmp_path, capsys):
    cfg = make_cfg(tmp_path, behaviours=["ok", "raise"], seeds=[0, 1])
    assert driver.check_matrix(cfg) == 0
    broken = cfg.replace(broken_dry_run=True)
    assert driver.check_matrix(broken) == 1
    out = capsys.readouterr().out
    assert "FAIL  ok-s0" in out and "broken option caught" in out
    assert "PASS  raise-s0" in out
    assert not results.results_dir(cfg).exists()  # a check writes no results


def test_validation_error_stops_before_anything_runs(tmp_path):
    cfg = make_cfg(tmp_path, fail_validate=True)
    with pytest.raises(ConfigError, match="FAKE_OPTION"):
        driver.run_matrix(cfg, live=False)
    assert not results.results_dir(cfg).exists()


def test_wandb_offline_one_run_per_cell_and_a_summary(tmp_path):
    cfg = make_cfg(tmp_path, seeds=[0, 1], track_wandb="offline", exec_cpu_workers=1)
    assert driver.run_matrix(cfg, live=False) == 0
    runs = list((results.results_dir(cfg) / "wandb").glob("offline-run-*"))
    assert len(runs) == 3  # two cells + the summary run


def test_wandb_disabled_writes_nothing(tmp_path):
    cfg = make_cfg(tmp_path, track_wandb="disabled")
    assert driver.run_matrix(cfg, live=False) == 0
    assert not (results.results_dir(cfg) / "wandb").exists()
    assert not (tmp_path / "wandb").exists()


def test_repro_check_passes_and_reports_a_difference(tmp_path, capsys):
    from kmatrix.repro import repro_check

    cfg = make_cfg(tmp_path, behaviours=["ok", "noisy"])
    assert repro_check(cfg, gpus=[]) == 0
    assert "PASS    bitwise identical across 2 runs" in capsys.readouterr().out
    assert repro_check(cfg, cell_id="noisy-s0", gpus=[]) == 1
    out = capsys.readouterr().out
    assert "DIFF    b vs a: losses: 1 of 3 values differ; first at index 2" in out
    # With (fake) GPUs: twice on the first, once on each other one.
    assert repro_check(cfg, gpus=[0, 1]) == 0
    assert "3 runs" in capsys.readouterr().out


def test_estimate_counts_one_time_preparation_once(tmp_path, capsys):
    # 8 cells on 2 workers; seed 0 cells estimate 1 s, seed 1 cells 2 s. Each worker's
    # first probe adds 1000 s of preparation (a download, say), which must not be counted
    # per cell. (The seconds are the fake workload's answers, not slept: on a loaded
    # machine only the worker's overhead around a probe grows, never by 1000 s.)
    cfg = make_cfg(tmp_path, seeds=[0, 1], behaviours=["a", "b", "c", "d"], prepare=1000.0)
    assert estimate(cfg) == 0
    out = capsys.readouterr().out
    assert "CELLS   8" in out and "8 to run" in out
    assert "COVERS  the spread of the 4 probed cells' times" in out  # and says what it does not
    assert "not a change of load" in out
    probe = next(line for line in out.splitlines() if "PROBE" in line)
    low, high = (float(v) for v in probe.split("cells: ")[1].split(" s per cell")[0].split(".."))
    assert 1.0 <= low < high and 2.0 <= high < 1000  # the spread, and no preparation
    total = next(line for line in out.splitlines() if "TOTAL" in line)
    minutes = total.split("about ")[1].split(" (")[0]
    seconds = float(minutes.split()[0]) * (60 if "min" in minutes else 1)
    assert 4 * 1.0 <= seconds < 1000  # 4 rounds of 1-2 s cells plus start-up, once
    # finished cells are not estimated again
    assert driver.run_matrix(cfg, live=False) == 0
    assert estimate(cfg) == 0 and "0 to run" in capsys.readouterr().out


def test_eta_leaves_out_each_slots_first_cell_once_others_finish(capsys):
    from kmatrix.progress import Progress

    progress = Progress(102, live=False, slots=2)
    assert progress.eta() is None
    progress.finished("a", "ok", 8.0, "cpu0")  # warm-up: the only figure there is
    assert progress.eta() == pytest.approx(8.0 * 101 / 2)
    progress.finished("b", "ok", 8.0, "cpu1")
    progress.finished("c", "ok", 3.0, "cpu0")  # a slot's second cell: warm-up is out
    assert progress.eta() == pytest.approx(3.0 * 99 / 2)
    progress.finished("d", "ok", 2.0, "cpu1")
    assert progress.eta() == pytest.approx(2.5 * 98 / 2)
    assert "ETA 0:02:02" in capsys.readouterr().out.splitlines()[-1]
