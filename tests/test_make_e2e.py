"""The commands users run, run the way they run them: `make` in a checkout, W&B at its
default (offline), matrices where some cells diverge. Each test works in a copy of the
repository so that .config and results/ of the developer's tree are left alone; the
downloaded corpus and tokenizer (data/) are shared with it."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
SKIP = {".git", ".venv", "results", "data", "wandb", ".stage", ".whl", ".gl", "build"}
SKIP |= {".config", ".config.old", "config.py", "config.json", "defconfig", ".pytest_cache"}


@pytest.fixture
def checkout(tmp_path):
    """A copy of the working tree, and a `make` that runs in it with this Python."""
    tree = tmp_path / "kmatrix"
    top = lambda d, names: [n for n in names if n in SKIP] if Path(d) == REPO else []  # noqa
    shutil.copytree(REPO, tree, ignore=lambda d, names: top(d, names) + ["__pycache__"])
    env = {**os.environ, "KMATRIX_DATA_DIR": str(DATA), "MPLBACKEND": "Agg"}
    env.pop("WANDB_MODE", None)  # the configuration decides, as for a user
    env.pop("MAKEFLAGS", None)

    def make(*args, ok=True):
        proc = subprocess.run(
            ["make", f"PYTHON={sys.executable}", *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if ok and proc.returncode != 0:
            pytest.fail(
                f"make {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    make.tree = tree
    return make


def statuses(root):
    with open(root / "summary" / "results.csv") as f:
        return [row["status"] for row in csv.DictReader(f)]


def test_llm_grid_through_make_with_diverging_cells(checkout):
    checkout("defconfig-fractal-16x16")
    small = (
        "NAME=e2e-grid SWEEP_X_POINTS=4 SWEEP_Y_POINTS=4 SWEEP_Y_MAX=1e6 GPT2_MAX_STEPS=8 "
        f"GPT2_DATA_DIR={DATA}"
    )
    checkout(f"SET={small}", "setconfig")
    run = checkout()  # the default goal: run the matrix, then the summary
    root = checkout.tree / "results" / "e2e-grid"
    assert "SUMMARY" in run.stdout
    found = statuses(root)
    assert len(found) == 16 and "diverged" in found and "ok" in found, found
    summary = json.loads((root / "summary" / "summary.json").read_text())
    grid = summary["workload_summary"]["muon-fp32-0"]
    assert grid["missing"] == 0 and 0 < grid["trainable_ratio"] < 1
    for kind in ("trainability", "stability", "boundary"):
        assert (root / "summary" / f"{kind}-muon-fp32-0.png").stat().st_size > 1000
    assert list((root / "wandb").glob("offline-run-*"))  # W&B offline, as default
    for cell in root.glob("cells/*/result.json"):  # strict JSON: no NaN, no "nan" strings
        text = cell.read_text()
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{cell}: {c}"))
        assert '"nan"' not in text and '"inf"' not in text
    again = checkout("summary")
    assert "SUMMARY" in again.stdout


def test_gpt2_matrix_through_make_with_a_diverging_cell(checkout):
    checkout("defconfig-gpt2-tiny-cpu")
    small = (
        "NAME=e2e-gpt2 GPT2_MAX_STEPS=6 GPT2_WARMUP_STEPS=0 GPT2_EVAL_INTERVAL=3 "
        "GPT2_EVAL_BATCHES=1 OPTIMIZER_MUON=n OPTIMIZER_SGD=y SGD_LR=1e6 GPT2_GRAD_CLIP=0 "
        f"GPT2_DATA_DIR={DATA}"
    )
    checkout(f"SET={small}", "setconfig")
    checkout()
    root = checkout.tree / "results" / "e2e-gpt2"
    found = statuses(root)
    assert sorted(found) == ["diverged", "ok"], found  # SGD at lr 1e6 diverges, AdamW trains
    summary = json.loads((root / "summary" / "summary.json").read_text())
    assert summary["workload_summary"]["best_cell"] == "adamw-fp32-s0"
    for name in ("loss_curves.png", "final_val_loss.png", "throughput.md"):
        assert (root / "summary" / name).stat().st_size > 100
    assert checkout("summary").returncode == 0
