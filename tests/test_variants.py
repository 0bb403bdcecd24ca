"""Named ablation variants: Kconfig fragments in variants/<set>/ merged onto the
configuration, the variant axis in cell ids, plans, `make check` and results.csv, and
the fragments that are refused."""

import csv
import json
from pathlib import Path

import pytest

from kmatrix import config, driver, kconfig, results, variants
from kmatrix.config import Config, config_hash, typed_values
from kmatrix.errors import ConfigError
from kmatrix.plan import plan, read_plan, write_plan
from tests.conftest import make, make_cfg, runs_of

ROOT = Path(__file__).resolve().parent.parent
ABLATION = {
    "baseline": "# the base configuration\n",
    "no-bias": "# CONFIG_GPT2_BIAS is not set\n",
    "nanochat": "CONFIG_GPT2_ARCH_NANOCHAT=y\n",
}


def merge(tmp_path, fragments, defconfig="gpt2-ablation-cpu", set_name=None):
    """The defconfig's typed values with `fragments` ({variant: text}) merged from
    tmp_path/variants/<set>/; (values, the lines said and warned)."""
    kconf = kconfig.load_kconfig()
    assert not kconfig.lint_defconfig(ROOT / "defconfigs" / defconfig, kconf)
    if set_name:
        kconf.syms["VARIANTS"].set_value(set_name)
    values = typed_values(kconf)
    folder = tmp_path / "variants" / values["variants"]
    folder.mkdir(parents=True)
    for name, text in fragments.items():
        (folder / f"{name}.config").write_text(text)
    said = []
    text = kconf._config_contents(None)
    merged = variants.merge_set(kconf, values, text, tmp_path, say=said.append, warn=said.append)
    return merged, said


def refused(tmp_path, fragments, **kwargs):
    with pytest.raises(ConfigError) as e:
        merge(tmp_path, fragments, **kwargs)
    return str(e.value)


def test_each_fragment_is_merged_onto_the_base(tmp_path):
    merged, said = merge(tmp_path, ABLATION)
    table = merged["variant_values"]
    assert table["baseline"] == {} and table["no-bias"] == {"gpt2_bias": False}
    # a choice member switched, and the bias that depends on the old one goes with it
    assert table["nanochat"]["gpt2_arch"] == "nanochat" and table["nanochat"]["gpt2_bias"] is False
    assert "  VARIANT no-bias: CONFIG_GPT2_BIAS y -> n" in said
    assert "  VARIANT baseline: the base configuration" in said
    cells = plan(Config(merged))
    assert [c.id for c in cells] == [
        "baseline-adamw-fp32-s0",
        "nanochat-adamw-fp32-s0",
        "no-bias-adamw-fp32-s0",
    ]
    arch = {c.point["variant"]: (c.params["arch"], c.params["bias"]) for c in cells}
    assert arch == {
        "baseline": ("gpt2", True),
        "nanochat": ("nanochat", False),
        "no-bias": ("gpt2", False),
    }
    write_plan(cells, tmp_path / "plan.json")
    assert read_plan(tmp_path / "plan.json") == cells
    lines = driver.plan_table(Config(merged), cells)
    assert "  variant: 3 value(s): baseline, nanochat, no-bias" in lines


def test_the_shipped_ablation_is_its_files(tmp_path):
    """defconfigs/gpt2-ablation-cpu's variants are the files of variants/gpt2-ablation/."""
    kconf = kconfig.load_kconfig()
    assert not kconfig.lint_defconfig(ROOT / "defconfigs" / "gpt2-ablation-cpu", kconf)
    problems, count = variants.lint_set(kconf, ROOT)
    names = sorted(p.stem for p in (ROOT / "variants" / "gpt2-ablation").glob("*.config"))
    assert problems == [] and count == len(names) >= 3
    values = typed_values(kconf)
    merged = variants.merge_set(kconf, values, kconf._config_contents(None), ROOT, say=print)
    assert sorted(merged["variant_values"]) == names


def test_a_fragment_is_linted_like_a_defconfig(tmp_path):
    text = (
        "CONFIG_GPT2_BIASS=y\n"
        "CONFIG_GPT2_N_LAYER=4 # deeper\n"
        "CONFIG_ADAMW_LR=1e-3\n"
        "CONFIG_GPT2_N_HEAD=4\n"
        "CONFIG_GPT2_N_HEAD=8\n"
        "CONFIG_GPT2_BIAS=n\n"
    )
    message = refused(tmp_path, {"baseline": "", "bad": text})
    where = "variants/gpt2-ablation/bad.config"
    assert f"{where}:1: unknown symbol CONFIG_GPT2_BIASS (did you mean CONFIG_GPT2_BIAS?)" in (
        message
    )
    assert f"{where}:2: inline comment" in message
    assert f'{where}:3: string value must be quoted: CONFIG_ADAMW_LR="1e-3"' in message
    assert f"{where}:5: CONFIG_GPT2_N_HEAD assigned again (first at line 4)" in message
    assert f"{where}:6: write '# CONFIG_GPT2_BIAS is not set'" in message


