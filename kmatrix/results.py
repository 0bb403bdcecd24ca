"""The results directory: layout, atomic writes, the lock, and the config-hash guard.

results/<name>/
  config/.config, config/config.py, config/config.json   snapshot of the configuration
  config_hash                                            what the results were made with
  plan.json                                              every cell, fully resolved
  cells/<cell-id>/result.json, manifest.json, log.txt    one directory per cell
  summary/                                               figures, summary.json, results.csv
"""

import fcntl
import json
import math
import os
import shutil
from pathlib import Path

from kmatrix.errors import ConfigError

DONE = ("ok", "diverged")  # a cell with one of these results never runs again
STATUSES = ("ok", "diverged", "failed")


def results_dir(cfg):
    return Path(cfg.get("exec_results_root") or "results") / cfg.name


def cell_dir(root, cell_id):
    return Path(root) / "cells" / cell_id


def json_safe(value):
    """The one encoding of numbers in every file we write: a float that is not finite
    (NaN, +-inf) becomes JSON null, like a value that was never measured. JSON has no
    NaN, and a string such as "nan" would make every reader cope with strings. Whether
    a number was non-finite is said by the cell's status (`diverged`) and labels, never
    by the number itself. numpy scalars become Python numbers."""
    if isinstance(value, float) or hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
        value = value.item() if hasattr(value, "item") else value
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def as_float(value):
    """A number read from a result as a float for arithmetic and plots: null (not finite,
    or never measured), a bool or anything that is not a number gives NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def write_json_atomic(path, data):
    """Write JSON via a temp file in the same directory + rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(json_safe(data), f, indent=1, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_result(root, cell_id):
    """The cell's result dict, or None when there is no valid one."""
    path = cell_dir(root, cell_id) / "result.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("status") not in STATUSES:
        return None
    return result


def is_done(result):
    return result is not None and result.get("status") in DONE


class Lock:
    """One driver per results directory. flock is released by the kernel when the
    process dies, even after kill -9, so a stale lock can never block a rerun."""

    def __init__(self, root):
        self.path = Path(root) / ".lock"
        self.file = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise ConfigError(
                str(self.path.parent),
                f"another driver is running on this results directory ({holder})",
                "wait for it to finish, or stop it; its finished cells are kept",
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def claim(root, cfg, force=False, config_files=(".config", "config.py", "config.json")):
    """Create or reuse a results directory for this configuration.

    A directory made with a different configuration (hash) is refused unless forced:
    mixing cells of two configurations in one matrix would make its summary a lie.
    """
    root = Path(root)
    hash_file = root / "config_hash"
    if hash_file.exists():
        old = hash_file.read_text().strip()
        if old != cfg.hash and not force:
            raise ConfigError(
                str(root),
                f"was made with another configuration (hash {old}, now {cfg.hash})",
                "`make clean-results`, a new CONFIG_NAME, or FORCE=1 to keep its results",
            )
    root.mkdir(parents=True, exist_ok=True)
    snapshot = root / "config"
    snapshot.mkdir(exist_ok=True)
    for name in config_files:
        if Path(name).exists():
            shutil.copyfile(name, snapshot / Path(name).name)
    write_json_atomic(snapshot / "config.json", cfg.as_dict())
    tmp = hash_file.with_suffix(".tmp")
    tmp.write_text(cfg.hash + "\n")
    os.replace(tmp, hash_file)


def remove(root):
    root = Path(root)
    if root.exists():
        with Lock(root):
            shutil.rmtree(root / "cells", ignore_errors=True)
            for path in root.iterdir():
                if path.name != ".lock":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        shutil.rmtree(root, ignore_errors=True)
