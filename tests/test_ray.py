"""The Ray executor on a local Ray instance with two fake GPUs (CPU only, as in CI).

One Ray instance serves every test here: starting one takes seconds on a small machine.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kmatrix import driver, kconfig, ray_executor, results
from kmatrix.schedule import make_executor
from kmatrix.config import Config
from kmatrix.errors import ConfigError
from kmatrix.plan import plan
from tests.conftest import make_cfg, refined_cfg, runs_of, status_of

ROOT = Path(__file__).resolve().parent.parent

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (pip install .[ray])",
)


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    ray.init(
        num_gpus=2,  # fake GPUs: Ray hands out ids 0 and 1 through CUDA_VISIBLE_DEVICES
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 1024**2,
    )
    yield ray
    ray.shutdown()


def ray_cfg(tmp_path, **overrides):
    values = dict(
        exec_executor="ray",
        exec_gpus=["auto"],  # under Ray: the cluster's GPUs
        exec_retry_pattern="ConnectionError|ray worker died",
    )
    return make_cfg(tmp_path, **{**values, **overrides})


def finished(cfg):
    root = results.results_dir(cfg)
    return {c.id for c in plan(cfg) if results.is_done(results.read_result(root, c.id))}


class Interrupted(Exception):
    pass


class StopAfter:
    """An executor that raises like Ctrl-C once `n` cells have ended."""

    def __init__(self, inner, n):
        self.inner, self.n, self.ended = inner, n, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.inner.close()

    def poll(self, timeout=0.5):
        if self.ended >= self.n:
            raise Interrupted
        done = self.inner.poll(timeout)
        self.ended += len(done)
        return done


def test_missing_ray_names_the_symbol_and_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(ConfigError, match=r"EXEC_EXECUTOR: .*ray.*pip install \.\[ray\]"):
        make_executor(ray_cfg(tmp_path))


@needs_ray
def test_each_cell_sees_its_own_gpu(tmp_path, ray_instance, capsys):
    cfg = ray_cfg(tmp_path, seeds=list(range(6)), sleep=0.2)
    assert driver.run_matrix(cfg, live=False) == 0
    assert "/gpu0" in capsys.readouterr().out  # slot names say where they run
    root = results.results_dir(cfg)
    gpus_of_pid = {}
    for cell in plan(cfg):
        result = results.read_result(root, cell.id)
        gpus_of_pid.setdefault(result["metrics"]["pid"], set()).add(
            result["env"]["CUDA_VISIBLE_DEVICES"]
        )
        manifest = (results.cell_dir(root, cell.id) / "manifest.json").read_text()
        assert ":4096:8" in manifest  # the run profile's CUBLAS_WORKSPACE_CONFIG reached it
    assert len(gpus_of_pid) == 2  # two persistent workers ran the six cells
    assert all(len(ids) == 1 for ids in gpus_of_pid.values())  # each keeps its GPU
    assert set().union(*gpus_of_pid.values()) == {"0", "1"}


@needs_ray
def test_a_cell_on_two_gpus_gets_an_actor_holding_both(tmp_path, ray_instance):
    cfg = ray_cfg(tmp_path, seeds=[0, 1], gpus_per_cell=2)
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    seen = {results.read_result(root, c.id)["env"]["CUDA_VISIBLE_DEVICES"] for c in plan(cfg)}
    assert seen == {"0,1"}  # one actor of both fake GPUs ran the two cells


@needs_ray
def test_dead_worker_is_retried_and_timeout_kills(tmp_path, ray_instance):
    cfg = ray_cfg(
        tmp_path,
        behaviours=["die_once", "exit", "hang", "ok"],
        exec_retries=1,
        exec_cell_timeout=10,
    )
    assert driver.run_matrix(cfg, live=False) == 1
    root = results.results_dir(cfg)
    assert status_of(cfg, "die_once-s0") == "ok" and runs_of(cfg, "die_once-s0") == 2
    exit_result = results.read_result(root, "exit-s0")
    assert exit_result["status"] == "failed" and "ray worker died" in exit_result["error"]
    assert runs_of(cfg, "exit-s0") == 2  # one retry, then it stays failed
    hang = results.read_result(root, "hang-s0")
    assert "timeout" in hang["error"] and runs_of(cfg, "hang-s0") == 1  # not transient
    assert status_of(cfg, "ok-s0") == "ok"


@needs_ray
@pytest.mark.parametrize("first", ["ray", "local"])
def test_resume_across_executors(tmp_path, ray_instance, first):
    """Interrupted under one executor, finished under the other: nothing runs twice."""
    # Ray on CPU slots when it finishes the matrix: both slot kinds get exercised.
    gpus = ["auto"] if first == "ray" else ["none"]
    cfg = ray_cfg(tmp_path, seeds=list(range(8)), sleep=0.3, exec_gpus=gpus)
    local = cfg.replace(exec_executor="local", exec_gpus=["none"])
    start, finish = (cfg, local) if first == "ray" else (local, cfg)
    with pytest.raises(Interrupted):
        driver.run_matrix(start, executor=StopAfter(make_executor(start), 3), live=False)
    before = finished(cfg)
    assert 3 <= len(before) < 8
    assert driver.run_matrix(finish, live=False) == 0  # same config hash: EXEC_* excluded
    root = results.results_dir(cfg)
    for cell in plan(cfg):
        assert status_of(cfg, cell.id) == "ok"
        if cell.id in before:
            assert runs_of(cfg, cell.id) == 1, cell.id
        elif finish is cfg:
            assert results.read_result(root, cell.id)["env"]["CUDA_VISIBLE_DEVICES"] == ""


@needs_ray
def test_kill_9_of_the_driver_stops_its_workers(tmp_path, ray_instance):
    """No Ray worker finishes a cell for a dead driver; the rerun loses nothing."""
    address = ray_instance.get_runtime_context().gcs_address
    gate = tmp_path / "gate"  # cells of seed >= 2 wait for it: exactly 2 finish first
    cfg = ray_cfg(
        tmp_path, seeds=list(range(6)), gate=str(gate), gate_seed=2, exec_ray_address=address
    )
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(cfg.as_dict()))
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from kmatrix import config, driver
        sys.exit(driver.run_matrix(config.load({str(config_path)!r}), live=False))
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    # generous: on a loaded machine Ray's workers take long to start; the loop ends as
    # soon as the two cells are in
    deadline = time.time() + 300
    while len(finished(cfg)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = finished(cfg)
    assert len(before) == 2, f"{len(before)} of the 2 ungated cells finished within 300 s"
    # the workers notice the driver's death within DRIVER_CHECK_S; give them ten times
    # that (a loaded machine schedules their watcher late) before the gate opens
    time.sleep(10 * ray_executor.DRIVER_CHECK_S)
    gate.touch()  # a surviving worker would now finish its cell at once
    time.sleep(2.0)
    assert finished(cfg) == before and len(before) == 2
    assert driver.run_matrix(cfg.replace(exec_ray_address=""), live=False) == 0
    for cell in plan(cfg):
        assert status_of(cfg, cell.id) == "ok"
        if cell.id in before:
            assert runs_of(cfg, cell.id) == 1, cell.id


@needs_ray
@pytest.mark.skipif(
    importlib.util.find_spec("gpt2.workload") is None, reason="no gpt2 workload yet"
)
def test_tiny_gpt2_matrix_on_ray(tmp_path, ray_instance):
    """A real workload end to end: two GPT-2 cells (tiny, 3 steps) in Ray workers."""
    words = "the cat sat on a mat and the dog ran far away".split()
    (tmp_path / "text.txt").write_text(" ".join(words[i * 7 % 12] for i in range(6000)))
    kconfig.apply_defconfig("default", dotconfig=tmp_path / ".config")
    values = kconfig.setconfig(
        f"WORKLOAD_GPT2=y OPTIMIZER_ADAMW=y OPTIMIZER_MUON=y PRECISION_FP32=y SEEDS=0 "
        f"GPT2_DATA_FILES=y GPT2_DATA_PATHS={tmp_path}/text.txt GPT2_DATA_DIR={tmp_path}/data "
        f"GPT2_MAX_STEPS=3 GPT2_WARMUP_STEPS=0 GPT2_BATCH_SIZE=2 GPT2_BLOCK_SIZE=32 "
        f"GPT2_EVAL_BATCHES=1 GPT2_EVAL_INTERVAL=0 TRACK_WANDB_DISABLED=y "
        f"EXEC_EXECUTOR_RAY=y EXEC_RESULTS_ROOT={tmp_path}/results",
        dotconfig=tmp_path / ".config",
    )
    cfg = Config(values)
    assert cfg.exec_executor == "ray"
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    for cell in plan(cfg):
        result = results.read_result(root, cell.id)
        assert result["status"] == "ok" and result["metrics"]["steps"] == 3, cell.id
        manifest = json.loads((results.cell_dir(root, cell.id) / "manifest.json").read_text())
        assert manifest["env"]["CUDA_VISIBLE_DEVICES"] in ("0", "1")  # a Ray GPU worker


@needs_ray
def test_a_refined_grid_runs_level_by_level_on_ray(tmp_path, ray_instance):

    cfg = refined_cfg(
        tmp_path, sweep_x_points=9, sweep_y_points=9, exec_executor="ray", exec_gpus=["auto"]
    )
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    computed = list(root.glob("cells/*/result.json"))
    assert 9 < len(computed) < 81  # the coarse grid and the points near the line
    summary = json.loads((root / "summary" / "summary.json").read_text())
    (grid,) = summary["refinement"].values()
    assert grid["complete"] and grid["computed"] == len(computed) and grid["miss_rate"] == 0.0


def _family(pid):
    """(pid, start time) of `pid`'s descendants: the processes a private Ray started."""
    from kmatrix.ray_executor import _stat

    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        stat = _stat(entry)
        if stat:
            children.setdefault(stat[0], []).append((int(entry), stat[1]))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


