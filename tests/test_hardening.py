"""Bad input, failing filesystems and untrusted files: one test per class of fault.

What the project promises (README, "Threat model and guarantees"): no value a user types
is evaluated by a shell or by make, every value is validated where it enters, deleting is
guarded, every file the driver reads is untrusted, and a fault in one cell (or a full disk)
loses nothing that was finished and ends with a message, not a traceback.
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmatrix import config as typed
from kmatrix import driver, files, kconfig, preflight, repro, results, stages, summary
from kmatrix.errors import ConfigError
from kmatrix.executor import LocalExecutor, local_slots
from kmatrix.plan import plan
from kmatrix.job import make_job
from kmatrix.progress import Progress
from kmatrix.schedule import schedule

from tests.conftest import make, make_cfg, refined_cfg, runs_of, status_of, swept

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dotconfig(tmp_path):
    kconfig.apply_defconfig("default", dotconfig=tmp_path / ".config")
    return tmp_path / ".config"


# -- every value is validated where it enters -------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "", "../x", "/tmp/x", "a b", "x" * 101, "-rf"])
def test_matrix_name_must_be_a_safe_path_component(dotconfig, name):
    with pytest.raises(ConfigError, match=r"^NAME: .* not a safe name"):
        kconfig.setconfig([("NAME", name)], dotconfig=dotconfig)


@pytest.mark.parametrize(
    "assignment, problem",
    [
        ("SWEEP_X_MIN=nan", "is not a finite number"),
        ("SWEEP_X_MIN=inf", "is not a finite number"),
        ("SWEEP_X_MAX=1e999", "is not a finite number"),
        ("ADAMW_LR=-1", "is not > 0"),
        ("ADAMW_BETA1=1", r"is not in \[0, 1\)"),
        ("GPT2_VAL_FRACTION=0", r"is not in \(0, 1\)"),
        ("SEEDS='0 0'", "0 listed more than once"),
        ("SEEDS=-1", r"is not in \[0, 2147483647\]"),
        ("SEEDS=1000000000000000000000000000000", r"is not in \[0, 2147483647\]"),
        ("EXEC_RETRY_PATTERN='(unclosed'", "is not a regular expression"),
        ("SWEEP_X_POINTS=abc", "is not an int value"),
        ("SWEEP_X_POINTS=5000", r"out of range \[1, 4096\]"),
    ],
)
def test_numbers_and_lists_are_checked_with_symbol_and_fix(dotconfig, assignment, problem):
    symbol = assignment.split("=")[0]
    before = dotconfig.read_text()
    with pytest.raises(ConfigError, match=rf"^{symbol}: .*{problem}"):
        kconfig.setconfig(f"WORKLOAD_GPT2=y SWEEP=y {assignment}", dotconfig=dotconfig)
    assert dotconfig.read_text() == before  # a refused value changes nothing


def test_strings_hold_no_control_characters(dotconfig):
    with pytest.raises(ConfigError, match="TRACK_WANDB_PROJECT: .* newline or another control"):
        kconfig.setconfig([("TRACK_WANDB_PROJECT", "a\nCONFIG_NAME=..")], dotconfig=dotconfig)


def test_huge_values_are_shortened_in_messages(dotconfig):
    with pytest.raises(ConfigError) as e:
        kconfig.setconfig([("SWEEP_X_POINTS", "9" * 10_000_000)], dotconfig=dotconfig)
    assert len(str(e.value)) < 400 and "10,000,000 characters" in str(e.value)


def test_lint_reports_bad_floats_and_bytes_with_file_and_line(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b'CONFIG_NAME="bad"\nCONFIG_WORKLOAD_GPT2=y\nCONFIG_ADAMW_LR="nan"\n')
    assert kconfig.lint_defconfig(path) == [
        f"{path}:3: CONFIG_ADAMW_LR: 'nan' is not a finite number "
        '(fix: set it like CONFIG_ADAMW_LR="1e-3")'
    ]
    path.write_bytes(b'CONFIG_NAME="caf\xe9"\n')
    (problem,) = kconfig.lint_defconfig(path)
    assert problem.startswith(f"{path}:1: not UTF-8 text (byte 0xe9 at column 17)")


def test_a_hand_edited_dotconfig_is_reported_never_reset(dotconfig):
    text = dotconfig.read_text().replace("CONFIG_FRACTAL_STEPS=300", "CONFIG_FRACTAL_STEPS=0")
    dotconfig.write_text(text + "CONFIG_NO_SUCH_SYMBOL=y\n")
    line = text.splitlines().index("CONFIG_FRACTAL_STEPS=0") + 1
    with pytest.raises(
        ConfigError, match=rf"\.config:{line}: CONFIG_FRACTAL_STEPS=0: value '0' out"
    ):
        kconfig.genconfig(dotconfig=dotconfig)
    dotconfig.write_text(text.replace("CONFIG_FRACTAL_STEPS=0", "CONFIG_FRACTAL_STEPS=300"))
    warnings = []
    kconfig.load_dotconfig(dotconfig=dotconfig, warn=warnings.append)  # a good .config: quiet
    assert warnings == []


def test_config_json_is_strict_json(dotconfig):
    kconfig.setconfig("WORKLOAD_GPT2=y SWEEP=y SWEEP_X_MIN=1e-5", dotconfig=dotconfig)
    text = (dotconfig.parent / "config.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"config.json holds {c}"))


def test_a_corrupt_config_json_is_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"name": "x", ')
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "matrix.py"), "plan", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "make olddefconfig" in out.stderr


def test_sweeping_an_integer_into_repeated_values_is_refused(tmp_path):
    values = kconfig.apply_defconfig("fractal-16x16", dotconfig=tmp_path / ".config")
    cfg = typed.Config(values).replace(
        sweep_x_param="max_steps", sweep_x_min=1.0, sweep_x_max=2.0, sweep_x_points=3
    )
    with pytest.raises(ConfigError, match="SWEEP_X_POINTS: max_steps is an integer.* 1 1 2"):
        plan(cfg)


def test_repeated_seeds_are_reported_against_seeds(tmp_path):
    path = tmp_path / "d"
    path.write_text('CONFIG_NAME="d"\nCONFIG_SEEDS="0 0"\n')
    assert "CONFIG_SEEDS: 0 listed more than once" in kconfig.lint_defconfig(path)[0]


# -- nothing a user types is evaluated by make or a shell -------------------------------


def test_make_never_evaluates_what_a_user_types(tree):
    assert make(tree, "defconfig-default").returncode == 0
    project = 'TRACK_WANDB_PROJECT="p`touch bt`$(touch dollar)$$(touch dd)"'
    out = make(tree, f"SET={project}", "setconfig")
    assert out.returncode == 0, out.stderr
    assert json.loads((tree / "config.json").read_text())["track_wandb_project"] == (
        "p`touch bt`$(touch dollar)$$(touch dd)"
    )
    for bad in ("$(shell touch mk)", 'NAME="x"; touch semi; "', "NAME='unbalanced"):
        out = make(tree, f"SET={bad}", "setconfig")
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert make(tree, "defconfig-x;touch target").returncode != 0
    assert make(tree, "savedefconfig", "DEFCONFIG=d$(shell touch sd)").returncode == 0
    created = {"bt", "dollar", "dd", "mk", "semi", "target", "sd"} & set(os.listdir(tree))
    assert not created, created


# -- deleting is guarded -----------------------------------------------------------------


def test_clean_results_deletes_only_a_results_directory(tmp_path):
    cfg = make_cfg(tmp_path, name="mine")
    assert driver.run_matrix(cfg, live=False) == 0
    other = make_cfg(tmp_path, name="other")
    assert driver.run_matrix(other, live=False) == 0
    assert driver.clean_results(cfg) == 0
    assert not results.results_dir(cfg).exists() and results.results_dir(other).exists()
    stranger = tmp_path / "results" / "notes"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("mine")
    with pytest.raises(
        ConfigError, match="not deleted: it has no .kmatrix-results marker and no config_hash"
    ):
        driver.clean_results(make_cfg(tmp_path, name="notes"))
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "config_hash").write_text("0" * 16)
    (tmp_path / "results" / "link").symlink_to(outside)
    with pytest.raises(ConfigError, match="symlink"):
        driver.clean_results(make_cfg(tmp_path, name="link"))
    assert (stranger / "keep.txt").exists() and (outside / "config_hash").exists()
    with pytest.raises(ConfigError, match="NAME: '..' is not a safe matrix name"):
        results.results_dir(make_cfg(tmp_path, name=".."))  # a hand-edited config.json


# -- the filesystem can fail or lie -----------------------------------------------------


def test_atomic_write_leaves_no_temp_file_and_the_old_file_intact(tmp_path):
    path = files.write_json_atomic(tmp_path / "r.json", {"a": 1})

    def fill_disk(f):
        f.write(b"{")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        files.write_atomic(path, fill_disk)
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["r.json"]


def test_a_full_disk_stops_the_run_with_a_message(tmp_path, capsys):
    cfg = make_cfg(tmp_path, behaviours=["ok", "disk_full", "late"], exec_cpu_workers=1)
    assert driver.run_matrix(cfg, live=False) == 1
    out = capsys.readouterr().out
    assert "the disk is full" in out and "finished cells are kept" in out
    root = results.results_dir(cfg)
    assert status_of(cfg, "ok-s0") == "ok"  # finished before: intact
    assert results.read_result(root, "disk_full-s0") is None  # no result: runs again
    assert results.read_result(root, "late-s0") is None  # not started after the disk filled
    assert not list(root.rglob("*.tmp"))


def test_one_unwritable_cell_directory_fails_only_that_cell(tmp_path):
    cfg = make_cfg(tmp_path, behaviours=["ok", "blocked", "fine"])
    root = results.results_dir(cfg)
    results.open_dir(root)
    (root / "cells").mkdir()
    (root / "cells" / "blocked-s0").write_text("a file where the directory should be")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "cells" / "fine-s0").symlink_to(outside)  # planted: never written through
    assert driver.run_matrix(cfg, live=False) == 1
    assert status_of(cfg, "ok-s0") == "ok"
    assert os.listdir(outside) == []
    assert results.read_result(root, "blocked-s0") is None


def test_lock_survives_its_file_being_deleted(tmp_path):
    root = tmp_path / "r"
    with results.Lock(root):
        (root / ".lock").unlink()
        with pytest.raises(ConfigError, match="another driver is running"):
            with results.Lock(root):
                pass


# -- every file the driver reads is untrusted ------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2]",
        '{"id": "c1", "status": "ok", "metrics": [1]}',
        '{"id": "c1", "status": "ok", "losses": "abc"}',
        '{"id": "c1", "status": "done"}',
        '{"status": "ok", "id": "someone-else"}',
        '{"status": "ok", "point": {"i": 0}}',  # no id: never assumed to be this cell's
        '{"id": "c1", "status": "ok", "error": 5}',
        '{"id": "c1", "status": "ok", "frames": [1]}',
        '{"id": "c1", "status": "ok", "val_losses": [[1, 2, 3]]}',
        '{"id": "c1", "status": "ok", "metrics": {"loss": 1' + "0" * 400 + "}}",
        '{"id": "c1", "status": "ok", "metrics": {"loss": NaN}}',
        '{"id": "c1", "status": "ok", "params": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"id": "c1", "status": "ok", "params": ' + '{"a":' * 20 + "1" + "}" * 20 + "}",
        "{not json",
    ],
)
def test_a_malformed_result_counts_as_missing_with_a_warning(tmp_path, content):
    cell = results.make_cell_dir(tmp_path, "c1")
    (cell / "result.json").write_text(content)
    warnings = []
    assert results.read_result(tmp_path, "c1", warn=warnings.append) is None
    assert len(warnings) == 1 and str(cell / "result.json") in warnings[0]


def test_a_path_inside_a_result_never_leaves_its_cell(tmp_path):
    cell = results.make_cell_dir(tmp_path, "c1")
    (cell / "frame_00.npy").write_bytes(b"x")
    assert results.cell_file(tmp_path, "c1", "frame_00.npy") == cell / "frame_00.npy"
    for name in ("../c2/frame.npy", "/etc/passwd", "..", "a/b", None, 3):
        assert results.cell_file(tmp_path, "c1", name) is None
    (cell / "link.npy").symlink_to("/etc/passwd")
    assert results.cell_file(tmp_path, "c1", "link.npy") is None


def test_an_unreadable_config_hash_never_matches(tmp_path):
    cfg = make_cfg(tmp_path)
    assert driver.run_matrix(cfg, live=False) == 0
    (results.results_dir(cfg) / "config_hash").write_text("<script>\n")
    with pytest.raises(ConfigError, match="another configuration"):
        driver.run_matrix(cfg, live=False)


# -- workers and signals ----------------------------------------------------------------


def test_a_worker_that_hangs_before_its_first_cell_is_timed_out(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import time\ntime.sleep(3600)\n")
    cfg = make_cfg(tmp_path, exec_cpu_workers=1, exec_retries=0)
    cells = plan(cfg)
    slots = local_slots(cfg, max_cells=1)
    executor = LocalExecutor(slots, env={"PYTHONPATH": str(site)}, start_timeout=2)
    progress = Progress(1, live=False)
    root = results.results_dir(cfg)
    with executor:
        final = schedule(cfg, cells[:1], executor, make_job(cfg, "run", root), progress)
    reply = final[cells[0].id]
    assert reply["status"] == "failed" and "did not start the cell within 2 s" in reply["error"]
    assert "worker did not start" in kconfig.load_kconfig().syms["EXEC_RETRY_PATTERN"].str_value


def test_sigterm_during_make_check_leaves_no_temp_directory(tmp_path):
    values = dict(make_cfg(tmp_path, behaviours=["hang"], seeds=[0, 1]).as_dict())
    config = tmp_path / "config.json"
    config.write_text(json.dumps(values))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "matrix.py"), "check", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not list(tmp.glob("kmatrix-check-*")) and time.time() < deadline:
        time.sleep(0.1)
    assert list(tmp.glob("kmatrix-check-*")), "make check never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert not list(tmp.glob("kmatrix-check-*"))


def test_a_missing_or_broken_wandb_never_fails_a_run(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    site.mkdir()
    (site / "wandb.py").write_text("raise ImportError('wandb is broken here')\n")
    monkeypatch.setenv("PYTHONPATH", str(site))  # the workers' import
    monkeypatch.syspath_prepend(str(site))  # the driver's (the summary run)
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    monkeypatch.setattr("kmatrix.tracking._MISSING", [])
    cfg = make_cfg(tmp_path, track_wandb="offline", behaviours=["ok", "diverge"])
    assert driver.run_matrix(cfg, live=False) == 0
    assert status_of(cfg, "ok-s0") == "ok" and status_of(cfg, "diverge-s0") == "diverged"
    assert "W&B tracking is off: wandb cannot be imported" in capsys.readouterr().err
    log = (results.cell_dir(results.results_dir(cfg), "ok-s0") / "log.txt").read_text()
    assert "wandb cannot be imported" in log


def test_sigint_sent_to_make_alone_stops_the_run(tmp_path):
    """`kill -INT <make's pid>` (not Ctrl-C, which signals the whole process group):
    make passes nothing on, so the driver notices make giving up and stops too."""
    values = dict(make_cfg(tmp_path, behaviours=["hang"], seeds=[0, 1]).as_dict())
    config = tmp_path / "config.json"
    config.write_text(json.dumps(values))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp_path / "Makefile").write_text(
        f"check:\n\t{sys.executable} {ROOT / 'scripts' / 'matrix.py'} check --config {config}\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    env.pop("MAKEFLAGS", None)
    # a shell started in the background (`cmd &` without job control) hands its children
    # SIGINT ignored, and make would then never see the signal: start make as a
    # terminal would, with SIGINT at its default
    proc = subprocess.Popen(
        ["make", "-C", str(tmp_path), "check"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not list(tmp.glob("kmatrix-check-*")) and time.time() < deadline:
        time.sleep(0.1)
    assert list(tmp.glob("kmatrix-check-*")), "make check never started"
    proc.send_signal(signal.SIGINT)  # make's pid only
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "interrupted" in err
    assert not list(tmp.glob("kmatrix-check-*"))


def test_a_value_menuconfig_saved_but_the_check_refuses_leaves_dotconfig_unchanged(dotconfig):
    """The menu takes any string for a float symbol; nothing it saved that way stays."""
    before = dotconfig.read_text()
    assert 'CONFIG_FRACTAL_X_MAX="' in before

    def menu():  # what saving 'abc' in menuconfig writes
        text = re.sub(r'CONFIG_FRACTAL_X_MAX="[^"]*"', 'CONFIG_FRACTAL_X_MAX="abc"', before)
        dotconfig.write_text(text)

    with pytest.raises(ConfigError) as e:
        kconfig.edit_dotconfig(menu, dotconfig=dotconfig)
    message = str(e.value)
    assert dotconfig.read_text() == before
    rejected = dotconfig.with_name(".config.rejected")
    assert 'CONFIG_FRACTAL_X_MAX="abc"' in rejected.read_text()
    assert "FRACTAL_X_MAX: 'abc' is not a number" in message and ".config is unchanged" in message
    assert message.count("fix:") == 1  # the value's own fix, once
    assert message.count("make menuconfig") == 1


# -- a results directory is only ever one that make made ----------------------------------


def test_make_never_adopts_a_directory_it_did_not_make(tree):
    before = sorted(p.name for p in (tree / "docs").iterdir())
    assert make(tree, "defconfig-default").returncode == 0
    assert make(tree, "SET=NAME=docs EXEC_RESULTS_ROOT=.", "setconfig").returncode == 0
    for target in ("run", "summary", "clean-results", "repro-check"):
        out = make(tree, target)
        assert out.returncode != 0 and "Traceback" not in out.stderr, (target, out.stderr)
        assert "docs" in out.stderr and "made by make" in out.stderr, out.stderr
    assert sorted(p.name for p in (tree / "docs").iterdir()) == before
    assert not (tree / "docs" / "config_hash").exists()


def test_a_results_directory_of_an_earlier_kmatrix_is_adopted_only_if_it_is_one(tmp_path):
    cfg = make_cfg(tmp_path)
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    (root / results.MARKER).unlink()  # as an earlier version left it: config_hash, no marker
    assert driver.run_matrix(cfg, live=False) == 0 and (root / results.MARKER).is_file()
    assert runs_of(cfg, "ok-s0") == 1  # its results are kept
    (root / results.MARKER).unlink()
    (root / "notes.txt").write_text("not make's")  # something make never writes: not ours
    with pytest.raises(ConfigError, match="not a results directory made by make.*notes.txt"):
        driver.run_matrix(cfg, live=False)
    with pytest.raises(ConfigError, match="not deleted"):
        driver.clean_results(cfg)
    assert (root / "notes.txt").exists() and status_of(cfg, "ok-s0") == "ok"


# -- a summary only of what ran --------------------------------------------------------


def test_summary_checks_the_configuration_like_make(tmp_path, capsys):
    cfg = make_cfg(tmp_path, behaviours=["ok", "diverge"])
    with pytest.raises(ConfigError, match="nothing has run yet"):
        driver.summary_only(cfg)
    assert driver.run_matrix(cfg, live=False) == 0
    changed = cfg.replace(behaviours=["ok", "raise"])
    with pytest.raises(ConfigError, match=r"(?s)another configuration.*BEHAVIOURS: \["):
        driver.summary_only(changed)
    assert driver.summary_only(changed, force=True) == 0
    assert "FORCE=1" in capsys.readouterr().err


def test_the_config_change_refusal_names_what_changed_and_what_each_fix_does(tmp_path):
    cfg = make_cfg(tmp_path)
    assert driver.run_matrix(cfg, live=False) == 0
    with pytest.raises(ConfigError) as e:
        driver.run_matrix(cfg.replace(sleep=0.5, seeds=[0, 1]), live=False)
    text = str(e.value)
    assert "SEEDS: [0] -> [0, 1]" in text and "SLEEP: (unset) -> 0.5" in text
    assert text.index("NAME=<new name>") < text.index("FORCE=1") < text.index("clean-results")
    assert "DELETES every finished cell" in text


def test_force_after_moving_a_sweep_never_reuses_results_at_new_coordinates(tmp_path, capsys):
    cfg = swept(tmp_path, sweep_x_points=3, sweep_x_min=1e-3, sweep_x_max=1e-1)
    assert driver.run_matrix(cfg, live=False) == 0
    moved = cfg.replace(sweep_x_max=1.0)  # same ids (grid indices), other points for i > 0
    assert driver.run_matrix(moved, force=True, live=False) == 0
    err = capsys.readouterr().err
    assert "FORCE=1" in err and "computed at another point" in err
    root = results.results_dir(moved)
    for cell in plan(moved):
        assert results.read_cell(root, cell)["point"]["x"] == cell.point["x"]
        assert runs_of(moved, cell.id) == (1 if cell.point["i"] == 0 else 2), cell.id


def test_the_snapshot_is_the_configuration_make_runs_not_a_later_setconfig(tmp_path):
    cfg = make_cfg(tmp_path)
    root = results.results_dir(cfg)
    later = tmp_path / ".config"  # `make setconfig` ran after make read config.json
    kconfig.apply_defconfig("default", dotconfig=later)
    results.claim(root, cfg, dotconfig=later)
    snapshot = root / "config"
    assert json.loads((snapshot / "config.json").read_text()) == cfg.as_dict()
    assert f"CONFIG_HASH = {cfg.hash!r}" in (snapshot / "config.py").read_text()
    assert results.read_hash(root) == cfg.hash
    assert not (snapshot / ".config").exists()  # another configuration: not snapshotted
    same = typed.Config(json.loads((tmp_path / "config.json").read_text()))
    results.claim(results.results_dir(make_cfg(tmp_path / "b")), same, dotconfig=later)
    assert (results.results_dir(make_cfg(tmp_path / "b")) / "config" / ".config").is_file()


def test_a_truncated_coarse_result_never_hides_later_levels_silently(tmp_path, capsys):
    cfg = refined_cfg(tmp_path)
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    coarse = plan(cfg)[0]
    path = results.cell_dir(root, coarse.id) / "result.json"
    path.write_bytes(path.read_bytes()[:20])
    capsys.readouterr()
    assert driver.summary_only(cfg) == 0
    err = capsys.readouterr().err
    assert "are not in this summary" in err and coarse.id in err
    hidden = json.loads((root / "summary" / "summary.json").read_text())["not_shown"]
    assert hidden > 0 and str(hidden) in err


def test_malformed_results_never_stop_make_or_its_summary(tmp_path):
    cfg = make_cfg(tmp_path, behaviours=["ok", "diverge", "late"])
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    for cell_id, text in [
        ("ok-s0", "[" * 200_000),
        ("diverge-s0", '{"id": "diverge-s0", "status": "ok", "error": 5, "metrics": {}}'),
        ("late-s0", '{"id": "late-s0", "status": "ok", "metrics": {"x": 1' + "0" * 500 + "}}"),
    ]:
        (results.cell_dir(root, cell_id) / "result.json").write_text(text)
    assert driver.summary_only(cfg) == 0
    assert driver.run_matrix(cfg, live=False) == 0  # the three run again
    assert status_of(cfg, "ok-s0") == "ok" and runs_of(cfg, "late-s0") == 2


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("seeds", "0", "SEEDS = .*is not a list"),
        ("seeds", [10**30], "integer too large"),
        ("sweep_x_points", 10**9, r"SWEEP_X_POINTS = .*out of range \[1, 4096\]"),
        ("sweep_x_min", [1], "SWEEP_X_MIN = .*is not a number"),
        ("adamw_lr", -1.0, "ADAMW_LR = .*is not > 0"),
        ("workload", "no such", "WORKLOAD = .*is none of"),
        ("optimizers", ["nope"], "OPTIMIZERS = .*is not a list of"),
        ("sweep", 1, "SWEEP = .*is not true or false"),
        ("name", "..", "NAME = .*not a safe name"),
        ("exec_gpus", {"a": 1}, "EXEC_GPUS = .*is not a value or a flat list"),
    ],
)
def test_a_hand_edited_config_json_is_refused_by_make_plan(tmp_path, key, value, problem):
    values = kconfig.apply_defconfig("fractal-ft-lr-lr", dotconfig=tmp_path / ".config")
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({**values, key: value}))
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "matrix.py"), "plan", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert re.search(problem, out.stderr) and str(bad) in out.stderr, out.stderr


# -- nothing is written through a symlink ------------------------------------------------


def test_no_directory_make_writes_is_written_through_a_symlink(tmp_path):
    cfg = make_cfg(tmp_path, track_wandb="offline", behaviours=["ok"])
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    outside = {name: tmp_path / f"outside-{name}" for name in ("summary", "wandb", "repro")}
    for path in outside.values():
        path.mkdir()
    for name, target in (("summary", "summary"), ("wandb", "wandb"), ("repro-check", "repro")):
        shutil.rmtree(root / name, ignore_errors=True)
        (root / name).symlink_to(outside[target])
    (root / "config").rename(tmp_path / "old-config")
    (root / "config").symlink_to(tmp_path / "old-config")
    assert driver.run_matrix(cfg.replace(seeds=[0]), live=False) == 0
    for name, target in (("summary", "summary"), ("repro-check", "repro")):
        shutil.rmtree(root / name, ignore_errors=True)
        (root / name).symlink_to(outside[target])
    assert driver.summary_only(cfg) == 0
    assert repro.repro_check(cfg, "ok-s0", gpus=[]) == 0
    assert all(os.listdir(p) == [] for p in outside.values())
    assert not (root / "config").is_symlink() and (root / "summary" / "results.csv").is_file()


# -- values in range, but not their consequences ----------------------------------------


def test_swept_values_are_checked_against_the_knob_and_seeds_against_numpy(tmp_path):
    values = kconfig.apply_defconfig("fractal-ft-lr-lr", dotconfig=tmp_path / ".config")
    cfg = typed.Config(values).replace(sweep_x_spacing="linear")
    with pytest.raises(ConfigError, match="SWEEP_X_MIN: .* include values that are not finite"):
        plan(cfg.replace(sweep_x_min=-1.7e308, sweep_x_max=1.7e308))
    with pytest.raises(ConfigError, match="SWEEP_X_MIN: matrix_lr is set by MUON_LR, .* > 0"):
        plan(cfg.replace(sweep_x_min=-1.0, sweep_x_max=1.0))
    with pytest.raises(ConfigError, match="SWEEP_Y_MIN: unembedding_lr is set by ADAMW_LR"):
        plan(cfg.replace(sweep_y_spacing="linear", sweep_y_min=-5.0))
    fake = make_cfg(tmp_path, seeds=[2**32])  # past numpy's seeds: a config.json edit
    with pytest.raises(ConfigError, match=r"^SEEDS: cell ok-s4294967296 would run with seed"):
        preflight.check_seeds(plan(fake))
    with pytest.raises(ConfigError, match="^SEEDS:"):
        driver.run_matrix(fake, live=False)


def test_a_long_list_with_repeats_is_reported_briefly(dotconfig):
    seeds = " ".join(str(i % 50_000) for i in range(100_000))  # counted in linear time
    with pytest.raises(ConfigError, match=r"^SEEDS: 0 1 10 100 .* \.\.\. listed more than once"):
        kconfig.setconfig([("SEEDS", seeds)], dotconfig=dotconfig)


# -- make variables ----------------------------------------------------------------------


def test_no_make_variable_a_user_types_is_evaluated(tree):
    assert make(tree, "defconfig-default").returncode == 0
    for variable in ("FULL", "V", "FORCE"):
        out = make(tree, f"{variable}=$(shell touch {variable.lower()})", "plan")
        assert out.returncode == 0, out.stderr
    out = make(tree, 'TORCH_VERSION=2.0"; touch tv; "', "plan")
    assert out.returncode == 2 and "TORCH_VERSION: " in out.stderr
    out = make(tree, "TORCH_VERSION=$(shell touch tv2)", "plan")
    assert out.returncode == 2 and "is not a version number" in out.stderr
    assert make(tree, "TORCH_VERSION=2.5.1+cpu", "plan").returncode == 0
    created = {"full", "v", "force", "tv", "tv2"} & set(os.listdir(tree))
    assert not created, created


def test_a_fresh_set_up_installs_the_pinned_torch(tree):
    """README's `make` on a machine with no .venv: the set-up's pip line names torch's
    version (GNU make 4.3 defines an unexported variable empty, so its default must come
    first), and an empty TORCH_VERSION is refused before anything runs."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "TORCH_VERSION")}

    def dry_run(*args):
        return subprocess.run(["make", "-n", *args, ".venv/.installed"], cwd=tree, env=env,
                              capture_output=True, text=True)  # fmt: skip

    out = dry_run()
    assert out.returncode == 0 and '-m pip install "torch==2.13.0"' in out.stdout, out.stdout
    out = dry_run("TORCH_VERSION=2.12.0")
    assert '-m pip install "torch==2.12.0"' in out.stdout, out.stdout
    out = dry_run("TORCH_VERSION=")
    assert out.returncode == 2 and "is not a version number" in out.stderr


