"""`make check` on real workloads: every cell's dry run, and a real break is caught."""

from kmatrix import driver, kconfig
from kmatrix.config import Config
from kmatrix.plan import plan


def load(name, tmp_path, **changes):
    return Config(kconfig.apply_defconfig(name, dotconfig=tmp_path / ".config")).replace(**changes)


def test_check_passes_on_the_flagship_grid(tmp_path, capsys):
    cfg = load("fractal-16x16", tmp_path, sweep_x_points=3, sweep_y_points=3)
    assert driver.check_matrix(cfg, full=True) == 0
    assert "9/9 cells pass the dry run" in capsys.readouterr().out


def test_check_covers_every_value_of_a_grid_in_linear_time(tmp_path, capsys):
    cfg = load("fractal-16x16", tmp_path, sweep_x_points=5, sweep_y_points=4)
    cells = driver.covering_cells(plan(cfg))
    assert {c.point["i"] for c in cells} == set(range(5))
    assert {c.point["j"] for c in cells} == set(range(4))
    assert len(cells) == 7  # the diagonal (5 cells, the last two at j = 3) and 2 corners
    assert driver.check_matrix(cfg) == 0
    out = capsys.readouterr().out
    assert "7 of 20 cells hold every value" in out and "7/7 cells pass" in out


def test_check_catches_a_deliberately_broken_option(tmp_path, capsys):
    # gpt2's head is tied to the embedding, so its unembedding group is empty: training
    # only that group passes validation but leaves nothing to train. Each dry run fails.
    cfg = load("gpt2-tiny-cpu", tmp_path, gpt2_train_groups=["unembedding"])
    assert driver.check_matrix(cfg) == 1
    out = capsys.readouterr().out
    assert "FAIL  adamw-fp32-s0" in out and "0/2 cells pass" in out
    assert "GPT2_TRAIN_GROUPS" in out


def test_check_runs_the_paper_engine(tmp_path, capsys):
    assert driver.check_matrix(load("fractal-quick-cpu", tmp_path)) == 0
    assert "6/6 cells pass" in capsys.readouterr().out
