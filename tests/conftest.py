"""Helpers shared by the test modules (no test module imports another): configurations of
the fake workload (tests/fake_workload.py) and of gpt2, a copy of the project to run make
in, and the `slow` marker's registration."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kconfiglib
import numpy as np
import pytest

from kmatrix import results
from kmatrix.cell import Cell
from kmatrix.config import Config, typed_values

ROOT = Path(__file__).resolve().parent.parent


# Modules whose tests train real models, start Ray or run make end to end: minutes on two
# cores. `make test-fast` (pytest -m "not slow") leaves them out, and every test that runs
# make in a copy of the project (the `tree` fixture) and the tests in SLOW_TESTS.
SLOW_MODULES = {
    "test_make_e2e",
    "test_ray",
    "test_llmmap",
    "test_fractal_engine",
    "test_fractal_workload",
    "test_gpt2_train",
    "test_gpt2_batched",
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
    "test_char_map_plans_and_trains_with_the_data_vocabulary",
    # 3-7 s each on two cores (--durations at load 1.4): the driver's worker processes
    "test_filaments_are_lost_unless_seen_and_the_band_follows_one_once_seen",
    "test_statuses_exit_code_and_resume",
    "test_gpu_pinning_with_fake_ids",
    "test_a_planted_secret_never_reaches_any_file",
    "test_the_driver_runs_a_refined_grid_level_by_level_and_resumes",
    "test_config_change_is_refused_unless_forced",
    "test_resume_reruns_only_the_unfinished_cells_of_a_batch",
    "test_repro_check_runs_a_batched_cell_in_a_batch",
    "test_set_up_says_what_it_is_doing_while_pip_is_quiet",
    "test_check_catches_a_broken_option",
    "test_one_cell_matrix_prints_its_steps_while_it_runs",
    "test_estimate_counts_the_slots_of_the_executor_it_probes_on",
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


def make(tree, *args, share_data=False):
    """make in a tree; share_data: the corpus this checkout prepared once (data/), headless
    figures and no outer make's flags, as the tests that run whole matrices want."""
    env = None
    if share_data:
        env = {**os.environ, "MPLBACKEND": "Agg"}
        if (ROOT / "data").exists():
            env["KMATRIX_DATA_DIR"] = str((ROOT / "data").resolve())
        env.pop("MAKEFLAGS", None)
    return subprocess.run(
        ["make", "--no-print-directory", f"PYTHON={sys.executable}", *args],
        cwd=tree,
        env=env,
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


# -- the fractal workload ----------------------------------------------------------------

# A typed configuration of the paper's engine at toy size (8 pixels, 50 steps, torch).
FRACTAL_BASE = dict(
    name="t",
    workload="fractal",
    profile="paper_repro",
    seeds=[0],
    fractal_experiments=["tanh", "paraminit"],
    fractal_resolution=8,
    fractal_steps=50,
    fractal_steps_per_experiment=False,
    fractal_dtype="float64",
    fractal_backend="torch",
    fractal_data="seeded",
    fractal_x_min=-3.0,
    fractal_x_max=6.0,
    fractal_y_min=-3.0,
    fractal_y_max=6.0,
    fractal_zoom_frames=1,
    fractal_paths=["paper", "auto"],
    fractal_zoom_outer_width=6.0,
    fractal_descent_resolution=9,
    fractal_zoom_point_x=None,
    fractal_zoom_point_y=None,
    fractal_zoom_point_width=None,
    fractal_dimension="pow2",
    fractal_exit="nonfinite",
    fractal_exit_verify=False,
    fractal_reuse_pixels=True,
    fractal_minibatch_size=16,
    fractal_tail=20,
)


def fractal_cell(cfg, point, index=0):
    from fractal import workload

    return Cell(
        point["experiment"], index, "fractal.workload", point, 0, workload.cell_params(cfg, point)
    )


def run_script(tmp_path_factory, script, *args, interpret=True):
    """The last stdout line, as JSON, of `script` run from a file (triton.jit needs the
    source) in a fresh Python, under TRITON_INTERPRET=1 unless interpret=False."""

    if interpret and np.lib.NumpyVersion(np.__version__) >= "2.4.0":
        # Triton 3.6's interpreter turns scalar kernel arguments into 1-element arrays and
        # takes int() of them, an error from numpy 2.4 on
        pytest.skip("Triton's interpreter needs numpy < 2.4")
    path = tmp_path_factory.mktemp("triton") / "script.py"
    path.write_text(script)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run(
        [sys.executable, str(path), *args],
        env=env, cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- images of known structure (the dimension estimator and the zoom descent) ------------

RABBIT = -0.123 + 0.745j  # Douady's rabbit: a Julia set whose boundary has D = 1.39


def julia(x, y, c=RABBIT, iters=300):
    """An escape-time image, like a trainability image: the escape step where the orbit of
    z -> z^2 + c from x + iy leaves |z| > 4 (positive), -1 - |z| where it stays (negative).
    The boundary between them is the Julia set, self-similar: the same at every scale."""
    z = np.asarray(x) + 1j * np.asarray(y)
    out = np.zeros(z.shape)
    alive = np.ones(z.shape, dtype=bool)
    for i in range(iters):
        z = np.where(alive, z * z + c, z)
        escaped = alive & (np.abs(z) > 4)
        out[escaped] = i + 1.0
        alive &= ~escaped
    out[alive] = -1.0 - np.abs(z[alive])
    return out


def hashed(x, y):
    """Sign noise: a function of the coordinates' last bits, redrawn by any shift."""
    return np.modf(np.abs(np.sin(x * 12989.8 + y * 78233.0) * 43758.5453))[0] - 0.5


# -- LLM maps ------------------------------------------------------------------------------

# A small offline corpus for GPT-2 runs on the CPU.
TEXT = "\n".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog, said speaker {i % 7}."
    for i in range(400)
)
