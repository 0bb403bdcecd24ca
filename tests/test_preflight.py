"""Preflight: one test per rule; each names the symbol and the fix, before any cell runs."""

import os
import shutil
from collections import namedtuple

import pytest

from kmatrix import driver, preflight, results
from kmatrix.config import Config
from kmatrix.errors import ConfigError
from kmatrix.plan import plan
from tests.test_driver import make_cfg


def refused(cfg, match):
    with pytest.raises(ConfigError, match=match) as err:
        driver.run_matrix(cfg, live=False)
    assert not (results.results_dir(cfg) / "cells").exists()  # nothing ran
    assert "fix:" in str(err.value)
    return err.value


def swept(tmp_path, **overrides):
    values = dict(
        sweep=True,
        sweep_x_param="lr",
        sweep_x_min=1e-3,
        sweep_x_max=1e-1,
        sweep_x_points=2,
        sweep_x_spacing="log",
        sweep_y_param="steps",
        sweep_y_min=1.0,
        sweep_y_max=3.0,
        sweep_y_points=2,
        sweep_y_spacing="linear",
    )
    values.update(overrides)
    return make_cfg(tmp_path, **values)


def test_sweep_grid_sets_the_swept_params(tmp_path):
    cells = plan(swept(tmp_path))
    assert [c.id for c in cells] == [
        "ok-s0-x00-y00",
        "ok-s0-x00-y01",
        "ok-s0-x01-y00",
        "ok-s0-x01-y01",
    ]
    assert cells[2].params["lr"] == pytest.approx(0.1) and cells[1].params["steps"] == 3
    assert [c.run_seed for c in cells] == [0, 1, 1000, 1001]  # seed + i*1000 + j


def test_empty_sweep_axis(tmp_path):
    refused(swept(tmp_path, sweep_x_points=0), "SWEEP_X_POINTS: empty sweep axis")


def test_sweep_min_not_below_max(tmp_path):
    refused(swept(tmp_path, sweep_x_min=1.0, sweep_x_max=0.5), "SWEEP_X_MIN: min 1 >= max 0.5")


def test_log_axis_with_non_positive_bound(tmp_path):
    refused(swept(tmp_path, sweep_x_min=0.0), "SWEEP_X_MIN: log spacing needs positive bounds")


def test_sweep_of_an_unknown_hyperparameter(tmp_path):
    refused(swept(tmp_path, sweep_y_param="nope"), "SWEEP_Y_PARAM: 'nope' is not a numeric")


def test_empty_matrix_axis(tmp_path):
    refused(make_cfg(tmp_path, seeds=[]), "SEEDS: the seed axis is empty")


def test_unwritable_results_directory(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere; the rule is checked through os.access below")
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    refused(
        make_cfg(tmp_path, exec_results_root=str(locked)), "EXEC_RESULTS_ROOT: .* is not writable"
    )


def test_unwritable_results_directory_via_access(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    refused(make_cfg(tmp_path), "EXEC_RESULTS_ROOT: .* is not writable")


def test_too_little_free_disk(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12, 2**20))
    refused(make_cfg(tmp_path), "EXEC_RESULTS_ROOT: only 0.00 GiB free")


def test_requested_gpus_missing(tmp_path):
    import torch

    missing = str(torch.cuda.device_count() + 3)
    refused(make_cfg(tmp_path, exec_gpus=["0", missing]), f"EXEC_GPUS: GPU\\(s\\) .*{missing}")


def test_fp16_without_a_gpu(tmp_path):
    cfg = Config({"trains_gpt2": True, "precisions": ["fp32", "fp16"]})
    with pytest.raises(ConfigError, match="PRECISION_FP16: fp16 autocast .* needs a GPU"):
        preflight.check_precisions(cfg, gpus=[])
    preflight.check_precisions(cfg.replace(precisions=["fp32", "bf16"]), gpus=[])  # CPU bf16 ok


def test_bf16_on_a_gpu_without_it(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda g: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda g: "Tesla V100")
    cfg = Config({"trains_gpt2": True, "precisions": ["bf16"]})
    with pytest.raises(
        ConfigError, match=r"PRECISION_BF16: GPU 0 \(Tesla V100, sm_70\) has no bf16"
    ):
        preflight.check_precisions(cfg, gpus=[0])
