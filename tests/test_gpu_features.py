"""Out-of-memory fallback, GPU usage sampling and DDP cells, on the CPU: the memory limit
is injected (GPT2_FAKE_OOM_ABOVE), NVML is a fake with known readings, and DDP runs over
gloo with two processes."""

import json
from types import SimpleNamespace

import pytest
import torch

from gpt2 import runner, workload
from gpt2.params import unbatchable
from kmatrix import gpu_usage
from kmatrix.cell import Cell, RunContext
from kmatrix.errors import ConfigError
from kmatrix.executor import local_slots
from kmatrix.job import Job
from kmatrix.worker import run_job
from tests.conftest import TINY_RUN, FakeTokens, gpt2_cfg


def _cell(cfg, seed=0, **params):
    point = {"optimizer": "adamw", "precision": "fp32", "seed": seed}
    p = {**workload.cell_params(cfg, point), **params}
    return Cell(f"adamw-fp32-s{seed}", 0, "gpt2.workload", point, seed, p)


def _ctx(tmp_path, cell, name="cell"):
    ctx = RunContext(device="cpu", out_dir=tmp_path / name)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    ctx.cache[("gpt2.data", json.dumps(cell.params["data"], sort_keys=True), "data")] = FakeTokens()
    return ctx


def _cfg(**values):
    return gpt2_cfg(**{**TINY_RUN, "GPT2_BATCH_SIZE": 8, "GPT2_WARMUP_STEPS": 1, **values})


# ------------------------------------------------------------------ out-of-memory fallback


def test_oom_fallback_equals_the_smaller_micro_batch_from_the_start(tmp_path, monkeypatch):
    """A cell whose micro-batches of more than 2 sequences do not fit (after one that
    did: the failed try trained a little) halves twice, 8x1 -> 4x2 -> 2x4, and trains
    the same losses as a cell configured with 2 x 4 from the start, on the same tokens."""
    cfg = _cfg()
    cell = _cell(cfg)
    monkeypatch.setenv("GPT2_FAKE_OOM_ABOVE", "2:1")
    fell_back = runner.run(cell, _ctx(tmp_path, cell, "a"))
    monkeypatch.delenv("GPT2_FAKE_OOM_ABOVE")
    assert fell_back["ran_with"] == {"batch_size": 2, "grad_accum": 4, "oom_retries": 2}
    small = _cell(cfg, batch_size=2, grad_accum=4)
    direct = runner.run(small, _ctx(tmp_path, small, "b"))
    assert direct["ran_with"] == {"batch_size": 2, "grad_accum": 4, "oom_retries": 0}
    assert fell_back["losses"] == direct["losses"]  # bitwise, on the CPU
    assert fell_back["metrics"]["tokens"] == 3 * 8 * 16 == direct["metrics"]["tokens"]
    assert fell_back["metrics"]["steps"] == 3
    # the configured batch size's validation batches: the experiment's val set is kept
    plain = runner.run(cell, _ctx(tmp_path, cell, "c"))
    assert plain["ran_with"]["oom_retries"] == 0
    assert fell_back["val_losses"][-1][1] == pytest.approx(plain["val_losses"][-1][1], rel=1e-3)
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize(
    "floor, batch, says",
    [(4, 8, "below GPT2_OOM_MIN_BATCH=4"), (0, 8, "GPT2_OOM_MIN_BATCH=0"), (1, 6, "halved")],
)
def test_a_cell_that_does_not_fit_fails_saying_so(tmp_path, monkeypatch, floor, batch, says):
    cfg = _cfg(GPT2_OOM_MIN_BATCH=floor, GPT2_BATCH_SIZE=batch)
    cell = _cell(cfg)
    monkeypatch.setenv("GPT2_FAKE_OOM_ABOVE", "2")
    with pytest.raises(runner.OutOfMemory, match="does not fit in GPU memory") as e:
        runner.run(cell, _ctx(tmp_path, cell))
    assert says in str(e.value) and "GPT2_BATCH_SIZE" in str(e.value)


def test_the_worker_records_what_ran_in_manifest_and_result(tmp_path, monkeypatch):
    cfg = _cfg()
    cell = _cell(cfg)
    monkeypatch.setenv("GPT2_FAKE_OOM_ABOVE", "4")
    cache = {("gpt2.data", json.dumps(cell.params["data"], sort_keys=True), "data"): FakeTokens()}
    job = Job(kind="run", root=str(tmp_path), cells=[cell], git={"sha": None})
    [reply] = run_job(job, cache, {})
    assert reply["status"] == "ok", reply
    directory = tmp_path / "cells" / cell.id
    manifest = json.loads((directory / "manifest.json").read_text())
    result = json.loads((directory / "result.json").read_text())
    ran = {"batch_size": 4, "grad_accum": 2, "oom_retries": 1}
    assert manifest["ran_with"] == ran == result["ran_with"]
    assert result["gpu_usage"] == gpu_usage.NO_GPU
    torch.use_deterministic_algorithms(False)


