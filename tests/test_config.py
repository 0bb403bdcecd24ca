"""Kconfig front door: typed generator, escaping, lint, overrides, savedefconfig, make."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kmatrix import config as typed
from kmatrix import kconfig
from kmatrix.errors import ConfigError
from tests.conftest import make

ROOT = Path(__file__).resolve().parent.parent
DEFCONFIGS = sorted(p.name for p in (ROOT / "defconfigs").iterdir())
INJECTION = 'a" + __import__("os")._exit(7) + "'


@pytest.fixture
def dotconfig(tmp_path):
    kconfig.apply_defconfig("default", dotconfig=tmp_path / ".config")
    return tmp_path / ".config"


def values_of(dotconfig):
    return json.loads((dotconfig.parent / "config.json").read_text())


def test_generator_types(dotconfig):
    kconfig.setconfig(
        "WORKLOAD_GPT2=y SEEDS='0 1 2' SWEEP=y SWEEP_X_MIN=1e-5 SWEEP_X_POINTS=4 "
        "OPTIMIZER_MUON=y PRECISION_BF16=y ADAMW_LR=3e-4",
        dotconfig=dotconfig,
    )
    v = values_of(dotconfig)
    assert v["seeds"] == [0, 1, 2]
    assert v["sweep"] is True and v["sweep_x_points"] == 4
    assert v["sweep_x_min"] == 1e-5 and isinstance(v["sweep_x_min"], float)
    assert v["adamw_lr"] == 3e-4
    assert v["workload"] == "gpt2" and v["profile"] == "paper_repro"
    assert v["optimizers"] == ["adamw", "muon"]
    assert v["precisions"] == ["fp32", "bf16"]
    assert v["sweep_x_spacing"] == "log"
    assert v["exec_gpus"] == ["auto"]
    text = (dotconfig.parent / "config.py").read_text()
    assert "SEEDS = [0, 1, 2]" in text and "WORKLOAD = 'gpt2'" in text


def test_generated_output_is_deterministic(dotconfig):
    first = (dotconfig.parent / "config.py").read_text()
    kconfig.genconfig(dotconfig=dotconfig)
    assert (dotconfig.parent / "config.py").read_text() == first


def test_injection_string_round_trips_and_never_runs(dotconfig):
    kconfig.setconfig([("TRACK_WANDB_PROJECT", INJECTION)], dotconfig=dotconfig)
    assert values_of(dotconfig)["track_wandb_project"] == INJECTION
    # Import the generated config.py in a fresh interpreter: it must not exit with 7.
    probe = f"import sys; sys.path.insert(0, {str(dotconfig.parent)!r}); import config; print(config.NAME)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip("\n") == "default"
    probe = probe.replace("config.NAME", "config.TRACK_WANDB_PROJECT")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.rstrip("\n") == INJECTION
    # And it survives .config -> savedefconfig -> lint -> load.
    saved = dotconfig.parent / "saved"
    kconfig.savedefconfig(saved, dotconfig=dotconfig)
    assert kconfig.lint_defconfig(saved) == []


def test_bad_float_names_symbol_and_value(dotconfig):
    with pytest.raises(ConfigError, match=r"SWEEP_X_MIN: 'fast' is not a number"):
        kconfig.setconfig("WORKLOAD_GPT2=y SWEEP=y SWEEP_X_MIN=fast", dotconfig=dotconfig)


@pytest.mark.parametrize("name", DEFCONFIGS)
def test_every_defconfig_lints_clean_and_loads(name, tmp_path):
    assert kconfig.lint_defconfig(ROOT / "defconfigs" / name) == []
    values = kconfig.apply_defconfig(name, dotconfig=tmp_path / ".config")
    assert values["name"] == name  # a defconfig names its matrix after itself


LINT_CASES = [
    ('CONFIG_SEEDS="0" # inline', "inline comment"),
    ('CONFIG_SEEDS = "0"', "spaces around '='"),
    ('CONFIG_SEEDS= "0"', "spaces around '='"),
    ('CONFIG_SEEEDS="0"', "unknown symbol CONFIG_SEEEDS (did you mean CONFIG_SEEDS?)"),
    ("CONFIG_EXEC_JOBS_PER_GPU=0", "out of range [1, 64]"),
    ('CONFIG_MUON_LR="0.1"', "unmet dependencies"),
    ("CONFIG_SEEDS=0", "string value must be quoted"),
    ("CONFIG_WORKLOAD_GPT2=y\nCONFIG_SWEEP=maybe", "is not a bool value"),
    ('SEEDS="0"', "must start with CONFIG_"),
    ('CONFIG_WORKLOAD_GPT2=y\nCONFIG_SWEEP=y\nCONFIG_SWEEP_X_MIN="tiny"', "'tiny' is not a number"),
]


@pytest.mark.parametrize("line,problem", LINT_CASES)
def test_lint_reports_file_and_line(tmp_path, line, problem):
    path = tmp_path / "bad"
    path.write_text('# a comment on its own line is fine\nCONFIG_NAME="bad"\n' + line + "\n")
    problems = kconfig.lint_defconfig(path)
    bad_line = 3 + line.count("\n")
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{bad_line}: ") and problem in problems[0]


def test_lint_duplicate_and_choice_member(tmp_path):
    path = tmp_path / "bad"
    path.write_text('CONFIG_NAME="a"\nCONFIG_NAME="b"\n')
    assert kconfig.lint_defconfig(path) == [
        f"{path}:2: CONFIG_NAME assigned again (first at line 1)"
    ]
    path.write_text("CONFIG_PROFILE_PAPER_REPRO=y\nCONFIG_PROFILE_MAXOUT_SPEED=y\n")
    problems = kconfig.lint_defconfig(path)
    assert problems == [
        f"{path}:1: CONFIG_PROFILE_PAPER_REPRO=y: another member of the choice is selected "
        "(PROFILE_MAXOUT_SPEED)"
    ]


# A .config written before the LLM maps became the llmmap workload (the old flagship's).
OLD_LLM_CONFIG = """CONFIG_NAME="fractal-16x16"
# CONFIG_WORKLOAD_GPT2 is not set
CONFIG_WORKLOAD_FRACTAL=y
# CONFIG_FRACTAL_ENGINE_MLP is not set
CONFIG_FRACTAL_ENGINE_LLM=y
CONFIG_TRAINABLE_WINDOW=20
CONFIG_TRAINABLE_THRESHOLD="1.0"
CONFIG_FRACTAL_LLM_PARENT=""
"""


@pytest.mark.parametrize("defconfig", [True, False], ids=["defconfig", ".config"])
def test_a_renamed_symbol_is_refused_with_its_new_name(tmp_path, dotconfig, defconfig):
    # dropped silently, an old .config would run another configuration: every renamed or
    # removed symbol it sets is an error naming the new symbol (kconfig.RENAMED)
    path = tmp_path / "old.config"
    path.write_text(OLD_LLM_CONFIG)
    removed = (
        f"{path}:4: CONFIG_FRACTAL_ENGINE_MLP was removed (the paper's engine is the whole "
        "fractal workload: CONFIG_WORKLOAD_FRACTAL=y alone)"
    )
    warnings = None if defconfig else []
    problems = kconfig.lint_defconfig(path, warnings=warnings)
    assert problems == ([removed] if defconfig else []) + [
        f"{path}:5: CONFIG_FRACTAL_ENGINE_LLM was renamed CONFIG_WORKLOAD_LLMMAP (the LLM maps "
        "are a workload of their own: set CONFIG_WORKLOAD_LLMMAP=y instead of "
        "CONFIG_WORKLOAD_FRACTAL=y)",
        f"{path}:6: CONFIG_TRAINABLE_WINDOW was renamed CONFIG_LLMMAP_TRAINABLE_WINDOW (set "
        "CONFIG_LLMMAP_TRAINABLE_WINDOW to the same value)",
        f"{path}:7: CONFIG_TRAINABLE_THRESHOLD was renamed CONFIG_LLMMAP_TRAINABLE_THRESHOLD "
        "(set CONFIG_LLMMAP_TRAINABLE_THRESHOLD to the same value)",
        f"{path}:8: CONFIG_FRACTAL_LLM_PARENT was renamed CONFIG_LLMMAP_ZOOMS_INTO (set "
        "CONFIG_LLMMAP_ZOOMS_INTO to the same value)",
    ]
    # in a .config, a removed symbol that is not set asks for nothing: a warning, dropped
    assert warnings == (None if defconfig else [removed])
    with pytest.raises(ConfigError, match=r"^TRAINABLE_WINDOW: CONFIG_TRAINABLE_WINDOW was rena"):
        kconfig.setconfig("TRAINABLE_WINDOW=5", dotconfig=dotconfig)


def test_the_menu_refuses_an_old_config_before_it_drops_a_renamed_symbol(tmp_path):
    # kconfiglib's menu would load the old flagship .config without its renamed symbols
    # and save a paper-engine configuration in its place
    path = tmp_path / ".config"
    path.write_text(OLD_LLM_CONFIG)
    edits = []
    with pytest.raises(ConfigError, match=r"(?s)\.config:5: CONFIG_FRACTAL_ENGINE_LLM was ren.*"
                       r"\.config:8: CONFIG_FRACTAL_LLM_PARENT was renamed CONFIG_LLMMAP_ZO"):  # fmt: skip
        kconfig.edit_dotconfig(lambda: edits.append(1), dotconfig=path)
    assert edits == [] and path.read_text() == OLD_LLM_CONFIG


def test_every_renamed_symbol_is_gone_and_its_new_name_exists():
    kconf = kconfig.load_kconfig()
    for old, (new, _) in kconfig.RENAMED.items():
        assert old not in kconf.syms or not kconf.syms[old].nodes, old
        assert new is None or kconf.syms[new].nodes, new


def test_a_bad_defconfig_is_refused_and_nothing_written(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".venv", ".git", "results", "data"))
    (root / "defconfigs" / "broken").write_text('CONFIG_NAME="broken"\nCONFIG_SEEDS = "1"\n')
    with pytest.raises(ConfigError, match=r"(?s)defconfigs/broken.*broken:2: spaces"):
        kconfig.apply_defconfig("broken", root=root, dotconfig=tmp_path / ".config")
    assert not (tmp_path / ".config").exists() and not (tmp_path / "config.py").exists()


def test_setconfig_override_validated_by_kconfig(dotconfig):
    kconfig.setconfig("WORKLOAD_GPT2=y SWEEP=y SWEEP_X_POINTS=32 SEEDS='0 1'", dotconfig=dotconfig)
    v = values_of(dotconfig)
    assert v["sweep_x_points"] == 32 and v["seeds"] == [0, 1]
    assert "CONFIG_SWEEP_X_POINTS=32" in dotconfig.read_text()
    before = dotconfig.read_text()
    with pytest.raises(ConfigError, match="out of range"):
        kconfig.setconfig("SWEEP_X_POINTS=0", dotconfig=dotconfig)
    with pytest.raises(ConfigError, match="unknown symbol"):
        kconfig.setconfig("NO_SUCH_THING=1", dotconfig=dotconfig)
    with pytest.raises(ConfigError, match="unmet dependencies"):
        kconfig.setconfig("SWEEP=n SWEEP_X_POINTS=3", dotconfig=dotconfig)
    with pytest.raises(ConfigError, match=r"\(!SWEEP_IN_CELL\): .* selected by WORKLOAD_FRACTAL"):
        kconfig.setconfig("WORKLOAD_FRACTAL=y SWEEP=y", dotconfig=dotconfig)
    assert dotconfig.read_text() == before  # a refused override changes nothing


def test_savedefconfig_round_trip(dotconfig, tmp_path):
    kconfig.setconfig(
        "WORKLOAD_GPT2=y SEEDS='3 4' SWEEP=y SWEEP_Y_POINTS=5 PROFILE_MAXOUT_SPEED=y",
        dotconfig=dotconfig,
    )
    first = values_of(dotconfig)
    saved = tmp_path / "mine"
    kconfig.savedefconfig(saved, dotconfig=dotconfig)
    text = saved.read_text()
    assert "CONFIG_SWEEP_Y_POINTS=5" in text and "SWEEP_X_POINTS" not in text  # minimal
    assert kconfig.lint_defconfig(saved) == []
    again = tmp_path / "again" / ".config"
    again.parent.mkdir()
    shutil.copy(saved, tmp_path / "again" / "defconfig")
    kconf = kconfig.load_kconfig()
    kconf.load_config(str(saved), replace=True)
    assert typed.typed_values(kconf) == first


def test_menuconfig_starts_takes_keys_and_saves(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    target = tmp_path / ".config"
    env = dict(os.environ, KCONFIG_CONFIG=str(target), TERM="xterm", MENUCONFIG_STYLE="monochrome")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "menuconfig", "Kconfig"],
        cwd=str(ROOT),
        env=env,
        dimensions=(40, 120),
        encoding="utf-8",
        timeout=120,  # per screen; a hang guard, generous for a loaded machine
    )
    child.expect("Matrix name")
    # each key waits for the screen it needs: the edit box, the menu again, the save box
    for keys, screen in [
        ("\r", r"\(string\)"),
        ("\x7f" * 20 + "from-a-pty\r", "from-a-pty"),
        ("S", "home directory with ~"),
        ("\r", "Configuration saved"),
    ]:
        child.send(keys)
        child.expect(screen)
    child.send("\r")  # dismiss the message; the menu reads the next key, and quits
    child.send("Q")
    child.expect(pexpect.EOF)
    assert 'CONFIG_NAME="from-a-pty"' in target.read_text()


def test_make_targets(tree):
    out = make(tree, "help")
    for target in ("defconfig-<name>", "menuconfig", "savedefconfig", "setconfig", "check", "plan"):
        assert target in out.stdout
    # defconfig-<name> targets exist for every file (what tab completion lists).
    database = subprocess.run(
        ["make", "-pRrq", f"PYTHON={sys.executable}"], cwd=tree, capture_output=True, text=True
    ).stdout
    for name in DEFCONFIGS:
        assert f"\ndefconfig-{name}:" in database
    assert make(tree, "list-defconfigs").stdout.split() == DEFCONFIGS

    # No .config: loading the default is said out loud.
    out = make(tree, "olddefconfig")
    assert out.returncode == 0 and "loading defconfigs/default" in out.stdout
    assert (tree / "config.py").exists()

    out = make(tree, "setconfig", "SET=WORKLOAD_GPT2=y SWEEP=y SWEEP_X_POINTS=32 SEEDS='0 1'")
    assert out.returncode == 0, out.stderr
    assert json.loads((tree / "config.json").read_text())["seeds"] == [0, 1]

    # config.py is regenerated when .config is newer.
    text = (tree / ".config").read_text().replace('CONFIG_SEEDS="0 1"', 'CONFIG_SEEDS="7"')
    (tree / ".config").write_text(text)
    later = (tree / "config.json").stat().st_mtime + 2  # newer than config.json, no sleep
    os.utime(tree / ".config", (later, later))
    make(tree, "config.json")
    assert json.loads((tree / "config.json").read_text())["seeds"] == [7]

    out = make(tree, "savedefconfig", "DEFCONFIG=mine")
    assert out.returncode == 0 and 'CONFIG_SEEDS="7"' in (tree / "mine").read_text()

    (tree / "defconfigs" / "broken").write_text('CONFIG_NAME="broken" # bad\n')
    out = make(tree, "defconfig-broken")
    assert out.returncode != 0 and "broken:1: inline comment" in out.stderr
    out = make(tree, "lint-defconfigs")
    assert out.returncode != 0 and "broken:1: inline comment" in out.stderr