def test_values_the_merge_does_not_take_are_refused(tmp_path):
    """merge_config.sh's last step: a requested value that is not the merged one."""
    unmet = refused(tmp_path, {"x": "CONFIG_GPT2_ARCH_NANOCHAT=y\nCONFIG_GPT2_BIAS=y\n"})
    assert "x.config:2: CONFIG_GPT2_BIAS=y: unmet dependencies (GPT2_ARCH_GPT2" in unmet
    both = refused(tmp_path / "b", {"y": "CONFIG_GPT2_ARCH_NANOCHAT=y\nCONFIG_GPT2_ARCH_GPT2=y\n"})
    assert "y.config:1: CONFIG_GPT2_ARCH_NANOCHAT=y: another member of the choice" in both
    big = refused(tmp_path / "c", {"z": "CONFIG_GPT2_N_LAYER=999\n"})
    assert "z.config:1: CONFIG_GPT2_N_LAYER=999: value '999' out of range [0, 256]" in big
    domain = refused(tmp_path / "d", {"w": 'CONFIG_ADAMW_LR="-1"\n'})
    assert "w.config:1: CONFIG_ADAMW_LR" in domain and "> 0" in domain


def test_settings_of_the_whole_matrix_are_refused(tmp_path):
    text = (
        'CONFIG_SEEDS="1 2"\n'
        "CONFIG_EXEC_CPU_WORKERS=2\n"
        "CONFIG_PROFILE_MAXOUT_SPEED=y\n"
        'CONFIG_NAME="other"\n'
        'CONFIG_VARIANTS="other"\n'
        "CONFIG_SWEEP=y\n"
        "CONFIG_TRACK_WANDB_OFFLINE=y\n"
    )
    message = refused(tmp_path, {"wide": text})
    for line, name in enumerate(
        ["SEEDS", "EXEC_CPU_WORKERS", "PROFILE_MAXOUT_SPEED", "NAME", "VARIANTS", "SWEEP"], 1
    ):
        assert f"wide.config:{line}: CONFIG_{name}: a variant may not change" in message
    assert "wide.config:7: CONFIG_TRACK_WANDB_OFFLINE" in message


def test_a_line_that_changes_nothing_is_a_warning(tmp_path):
    merged, said = merge(tmp_path, {"same": "CONFIG_GPT2_BIAS=y\nCONFIG_GPT2_N_LAYER=3\n"})
    assert merged["variant_values"]["same"] == {"gpt2_n_layer": 3}
    assert (
        "warning: variants/gpt2-ablation/same.config:1: CONFIG_GPT2_BIAS=y is the base's "
        "value already (the line changes nothing)"
    ) in said


def test_a_fragment_that_changes_an_axis_is_refused(tmp_path):
    merged, _ = merge(tmp_path, {"base": "", "bf16": "CONFIG_PRECISION_BF16=y\n"})
    with pytest.raises(ConfigError) as e:
        plan(Config(merged))
    assert "variants/gpt2-ablation/bf16.config" in str(e.value)
    assert "changes the precision axis (fp32 -> fp32 bf16)" in str(e.value)
    merged, _ = merge(tmp_path / "o", {"muon": "CONFIG_OPTIMIZER_MUON=y\n"})
    with pytest.raises(ConfigError, match="changes the optimizer axis"):
        plan(Config(merged))


def test_variants_that_change_nothing_a_cell_computes_are_refused(tmp_path):
    """A setting no cell parameter reads (the fake workload's `unused`): the two variants
    would run the same cells under two names."""
    table = {"a": {}, "b": {"unused": 1}, "c": {"seconds": 3.0}}
    with pytest.raises(ConfigError, match="variants a and b give every cell the same"):
        plan(make_cfg(tmp_path, variants="v", variant_values=table))
    del table["b"]
    assert len(plan(make_cfg(tmp_path, variants="v", variant_values=table))) == 2


def test_a_variant_of_the_swept_knob_is_refused(tmp_path):
    """The flagship sweeps Muon's matrix lr: a fragment setting MUON_LR would never count."""
    merged, _ = merge(
        tmp_path, {"a": "", "b": 'CONFIG_MUON_LR="0.05"\n'}, "fractal-16x16", set_name="lr"
    )
    with pytest.raises(ConfigError) as e:
        plan(Config(merged))
    assert "variants/lr/b.config" in str(e.value)
    assert "changes matrix_lr, which the sweep sets at every grid point" in str(e.value)
    merged, _ = merge(
        tmp_path / "ok", {"a": "", "wide": "CONFIG_GPT2_N_EMBD=96\n"}, "fractal-16x16", "w"
    )
    cells = plan(Config(merged))
    assert len(cells) == 2 * 256 and cells[256].id == "wide-muon-fp32-s0-x00-y00"