def _job(tmp_path, cells):
    key = ("gpt2.data", json.dumps(cells[0].params["data"], sort_keys=True), "data")
    job = Job(kind="run", root=str(tmp_path), cells=cells, git={"sha": None})
    return job, {key: FakeTokens()}


def _read(tmp_path, cell, name):
    return json.loads((tmp_path / "cells" / cell.id / name).read_text())


def test_a_diverged_cell_and_a_batch_of_cells_record_what_ran(tmp_path, monkeypatch):
    cfg = _cfg()
    monkeypatch.setenv("GPT2_FAKE_OOM_ABOVE", "4")
    hot = _cell(cfg, matrix_lr=1e30, embedding_lr=1e30, vector_lr=1e30, unembedding_lr=1e30)
    [reply] = run_job(*_job(tmp_path, [hot]), {})
    assert reply["status"] == "diverged", reply
    ran = {"batch_size": 4, "grad_accum": 2, "oom_retries": 1}
    assert _read(tmp_path, hot, "result.json")["ran_with"] == ran
    assert _read(tmp_path, hot, "manifest.json")["ran_with"] == ran
    # two cells trained together (K models per step): no fallback, the configured batch
    monkeypatch.delenv("GPT2_FAKE_OOM_ABOVE")
    a = _cell(cfg, matrix_lr=1e-3, batch_models=2)  # K = 2 (the CPU trains one this size alone)
    b = Cell("adamw-fp32-s0-b", 1, "gpt2.workload", a.point, 0, {**a.params, "matrix_lr": 2e-3})
    replies = run_job(*_job(tmp_path / "batch", [a, b]), {})
    assert [r["status"] for r in replies] == ["ok", "ok"], replies
    for cell in (a, b):
        result = _read(tmp_path / "batch", cell, "result.json")
        assert result["knobs"]["batched_models"] == 2
        assert result["ran_with"] == {"batch_size": 8, "grad_accum": 1, "oom_retries": 0}
        assert _read(tmp_path / "batch", cell, "manifest.json")["ran_with"] == result["ran_with"]
        assert result["gpu_usage"] == gpu_usage.NO_GPU
    torch.use_deterministic_algorithms(False)


# ------------------------------------------------------------------ GPU usage sampler


class FakeNVML:
    """NVML's calls the sampler makes, with readings that follow a known script: GPU k
    reads utilisation 10 * (k + 1) %, 100 W + 50 W * k and 1000 MiB x (k + 1)."""

    def __init__(self, gpus=2):
        self.gpus, self.calls = gpus, 0
        self.inited = self.shut = False

    def nvmlInit(self):
        self.inited = True

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetCount(self):
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUtilizationRates(self, h):
        self.calls += 1
        return SimpleNamespace(gpu=10 * (h + 1))

    def nvmlDeviceGetPowerUsage(self, h):
        return 100_000 + 50_000 * h

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=1000 * 2**20 * (h + 1))


class FakeCuda:
    @staticmethod
    def reset_peak_memory_stats():
        pass

    @staticmethod
    def max_memory_allocated():
        return 256 * 2**20


def test_sampler_reports_the_known_readings_of_a_fake_nvml(monkeypatch):
    monkeypatch.setattr(torch, "cuda", FakeCuda)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    nvml = FakeNVML()
    sampler = gpu_usage.Sampler("cuda", nvml=nvml, interval=0.001).start()
    while nvml.calls < 10:  # the thread samples while the "cell" runs
        pass
    usage = sampler.stop()
    assert nvml.inited and nvml.shut
    assert usage["gpus"] == 2 and usage["peak_memory_mb"] == 256
    assert usage["mean_utilization_pct"] == 15  # mean of 10% and 20%
    assert usage["mean_power_w"] == 250  # 100 W + 150 W
    assert usage["peak_memory_used_mb"] == 3000
    n = len(usage["samples"]["t"])
    assert n >= 5 and all(len(v) == n for v in usage["samples"].values())


