"""A pytest plugin (`make test` loads it with -p): while one test runs long, a line
every HEARTBEAT_S seconds names it, its place in the run and the time spent, so a log
file or CI output never goes silent for minutes. It writes to the stdout pytest had
before capturing (a -p plugin is imported before capture starts)."""

import os
import threading
import time

HEARTBEAT_S = 30.0

_out = os.fdopen(os.dup(1), "w", buffering=1)
_state = {"total": 0, "index": 0, "nodeid": None, "since": 0.0, "start": time.monotonic()}


def _fmt(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def heartbeat_line(state, now):
    """The line for the test running now, or None when none runs or it has been short."""
    if state["nodeid"] is None or now - state["since"] < HEARTBEAT_S:
        return None
    return (
        f"\n  ... test {state['index']}/{state['total']} still running after "
        f"{_fmt(now - state['since'])}: {state['nodeid']} (suite {_fmt(now - state['start'])})"
    )


def _beat():
    last = 0.0
    while True:
        time.sleep(1.0)
        now = time.monotonic()
        line = heartbeat_line(_state, now)
        if line and now - last >= HEARTBEAT_S:
            _out.write(line + "\n")
            last = now


def pytest_collection_finish(session):
    _state["total"] = len(session.items)
    threading.Thread(target=_beat, daemon=True).start()


def pytest_runtest_logstart(nodeid, location):
    _state.update(index=_state["index"] + 1, nodeid=nodeid, since=time.monotonic())


def pytest_runtest_logfinish(nodeid, location):
    _state["nodeid"] = None