# -- messages ----------------------------------------------------------------------------


def test_a_full_disk_during_the_summary_names_the_file_and_keeps_the_last(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path)
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    before = (root / "summary" / "results.csv").read_text()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError) as e:
        driver.summary_only(cfg)
    assert e.value.filename.endswith("results.csv")
    assert (root / "summary" / "results.csv").read_text() == before
    assert not [p for p in os.listdir(root) if p.endswith(".tmp")]


def test_repro_check_finds_a_refined_grids_later_cells(tmp_path):
    cfg = refined_cfg(tmp_path)
    assert driver.run_matrix(cfg, live=False) == 0
    first = {c.id for c in plan(cfg)}
    known, _, _ = stages.known_cells(cfg, plan(cfg), results.results_dir(cfg))
    later = next(c.id for c in known if c.id not in first)
    assert repro.repro_check(cfg, later, gpus=[], out=lambda *a: None) == 0


# -- labels ------------------------------------------------------------------------------


def test_a_run_stopped_by_a_nonfinite_gradient_is_labelled_unstable(monkeypatch):
    from llmmap import maps
    from kmatrix.cell import Cell
    from kmatrix.errors import Diverged

    def stopped(cell, ctx):  # GPT2_CHECK_NUMERICS: stopped before the loss went non-finite
        raise Diverged("non-finite gradient in h.0.attn", {}, losses=[4.0, 3.0, 2.0])

    monkeypatch.setattr(maps.gpt2, "run", stopped)
    cell = Cell(
        "c", 0, "llmmap.workload", {}, 0, {"trainable_window": 2, "trainable_threshold": 1.0}
    )
    with pytest.raises(Diverged) as e:
        maps.run(cell, None)
    assert e.value.metrics["stable"] is False and e.value.metrics["trainable"] is False