def test_sampler_thins_long_runs_and_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(torch, "cuda", FakeCuda)
    monkeypatch.setattr(gpu_usage, "MAX_SAMPLES", 8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    nvml = FakeNVML()
    sampler = gpu_usage.Sampler("cuda", nvml=nvml, interval=0.0001).start()
    while nvml.calls < 30:
        pass
    usage = sampler.stop()
    assert usage["gpus"] == 1 and usage["mean_utilization_pct"] == 20  # GPU 1 alone
    assert len(usage["samples"]["t"]) <= 8 and usage["interval_s"] > 0.0001


def test_sampler_without_nvml_or_gpu(monkeypatch):
    assert gpu_usage.Sampler("cpu", nvml=None).start().stop() == gpu_usage.NO_GPU
    monkeypatch.setattr(torch, "cuda", FakeCuda)
    usage = gpu_usage.Sampler("cuda", nvml=None).start().stop()
    assert usage["peak_memory_mb"] == 256 and "nvidia-ml-py" in usage["nvml"]


def test_gpu_usage_plot_and_summary_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "cuda", FakeCuda)
    nvml = FakeNVML(1)
    sampler = gpu_usage.Sampler("cuda", nvml=nvml, interval=0.001).start()
    while nvml.calls < 3:
        pass
    usage = sampler.stop()
    assert gpu_usage.plot(tmp_path / "u.png", {"a": usage, "b": gpu_usage.NO_GPU})
    assert (tmp_path / "u.png").stat().st_size > 0
    assert not gpu_usage.plot(tmp_path / "none.png", {"b": gpu_usage.NO_GPU})
    assert not (tmp_path / "none.png").exists()


# ------------------------------------------------------------------ DDP: config checks


def test_ddp_needs_micro_batches_it_can_share():
    with pytest.raises(ConfigError, match="GPT2_DDP_GPUS"):
        workload.validate(_cfg(GPT2_DDP_GPUS=2))  # one micro-batch a step
    workload.validate(_cfg(GPT2_DDP_GPUS=2, GPT2_TOTAL_BATCH_TOKENS=2 * 8 * 16))


def test_a_ddp_cell_gets_a_worker_slot_of_n_gpus():
    cfg = _cfg(GPT2_DDP_GPUS=2, GPT2_TOTAL_BATCH_TOKENS=2 * 8 * 16)
    slots = local_slots(cfg, gpus=[0, 1, 2, 3, 4])  # the fifth GPU cannot hold a cell
    assert slots == [
        ("gpu0+1", {"CUDA_VISIBLE_DEVICES": "0,1"}),
        ("gpu2+3", {"CUDA_VISIBLE_DEVICES": "2,3"}),
    ]
    assert [name for name, _ in local_slots(_cfg(), gpus=[0, 1])] == ["gpu0", "gpu1"]


def test_ddp_refuses_a_machine_with_fewer_gpus():
    cfg = _cfg(GPT2_DDP_GPUS=2, GPT2_TOTAL_BATCH_TOKENS=2 * 8 * 16)
    cells = [_cell(cfg)]
    assert "DDP" in unbatchable(cells[0].params)  # never trained in a batch of models
    with pytest.raises(ConfigError, match="GPT2_DDP_GPUS.*this machine has 1"):
        workload.preflight(cfg, cells, [0])


# ------------------------------------------------------------------ DDP on the CPU (gloo)


@pytest.fixture
def one_thread():
    """The same CPU threads for one process and for each DDP rank: a matmul's sums may
    associate differently on another number of threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


@pytest.mark.slow
def test_ddp_over_two_gloo_processes_equals_one_process_bitwise(tmp_path, one_thread):
    cfg = _cfg(GPT2_TOTAL_BATCH_TOKENS=2 * 8 * 16, GPT2_EVAL_INTERVAL=2)  # 2 micro-batches
    cell = _cell(cfg)
    one = runner.run(cell, _ctx(tmp_path, cell, "one"))
    two_cell = _cell(cfg, ddp_gpus=2)
    two = runner.run(two_cell, _ctx(tmp_path, two_cell, "two"))
    assert two["knobs"]["ddp_ranks"] == 2 and two["knobs"]["ddp_backend"] == "gloo"
    assert len(one["losses"]) == 3 and two["losses"] == one["losses"]
    assert two["val_losses"] == one["val_losses"]
    assert two["metrics"]["tokens"] == one["metrics"]["tokens"] == 3 * 2 * 8 * 16


@pytest.mark.slow
def test_ddp_ranks_fall_back_together_out_of_memory(tmp_path, one_thread, monkeypatch):
    cfg = _cfg(GPT2_TOTAL_BATCH_TOKENS=2 * 8 * 16)
    cell = _cell(cfg, ddp_gpus=2)
    monkeypatch.setenv("GPT2_FAKE_OOM_ABOVE", "4")
    r = runner.run(cell, _ctx(tmp_path, cell))
    assert r["ran_with"] == {"batch_size": 4, "grad_accum": 4, "oom_retries": 1}
    assert len(r["losses"]) == 3 and r["metrics"]["tokens"] == 3 * 2 * 8 * 16
