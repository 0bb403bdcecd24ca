"""`make estimate` of a batched matrix: its probes run in the jobs `make` would form, so a
batched matrix is estimated by the time of its batches (kmatrix/estimate.py), and the gpt2
probe of a batch times the cells trained together (gpt2/runner.py probe_batch)."""

import json
from pathlib import Path

import pytest

from kmatrix import estimate as estimate_module
from kmatrix.cell import Cell, RunContext
from tests.conftest import TINY_RUN, FakeTokens, gpt2_cfg, make_cfg


def _total_seconds(out):
    total = next(line for line in out.splitlines() if "TOTAL" in line)
    minutes = total.split("about ")[1].split(" (")[0]
    return float(minutes.split()[0]) * (60 if "min" in minutes else 1)


@pytest.mark.slow  # two worker processes start (torch imports)
def test_a_batched_matrix_is_estimated_from_probes_of_its_batches(tmp_path, capsys):
    # 8 cells on 2 workers, all of one batch key: `make` runs 2 batches of 4 cells, one per
    # worker. The fake's batch takes as long as its slowest cell (seed 1: 200 s), so the
    # whole matrix takes one batch's time, ~200 s; probed one cell at a time it would be
    # 4 rounds of 100-200 s (~600 s). The seconds are the fake's answers, not slept.
    cfg = make_cfg(
        tmp_path,
        seeds=[0, 1],
        behaviours=["a", "b", "c", "d"],
        seconds=100.0,
        batched=True,
        exec_batch=True,
    )
    assert estimate_module.estimate(cfg) == 0
    out = capsys.readouterr().out
    assert "BATCHES 8 cells in 2 jobs of up to 4 cells trained together" in out
    assert "PROBE   2 batches of 4 cells" in out and "probed batches' times per cell" in out
    probes = (Path(cfg.counter_dir) / "probes").read_text().splitlines()
    assert probes and all(len(line.split()) == 4 for line in probes)  # one probe per batch
    assert 200 <= _total_seconds(out) < 400


@pytest.mark.slow
def test_without_batching_the_estimate_probes_single_cells(tmp_path, capsys):
    cfg = make_cfg(
        tmp_path, seeds=[0, 1], behaviours=["a", "b", "c", "d"], seconds=100.0, batched=True
    )  # the workload could batch them, but EXEC_BATCH is off
    assert estimate_module.estimate(cfg) == 0
    out = capsys.readouterr().out
    assert "BATCHES" not in out and "PROBE   4 cells" in out
    probes = (Path(cfg.counter_dir) / "probes").read_text().splitlines()
    assert all(len(line.split()) == 1 for line in probes)
    assert 600 <= _total_seconds(out) < 1000  # 4 rounds of 100-200 s cells


def test_a_batch_answer_is_scaled_to_the_cells_it_covers():
    # A workload that times one chunk (or one cell) of a batch says how many cells its
    # seconds cover; the job's time is that scaled to all of its cells, plus the worker's
    # overhead around the probe.
    batch = ["a", "b", "c", "d"]
    reply = {"runtime_s": 12.0, "probe": {"probe_seconds": 10.0, "seconds_per_cell": 30.0}}
    assert estimate_module._batch_seconds(batch, [reply]) == 2.0 + 4 * 30.0  # one cell
    reply["probe"]["cells"] = 2
    assert estimate_module._batch_seconds(batch, [reply]) == 2.0 + 2 * 30.0
    reply["probe"]["cells"] = 4
    assert estimate_module._batch_seconds(batch, [reply]) == 2.0 + 30.0


def test_jobs_go_to_the_first_free_slot():
    assert estimate_module._makespan([1.0] * 8, 2) == 4.0  # 4 rounds
    assert estimate_module._makespan([4.0, 1.0, 1.0, 1.0], 2) == 4.0  # three short ones beside
    assert estimate_module._makespan([3.0], 4) == 3.0


def _gpt2_cells(n, batch_models=0):
    cfg = gpt2_cfg("OPTIMIZER_SGD", **{**TINY_RUN, "GPT2_MAX_STEPS": 40})
    from gpt2 import workload

    point = {"optimizer": "sgd", "precision": "fp32", "seed": 0}
    base = {**workload.cell_params(cfg, point), "batch_models": batch_models}
    return [
        Cell(f"c{i}", i, "gpt2.workload", point, 0, {**base, "matrix_lr": base["matrix_lr"] * s})
        for i, s in enumerate([1.0, 2.0, 3.0][:n])
    ]


def _ctx(cell, batch=None):
    ctx = RunContext(device="cpu", out_dir="unused", batch=batch)
    ctx.cache[("gpt2.data", json.dumps(cell.params["data"], sort_keys=True), "data")] = FakeTokens()
    ctx.log = lambda *a: None
    return ctx


def test_gpt2_probe_of_a_batch_times_its_models_trained_together(monkeypatch):
    from gpt2 import batched, runner

    trained = []  # K of every batched model a probe trains
    real = batched.train_batched

    def spy(model, *args, **kwargs):
        trained.append(model.K)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(batched, "train_batched", spy)
    cells = _gpt2_cells(3, batch_models=2)
    answer = runner.probe(cells[0], _ctx(cells[0], batch=cells))
    # run_batch would train 2 models at a time, in two chunks: the probe times the first
    assert trained == [2] and answer["cells"] == 2
    assert answer["unit"] == "steps" and answer["per_cell"] == 40
    assert 0 < answer["probe_seconds"] and 0 < answer["seconds_per_cell"]
    single = runner.probe(cells[0], _ctx(cells[0]))  # no batch: one model, the old answer
    assert trained == [2] and "cells" not in single and single["per_cell"] == 40


def test_gpt2_probe_refuses_cells_that_cannot_share_a_batch():
    from gpt2 import runner

    a, b = _gpt2_cells(2)
    b = Cell("b", 1, a.workload, a.point, 0, {**a.params, "n_embd": 64})
    with pytest.raises(ValueError, match="cannot train in a batch"):
        runner.probe(a, _ctx(a, batch=[a, b]))
