"""The results directory: layout, result files, the lock, and the config-hash guard.

results/<name>/
  config/.config, config/config.py, config/config.json   snapshot of the configuration
  config_hash                                            what the results were made with
  plan.json                                              every cell, fully resolved
  cells/<cell-id>/result.json, manifest.json, log.txt    one directory per cell
  summary/                                               figures, summary.json, results.csv
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from kmatrix.errors import ConfigError
from kmatrix.files import write_atomic, write_json_atomic

SAFE_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,200}$")  # a file name, no path
DONE = ("ok", "diverged")  # a cell with one of these results never runs again
STATUSES = ("ok", "diverged", "failed")


def results_root(cfg):
    return Path(cfg.get("exec_results_root") or "results")


def results_dir(cfg):
    """<results root>/<matrix name>. The name is checked again here (config.json may have
    been edited by hand): it must be one safe path component, never '..' or empty."""
    from kmatrix.config import NAME

    name = cfg.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(
            "NAME",
            f"{name!r} is not a safe matrix name",
            "use letters, digits, '.', '_' or '-' (`make setconfig SET=NAME=...`)",
        )
    return results_root(cfg) / name


def cell_dir(root, cell_id):
    return Path(root) / "cells" / cell_id


def cell_file(root, cell_id, name):
    """A file a result names inside its cell directory, or None: a name read from a
    result file is untrusted, and never leads out of the cell's directory."""
    if not isinstance(name, str) or not SAFE_FILE.match(name):
        return None
    path = cell_dir(root, cell_id) / name
    return None if path.is_symlink() else path


