"""Manifests, environment snapshots and secrets: every result says how it was made."""

import json
import os

from kmatrix import driver, results
from tests.conftest import make_cfg

SECRET = "planted-secret-value-7f3a"
FIELDS = [
    "git",
    "python",
    "torch",
    "cuda",
    "cudnn",
    "nccl",
    "gpu",
    "host",
    "env",
    "seed",
    "run_seed",
    "knobs",
    "config_hash",
    "environment_snapshot",
]


def test_manifest_has_every_field_and_the_profile(tmp_path):
    cfg = make_cfg(tmp_path, seeds=[3])
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    manifest = json.loads((root / "cells" / "ok-s3" / "manifest.json").read_text())
    for field in FIELDS:
        assert field in manifest, field
    assert set(manifest["git"]) == {"sha", "branch", "dirty"}
    assert manifest["seed"] == 3 and manifest["run_seed"] == 3
    assert manifest["config_hash"] == cfg.hash
    knobs = manifest["knobs"]
    assert knobs["profile"] == "paper_repro" and knobs["deterministic_algorithms"] is True
    assert knobs["tf32"] is False and knobs["cublas_workspace_config"] == ":4096:8"
    assert knobs["fake_knob"] == "resolved at run time"  # merged from the workload's result
    assert "CUDA_VISIBLE_DEVICES" in manifest["env"]
    snapshot = root / f"environment-{manifest['environment_snapshot']}.json"
    assert "pip_freeze" in json.loads(snapshot.read_text())
    result = results.read_result(root, "ok-s3")
    assert result["profile"] == "paper_repro"


def test_a_planted_secret_never_reaches_any_file(tmp_path, monkeypatch):
    for name in ("MY_API_KEY", "HF_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "Wandb_Key"):
        monkeypatch.setenv(name, SECRET)
    cfg = make_cfg(tmp_path, seeds=[0, 1], track_wandb="offline", exec_cpu_workers=1)
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    checked = 0
    for folder, _, files in os.walk(root):
        for name in files:
            data = open(os.path.join(folder, name), "rb").read()
            assert SECRET.encode() not in data, os.path.join(folder, name)
            checked += 1
    assert checked > 10  # results, manifests, logs, the snapshot and W&B's offline files
