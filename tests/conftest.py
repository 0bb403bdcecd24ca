"""Helpers shared by the test modules (no test module imports another): configurations of
the fake workload (tests/fake_workload.py) and of gpt2, a copy of the project to run make
in, and the `slow` marker's registration."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import kconfiglib
import pytest

from kmatrix import results
from kmatrix.config import Config, typed_values

ROOT = Path(__file__).resolve().parent.parent


# Modules whose tests train real models, start Ray or run make end to end: minutes on two
# cores. `make test-fast` (pytest -m "not slow") leaves them out, and every test that runs
# make in a copy of the project (the `tree` fixture) and the tests in SLOW_TESTS.
SLOW_MODULES = {
    "test_make_e2e",
    "test_ray",
    "test_fractal_llm",
    "test_fractal_engine",
    "test_fractal_workload",
    "test_gpt2_train",
    "test_hardening",
    "test_sd_jax",
}

# Single tests elsewhere that take many seconds (worker processes killed and restarted,
# timeouts, a real image): `pytest --durations=20` finds the next ones.
SLOW_TESTS = {
    "test_a_fractal_boundary_from_the_paper_engine",
    "test_repro_check_passes_and_reports_a_difference",
    "test_dead_worker_costs_only_its_cell",
    "test_wandb_offline_one_run_per_cell_and_a_summary",
    "test_cell_timeout",
    "test_estimate_counts_one_time_preparation_once",
    "test_transient_failures_are_retried",
    "test_kill_9_of_the_driver_loses_nothing",
    "test_grad_checkpoint_same_gradients",
    "test_check_runs_the_paper_engine",
}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: trains, runs make or starts Ray: left out by make test-fast"
    )


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        slow = module in SLOW_MODULES or item.originalname in SLOW_TESTS
        if slow or "tree" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def make_cfg(tmp_path, **overrides):
    values = dict(
        name="m",
        workload="tests.fake_workload",
        seeds=[0],
        behaviours=["ok"],
        exec_results_root=str(tmp_path / "results"),
        exec_gpus=["none"],
        exec_cpu_workers=2,
        exec_retries=2,
        exec_retry_backoff=0,
        exec_retry_pattern="ConnectionError|hub time-out",
        exec_cell_timeout=0,
        track_wandb="disabled",
        profile="paper_repro",
        counter_dir=str(tmp_path / "count"),
    )
    values.update(overrides)
    return Config(values)


def runs_of(cfg, cell_id):
    path = Path(cfg.counter_dir) / cell_id
    return len(path.read_text().split()) if path.exists() else 0


def status_of(cfg, cell_id):
    return results.read_result(results.results_dir(cfg), cell_id)["status"]


@pytest.fixture
def tree(tmp_path):
    """A copy of the project to run make in, without touching this checkout's .config."""
    root = tmp_path / "tree"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".venv", ".git", "results", "data"))
    for name in (".config", "config.py", "config.json"):
        (root / name).unlink(missing_ok=True)
    return root


def make(tree, *args):
    return subprocess.run(
        ["make", "--no-print-directory", f"PYTHON={sys.executable}", *args],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: a loaded machine may be slow
    )


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


def refined_cfg(tmp_path, **overrides):
    """A 17 x 17 grid of the fake workload over lr x momentum, refined twice; its label is
    which side of the line lr = momentum a point is on."""
    values = dict(sweep_y_param="momentum", sweep_y_min=0.1, sweep_y_spacing="log")
    values.update(sweep_x_min=0.1, sweep_x_max=1.0, sweep_y_max=1.0, boundary="line")
    values.update(sweep_x_points=17, sweep_y_points=17, sweep_refine=True)
    values.update(sweep_refine_levels=2, sweep_refine_guard=1, sweep_refine_verify=3)
    return swept(tmp_path, **{**values, **overrides})


def gpt2_cfg(*enable, **values):
    """A typed config from the real Kconfig, with the gpt2 workload and given symbols."""
    kconf = kconfiglib.Kconfig(os.path.join(ROOT, "Kconfig"), warn_to_stderr=False)
    kconf.syms["WORKLOAD_GPT2"].set_value(2)
    for name in enable:
        kconf.syms[name].set_value(2)
    for name, value in values.items():
        kconf.syms[name].set_value(str(value))
    return Config(typed_values(kconf))


class FakeTokens:
    """Stands in for gpt2.data.TokenData: random tokens, no prepare step."""

    identity = {"name": "fake"}

    def get_batch(self, split, B, T, generator, device="cpu"):
        import torch

        x = torch.randint(0, 50257, (B, T + 1), generator=generator)
        return x[:, :-1].to(device), x[:, 1:].to(device)

    def fixed_batches(self, split, n, B, T, seed, device="cpu"):
        import torch

        gen = torch.Generator().manual_seed(seed)
        return [self.get_batch(split, B, T, gen, device) for _ in range(n)]


# a one-layer model trained for 3 steps: a whole cell in well under a second
TINY_RUN = dict(
    GPT2_N_LAYER=1,
    GPT2_N_EMBD=32,
    GPT2_BLOCK_SIZE=16,
    GPT2_BATCH_SIZE=2,
    GPT2_MAX_STEPS=3,
    GPT2_EVAL_BATCHES=1,
)