def make_cell_dir(root, cell_id):
    """The cell's directory, created if needed; refused if it (or cells/) is a symlink, so
    nothing is ever written through a link planted in the results tree."""
    cells = Path(root) / "cells"
    path = cells / cell_id
    for p in (cells, path):
        if p.is_symlink():
            raise OSError(errno.ELOOP, "a symlink in the results tree; refusing to follow it", str(p))
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(directory, cell, status, *, runtime_s, error=None, metrics=None, job=None, **extra):
    """The one writer of result.json (a worker's finished cell, the driver's lost one):
    status, metrics, error, runtime, the cell's point, run seed and params, and any extra
    JSON-able keys the workload returned (losses, frames...)."""
    result = {
        "id": cell.id,
        "status": status,
        "metrics": metrics or {},
        "error": error,
        "runtime_s": runtime_s,
        "attempt": job.attempt if job else 1,
        "profile": job.profile if job else None,
        "point": cell.point,
        "run_seed": cell.run_seed,
        "params": cell.params,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    return write_json_atomic(Path(directory) / "result.json", result)


def _malformed(result, cell_id):
    """What is wrong with a parsed result.json, or None. Result files are untrusted: a
    hand edit or a crafted file must never crash the driver or a summary."""
    if not isinstance(result, dict):
        return "not a JSON object"
    if result.get("status") not in STATUSES:
        return f"status {result.get('status')!r} is none of {', '.join(STATUSES)}"
    if result.get("id", cell_id) != cell_id:
        return f"id {result.get('id')!r} is not this cell's"
    metrics = result.get("metrics", {})
    if not isinstance(metrics, dict) or not all(
        v is None or isinstance(v, (int, float, str, bool)) for v in metrics.values()
    ):
        return "metrics is not a flat object of numbers, strings, booleans or null"
    for key in ("losses",):
        value = result.get(key, [])
        if not isinstance(value, list) or not all(
            v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            return f"{key} is not a list of numbers or null"
    return None


_warned = set()


def read_result(root, cell_id, warn=None):
    """The cell's result dict, or None when there is no valid one. A file that exists
    but is malformed counts as missing (the cell runs again), with one warning naming it."""
    path = cell_dir(root, cell_id) / "result.json"
    if path.is_symlink():
        problem = "is a symlink"
    else:
        try:
            result = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            problem = f"cannot be read as JSON ({e})"
        else:
            problem = _malformed(result, cell_id)
            if problem is None:
                return result
    if str(path) not in _warned:
        _warned.add(str(path))
        text = f"warning: {path} {problem}; the cell counts as not run"
        (warn or (lambda t: print(t, file=sys.stderr, flush=True)))(text)
    return None


def is_done(result):
    return result is not None and result.get("status") in DONE


class Lock:
    """One driver per results directory: an flock on the directory itself, released by
    the kernel when the process dies (even after kill -9), so a stale lock can never
    block a rerun, and deleting a file by hand cannot break it. `.lock` only tells who
    holds it."""

    def __init__(self, root):
        self.root = Path(root)
        self.fd = None

    def __enter__(self):
        if self.root.is_symlink():
            raise ConfigError(
                str(self.root), "is a symlink", "point EXEC_RESULTS_ROOT at the real directory"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            try:
                holder = (self.root / ".lock").read_text(errors="replace").strip()[:200]
            except OSError:
                holder = ""
            raise ConfigError(
                str(self.root),
                f"another driver is running on this results directory ({holder or 'unknown'})",
                "wait for it to finish, or stop it; its finished cells are kept",
            ) from None
        with contextlib.suppress(OSError):  # information only: a full disk must not stop us
            write_atomic(
                self.root / ".lock",
                lambda f: f.write(f"pid {os.getpid()} on {os.uname().nodename}\n".encode()),
            )
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def read_hash(root):
    """The config hash a results directory was made with, or None (no file). A file that
    is not a hash (a hand edit, a crafted file) reads as "unknown", which never matches."""
    path = Path(root) / "config_hash"
    try:
        text = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return None
    return text if re.fullmatch(r"[0-9a-f]{16}", text) else "unknown"


def claim(root, cfg, force=False, config_files=(".config", "config.py", "config.json")):
    """Create or reuse a results directory for this configuration.

    A directory made with a different configuration (hash) is refused unless forced:
    mixing cells of two configurations in one matrix would make its summary a lie.
    """
    root = Path(root)
    old = read_hash(root)
    if old is not None and old != cfg.hash and not force:
        raise ConfigError(
            str(root),
            f"was made with another configuration (hash {old}, now {cfg.hash})",
            "`make clean-results`, a new CONFIG_NAME, or FORCE=1 to keep its results",
        )
    snapshot = root / "config"
    if snapshot.is_symlink():
        raise ConfigError(str(snapshot), "is a symlink", "remove it; it is written by make")
    snapshot.mkdir(parents=True, exist_ok=True)
    for name in config_files:
        if Path(name).is_file():
            data = Path(name).read_bytes()
            write_atomic(snapshot / Path(name).name, lambda f: f.write(data))
    write_json_atomic(snapshot / "config.json", cfg.as_dict())
    write_atomic(root / "config_hash", lambda f: f.write(f"{cfg.hash}\n".encode()))


def remove(root, results_root):
    """`make clean-results`: delete one matrix's results directory, and only that. It must
    be a real directory directly inside the results root holding the config_hash that
    `make` writes; anything else (a typo'd root, a symlink, a directory we did not make)
    is refused and left alone."""
    root, parent = Path(root), Path(results_root)
    if not root.exists() and not root.is_symlink():
        return False
    problem = None
    if root.is_symlink() or not root.is_dir():
        problem = "is a symlink or not a directory"
    elif root.resolve().parent != parent.resolve() or root.name in ("", ".", ".."):
        problem = f"is not directly inside the results root {parent}"
    elif not (root / "config_hash").is_file():
        problem = "has no config_hash: not a results directory made by make"
    if problem:
        raise ConfigError(str(root), f"not deleted: it {problem}", "delete it yourself if you mean to")
    with Lock(root):
        for path in root.iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    root.rmdir()
    return True