def test_without_variants_hashes_and_ids_are_as_before(tmp_path):
    """The flagship uses no variants: its config hash leaves the empty VARIANTS out, and
    its cell ids are the ones it always had."""
    kconf = kconfig.load_kconfig()
    assert not kconfig.lint_defconfig(ROOT / "defconfigs" / "fractal-16x16", kconf)
    values = typed_values(kconf)
    assert values["variants"] == ""
    assert variants.merge_set(kconf, values, "", tmp_path) == values  # no variant_values
    before = {k: v for k, v in values.items() if k != "variants"}
    assert Config(values).hash == config_hash(before)
    ids = [f"muon-fp32-s0-x{i:02d}-y{j:02d}" for i in range(16) for j in range(16)]
    assert [c.id for c in plan(Config(values))] == ids
    # with variants, what a fragment changes is part of the hash
    one, _ = merge(tmp_path / "1", {"a": "CONFIG_GPT2_N_LAYER=3\n"})
    two, _ = merge(tmp_path / "2", {"a": "CONFIG_GPT2_N_LAYER=4\n"})
    assert config_hash(one) != config_hash(two)


def test_config_json_checks_the_merged_values(tmp_path):
    merged, _ = merge(tmp_path, ABLATION)
    config.write_config(merged, tmp_path)
    cfg = config.load(tmp_path / "config.json")
    assert [c.id for c in plan(cfg)][0] == "baseline-adamw-fp32-s0"
    data = json.loads((tmp_path / "config.json").read_text())
    data["variant_values"]["no-bias"]["gpt2_n_head"] = "four"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"variant_values\[no-bias\]: GPT2_N_HEAD"):
        config.load(tmp_path / "config.json")
    data["variant_values"]["no-bias"] = {"nope": 1}
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="NOPE = '1': is no setting"):
        config.load(tmp_path / "config.json")


def test_a_set_must_exist_and_name_its_variants_safely(tmp_path):
    kconf = kconfig.load_kconfig()
    kconf.syms["VARIANTS"].set_value("nowhere")
    values = typed_values(kconf)
    with pytest.raises(ConfigError, match="names no directory variants/nowhere/"):
        variants.merge_set(kconf, values, "", tmp_path)
    (tmp_path / "variants" / "nowhere").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no <variant>.config fragment"):
        variants.merge_set(kconf, values, "", tmp_path)
    (tmp_path / "variants" / "nowhere" / "two words.config").write_text("")
    with pytest.raises(ConfigError, match="'two words' is not a safe variant name"):
        variants.merge_set(kconf, values, "", tmp_path)


@pytest.mark.slow  # workers start (torch): seconds each
def test_variants_through_the_driver(tmp_path, capsys):
    """`make check` dry-runs every variant's cells; `make` runs them; results.csv has a
    variant column (the fake workload's cell parameters read `seconds`)."""
    table = {"fast": {}, "slow": {"seconds": 2.0}}
    cfg = make_cfg(tmp_path, variants="v", variant_values=table, seeds=[0, 1])
    assert driver.check_matrix(cfg) == 0
    out = capsys.readouterr().out
    for cell in ("fast-ok-s0", "fast-ok-s1", "slow-ok-s0", "slow-ok-s1"):
        assert f"PASS  {cell}" in out
    assert driver.run_matrix(cfg, live=False) == 0
    root = results.results_dir(cfg)
    with open(root / "summary" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], r["variant"], r["status"]) for r in rows] == [
        ("fast-ok-s0", "fast", "ok"),
        ("fast-ok-s1", "fast", "ok"),
        ("slow-ok-s0", "slow", "ok"),
        ("slow-ok-s1", "slow", "ok"),
    ]
    slow = results.read_result(root, "slow-ok-s1")
    assert slow["point"]["variant"] == "slow" and slow["params"]["seconds"] == 4.0


