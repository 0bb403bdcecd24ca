"""Plain output never goes silent: the heartbeat, its rate, and a cell's own progress."""

import pytest

from kmatrix import driver, progress
from kmatrix.progress import Progress
from tests.conftest import make_cfg


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_heartbeat_shows_the_cells_progress_elapsed_and_eta_at_a_bounded_rate(capsys):
    clock = Clock()
    bar = Progress(1, title="default", live=False, clock=clock)
    part = {"cpu0": {"done": 1024, "total": 4096, "unit": "pixels"}}
    bar.set_running({"cpu0": "tanh"}, part)
    assert capsys.readouterr().out == ""  # nothing to say yet
    clock.now += 20
    bar.set_running({"cpu0": "tanh"}, part)
    assert capsys.readouterr().out == ""  # within HEARTBEAT_S of the start
    clock.now += progress.HEARTBEAT_S - 20
    bar.set_running({"cpu0": "tanh"}, part)
    line = capsys.readouterr().out
    assert "default: 0/1 cells done" in line and "elapsed 0:00:30" in line
    # a quarter in 30 s: three quarters, 90 s, to go
    assert "cpu0 tanh 1,024/4,096 pixels (25%), 30 s" in line and "ETA 0:01:30" in line
    for _ in range(10):  # polled often, printed once per HEARTBEAT_S
        clock.now += progress.HEARTBEAT_S / 10
        bar.set_running({"cpu0": "tanh"}, part)
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_a_finished_cell_line_resets_the_heartbeat(capsys):
    clock = Clock()
    bar = Progress(3, live=False, clock=clock)
    bar.set_running({"cpu0": "a"})
    clock.now += progress.HEARTBEAT_S - 1
    bar.finished("a", "ok", 29.0, "cpu0")
    bar.set_running({"cpu0": "b"})
    clock.now += progress.HEARTBEAT_S - 1
    bar.set_running({"cpu0": "b"})
    assert len(capsys.readouterr().out.splitlines()) == 1  # the finished line only
    clock.now += 1
    bar.set_running({"cpu0": "b"})
    out = capsys.readouterr().out
    assert "1/3 cells done" in out and "cpu0 b, 30 s" in out  # no report: its time


def test_a_cells_eta_counts_from_its_first_report_not_its_start_up():
    clock = Clock()
    bar = Progress(1, live=False, clock=clock)
    bar.set_running({"cpu0": "a"})
    clock.now += 100  # start-up: imports, data, the first chunk
    bar.set_running({"cpu0": "a"}, {"cpu0": {"done": 10, "total": 100, "unit": "pixels"}})
    clock.now += 20
    bar.set_running({"cpu0": "a"}, {"cpu0": {"done": 30, "total": 100, "unit": "pixels"}})
    assert bar.eta() == pytest.approx(70 / (20 / 20))  # 20 pixels in 20 s: 70 s to go


def test_eta_from_running_cells_counts_the_cells_not_started():
    clock = Clock()
    bar = Progress(3, live=False, slots=1, clock=clock)
    bar.set_running({"cpu0": "a"}, {"cpu0": {"done": 1, "total": 4, "unit": "steps"}})
    clock.now += 10
    # a: 10 s of 40; then b and c, 40 s each
    assert bar.eta() == pytest.approx(30 + 2 * 40)


def test_a_batchs_eta_counts_its_cells_not_one_cell_per_job():
    """Two slots, each training a batch of 16 cells of a 64-cell matrix: a quarter of the
    batches' steps in 30 s means 90 s to finish them, then the other 32 cells, as two
    more batches, 120 s: the ETA is 210 s, not one job's time per waiting cell."""
    clock = Clock()
    bar = Progress(64, live=False, slots=2, clock=clock)
    running = {"cpu0": "a +15", "cpu1": "b +15"}
    sizes = {"a +15": 16, "b +15": 16}
    bar.set_running(running, None, sizes)
    part = {"done": 3, "total": 12, "unit": "steps"}
    clock.now += 30
    bar.set_running(running, {"cpu0": part, "cpu1": part}, sizes)
    assert bar.eta() == pytest.approx(90 + 120 / 16 * 32 / 2)
    for k in range(16):  # batch a ends after 120 s: each cell's share is 120 / 16 s
        bar.finished(f"a{k}", "ok", 120.0, "cpu0", share=16)
    for k in range(16):
        bar.finished(f"b{k}", "ok", 120.0, "cpu1", share=16)
    assert bar.eta() == pytest.approx(120 / 16 * 32 / 2)


def test_report_is_free_without_a_listener_and_rate_limited_with_one(monkeypatch):
    progress.listen(None)
    progress.report(1, 2, "steps")  # no worker: nothing happens
    sent = []
    progress.listen(sent.append)
    try:
        for k in range(1, 101):
            progress.report(k, 100, "steps")
    finally:
        progress.listen(None)
    # the first report and the last always go; the 98 between come within a second
    assert sent[0]["done"] == 1 and sent[-1] == {"done": 100, "total": 100, "unit": "steps"}
    assert len(sent) <= 3


def test_one_cell_matrix_prints_its_steps_while_it_runs(tmp_path, monkeypatch, capsys):
    """Output to a file: a one-cell matrix reports the cell's own steps before it ends."""
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.0)  # every poll, to see it at all
    cfg = make_cfg(tmp_path, behaviours=["progress"], exec_cpu_workers=1)
    assert driver.run_matrix(cfg, live=False) == 0
    out = capsys.readouterr().out
    beats = [line for line in out.splitlines() if "cells done" in line]
    assert any("/4 steps (" in line for line in beats), out
    finished = out.index("[1/1] ok")
    assert out.index(beats[0]) < finished  # while the cell ran, not after


def test_make_tests_heartbeat_names_a_long_test_only():
    from tests.pytest_heartbeat import HEARTBEAT_S, heartbeat_line

    state = {"total": 40, "index": 7, "nodeid": "tests/t.py::test_x", "since": 100.0, "start": 0}
    assert heartbeat_line(state, 100.0 + HEARTBEAT_S / 2) is None
    line = heartbeat_line(state, 100.0 + 95)
    assert "test 7/40 still running after 1m35s: tests/t.py::test_x (suite 3m15s)" in line
    assert heartbeat_line({**state, "nodeid": None}, 1e6) is None


def test_the_summary_line_counts_read_as_words():
    counts = {"missing": 2, "ok": 1250, "diverged": 6}
    assert driver.count_text(counts) == "1,258 cells: 1,250 ok, 6 diverged, 2 missing"
    assert driver.count_text({}) == "0 cells: none"
    assert driver.count_text({"ok": 1}) == "1 cell: 1 ok"


def test_set_up_says_what_it_is_doing_while_pip_is_quiet(monkeypatch, capfd):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "heartbeat.py"
    spec = importlib.util.spec_from_file_location("heartbeat", path)
    heartbeat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heartbeat)
    monkeypatch.setattr(heartbeat, "QUIET_S", 0.5)
    command = [
        sys.executable,
        "-c",
        "import time; print('Collecting torch', flush=True); time.sleep(3.5)",
    ]
    monkeypatch.setattr(sys, "argv", ["heartbeat.py", "installing torch", *command])
    assert heartbeat.main() == 0
    out = capfd.readouterr().out
    assert "Collecting torch\n" in out  # the command's own lines pass through
    assert "  SETUP   still installing torch (0m0" in out