@needs_ray
def test_the_ray_head_dying_is_our_message_keeps_results_and_leaves_no_process(tmp_path):
    """The head's GCS is killed mid-run: the driver says so in its own words within
    seconds, keeps and summarises what finished, and no process of its Ray is left."""
    from kmatrix.ray_executor import _stat

    cfg = ray_cfg(tmp_path, seeds=list(range(8)), sleep=1.5, exec_ray_address="")
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(cfg.as_dict()))
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONPATH": str(ROOT)}  # a private Ray
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "matrix.py"), "run", "--config", str(config_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while len(finished(cfg)) < 1 and time.time() < deadline:
        time.sleep(0.1)
    family = _family(proc.pid)
    gcs = [p for p, _ in family if b"gcs_server" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert gcs and finished(cfg), "the run never started"
    os.kill(gcs[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-2000:]
    assert "the Ray head at" in err and "is gone" in err and "Traceback" not in err
    done = finished(cfg)
    assert done and all(status_of(cfg, c) == "ok" for c in done)
    summary = json.loads((results.results_dir(cfg) / "summary" / "summary.json").read_text())
    assert summary["counts"]["ok"] == len(done)
    time.sleep(1.0)
    left = [p for p, start in family | _family(proc.pid) if (_stat(p) or (0, None))[1] == start]
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left]