@pytest.mark.slow  # workers start (torch): seconds each
def test_a_new_variant_keeps_the_finished_cells(tmp_path):
    """Adding a fragment to a set whose cells ran: they stay valid and only the new
    variant's cells run; an edited fragment is another configuration, refused by name."""
    cfg = make_cfg(tmp_path, variants="v", variant_values={"fast": {}, "slow": {"seconds": 2.0}})
    assert driver.run_matrix(cfg, live=False) == 0
    more = {"fast": {}, "slow": {"seconds": 2.0}, "slower": {"seconds": 3.0}}
    grown = make_cfg(tmp_path, variants="v", variant_values=more)
    assert variants.added(cfg.as_dict(), grown.as_dict()) == ["slower"]
    assert driver.run_matrix(grown, live=False) == 0
    assert [runs_of(grown, c) for c in ("fast-ok-s0", "slow-ok-s0", "slower-ok-s0")] == [1, 1, 1]
    edited = make_cfg(tmp_path, variants="v", variant_values={**more, "slow": {"seconds": 5.0}})
    assert variants.added(grown.as_dict(), edited.as_dict()) == []
    with pytest.raises(ConfigError) as e:
        driver.run_matrix(edited, live=False)
    assert 'variants/v/slow.config: {"seconds": 2.0} -> {"seconds": 5.0}' in str(e.value)
    other = make_cfg(tmp_path, variants="v", variant_values=more, seeds=[0, 1])
    assert variants.added(cfg.as_dict(), other.as_dict()) == []  # and a new seed: not only


# ---------------------------------------------------------------------- through make


def _make(tree, *args):
    return make(tree, *args, share_data=True)


def _ok(tree, *args):
    proc = _make(tree, *args)
    assert proc.returncode == 0, f"make {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def test_an_ablation_through_make(tree):
    """The shipped ablation on the CPU: lint, check and run every variant; adding a variant
    is adding one file (make merges it, runs only its cells); a bad fragment is refused
    with its file and line."""
    _ok(tree, "defconfig-gpt2-ablation-cpu")
    small = "GPT2_MAX_STEPS=6 GPT2_WARMUP_STEPS=1 GPT2_EVAL_INTERVAL=3 GPT2_LOG_INTERVAL=3"
    _ok(tree, f"SET={small}", "setconfig")
    assert "3 variant fragment(s)" in _ok(tree, "lint-defconfigs")
    check = _ok(tree, "check")
    for name in ("baseline", "nanochat", "no-bias"):
        assert f"PASS  {name}-adamw-fp32-s0" in check
    run = _ok(tree)
    assert "3 cells, 0 already done, 3 to run" in run
    root = tree / "results" / "gpt2-ablation-cpu"
    with open(root / "summary" / "results.csv") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert {r["variant"] for r in rows.values()} == {"baseline", "nanochat", "no-bias"}
    assert all(r["status"] == "ok" for r in rows.values())
    planned = json.loads((root / "plan.json").read_text())["cells"]
    assert [c["point"]["variant"] for c in planned] == ["baseline", "nanochat", "no-bias"]
    summary = json.loads((root / "summary" / "summary.json").read_text())
    assert set(summary["workload_summary"]["final_val_loss"]) == {
        "baseline-adamw-fp32",
        "nanochat-adamw-fp32",
        "no-bias-adamw-fp32",
    }
    assert summary["apples_to_apples"]["differences"] == {}
    assert (root / "config" / ".config").exists()  # read back with its variants: the same hash
    for figure in ("loss_curves.png", "final_val_loss.png"):
        assert (root / "summary" / figure).stat().st_size > 1000
    # nanochat's untied head and rotary positions: another parameter count than the baseline
    n_params = {
        name: json.loads((root / "cells" / f"{name}-adamw-fp32-s0" / "result.json").read_text())[
            "knobs"
        ]["n_params"]
        for name in ("baseline", "nanochat", "no-bias")
    }
    assert n_params["no-bias"] < n_params["baseline"] != n_params["nanochat"]

    (tree / "variants" / "gpt2-ablation" / "wide.config").write_text("CONFIG_GPT2_N_EMBD=96\n")
    plan_text = _ok(tree, "plan")
    assert "wide-adamw-fp32-s0" in plan_text and "4 cells" in plan_text
    added = _make(tree)
    assert "3 already done, 1 to run" in added.stdout
    assert "VARIANT wide: new in variants/gpt2-ablation/" in added.stderr

    # an edited fragment changes what its finished cells computed: refused, naming it
    (tree / "variants" / "gpt2-ablation" / "wide.config").write_text("CONFIG_GPT2_N_EMBD=128\n")
    edited = _make(tree)
    assert edited.returncode != 0
    assert 'variants/gpt2-ablation/wide.config: {"gpt2_n_embd": 96} -> {"gpt2_n_embd": 128}' in (
        edited.stderr
    )

    (tree / "variants" / "gpt2-ablation" / "broken.config").write_text(
        'CONFIG_GPT2_N_EMBD=96\nCONFIG_SEEDS="3"\n'
    )
    proc = _make(tree, "plan")
    assert proc.returncode != 0
    assert "variants/gpt2-ablation/broken.config:2: CONFIG_SEEDS: a variant may not" in (
        proc.stderr
    )
