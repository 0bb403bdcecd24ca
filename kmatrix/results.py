"""The results directory: layout, result files, the lock, and the config-hash guard.

results/<name>/
  .kmatrix-results                                       the marker: make made this directory
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

from kmatrix import variants
from kmatrix.errors import ConfigError
from kmatrix.files import json_safe, parse_json, replace_dir, write_atomic, write_json_atomic

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
            raise OSError(
                errno.ELOOP, "a symlink in the results tree; refusing to follow it", str(p)
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(
    directory, cell, status, *, runtime_s, error=None, metrics=None, job=None, **extra
):
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


MAX_RESULT_BYTES = 64 * 2**20  # a result is small (losses, frames); anything larger is not ours
def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _scalar(v):
    return v is None or isinstance(v, (str, bool)) or _number(v)


def _malformed(result, cell_id, point=None):
    """What is wrong with a parsed result.json, or None. Result files are untrusted: a
    hand edit or a crafted file must never crash the driver or a summary, and a result is
    only ever this cell's if it says so (its id) and was computed at this cell's point
    (a FORCE=1 reuse after a sweep's bounds changed keeps the ids, not the points)."""
    if not isinstance(result, dict):
        return "not a JSON object"
    if result.get("status") not in STATUSES:
        return f"status {str(result.get('status'))[:40]!r} is none of {', '.join(STATUSES)}"
    if result.get("id") != cell_id:
        return f"id {str(result.get('id'))[:80]!r} is not this cell's ({cell_id})"
    if point is not None and result.get("point") != json_safe(point):
        return "was computed at another point of the sweep (the configuration changed)"
    metrics = result.get("metrics", {})
    if not isinstance(metrics, dict) or not all(map(_scalar, metrics.values())):
        return "metrics is not a flat object of numbers, strings, booleans or null"
    if not isinstance(result.get("point", {}), dict) or not all(
        map(_scalar, result.get("point", {}).values())
    ):
        return "point is not a flat object of numbers, strings, booleans or null"
    checks = {
        "error": lambda v: v is None or isinstance(v, str),
        "runtime_s": lambda v: v is None or _number(v),
        "attempt": lambda v: v is None or _number(v),
        "profile": lambda v: v is None or isinstance(v, str),
        "run_seed": lambda v: v is None or _number(v),
        "finished_at": lambda v: v is None or isinstance(v, str),
        "params": lambda v: isinstance(v, dict),
        "losses": lambda v: isinstance(v, list) and all(x is None or _number(x) for x in v),
        "val_losses": lambda v: isinstance(v, list)
        and all(
            isinstance(x, list) and len(x) == 2 and all(y is None or _number(y) for y in x)
            for x in v
        ),
        "frames": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    }
    for key, ok in checks.items():
        if key in result and not ok(result[key]):
            return f"{key} has the wrong type ({type(result[key]).__name__})"
    return None


_warned = set()


def read_result(root, cell_id, warn=None, point=None):
    """The cell's result dict, or None when there is no valid one. A file that exists
    but is malformed counts as missing (the cell runs again), with one warning naming it.
    `point`: the planned cell's point, which the result must have been computed at."""
    path = cell_dir(root, cell_id) / "result.json"
    if path.is_symlink():
        problem = "is a symlink"
    else:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_RESULT_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            data, problem = None, f"cannot be read ({e.strerror or e})"
        if data is not None:
            result, problem = parse_json(data, "result")
            if len(data) > MAX_RESULT_BYTES:
                problem = f"is larger than {MAX_RESULT_BYTES // 2**20} MiB"
            elif problem is None:
                problem = _malformed(result, cell_id, point)
            if problem is None:
                return result
    if str(path) not in _warned:
        _warned.add(str(path))
        text = f"warning: {path} {problem}; the cell counts as not run"
        (warn or (lambda t: print(t, file=sys.stderr, flush=True)))(text)
    return None


def read_cell(root, cell, warn=None):
    """read_result() for a planned cell: its id and its point must match."""
    return read_result(root, cell.id, warn=warn, point=cell.point)


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
        open_dir(self.root)
        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
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


MARKER = ".kmatrix-results"  # written when make creates a results directory
# What make writes at the top of a results directory (environment-<hash>.json and temp
# files aside): a directory of an earlier kmatrix, made before the marker existed, is
# recognised by its config_hash and by holding nothing else.
MADE = {MARKER, ".lock", "config", "config_hash", "plan.json", "cells", "summary", "wandb"}
MADE |= {"repro-check"}
_MADE_PATTERN = re.compile(r"^(environment-[0-9a-f]{16}\.json|\..*\.tmp(-old)?)$")
NOT_OURS_FIX = (
    "choose another NAME (`make setconfig SET=NAME=...`) or EXEC_RESULTS_ROOT; make only "
    "writes into (and `make clean-results` only deletes) a directory that make created"
)


def _not_ours(root):
    """Why `root` (which exists) is not a results directory made by make, or None."""
    if root.is_symlink() or not root.is_dir():
        return "is a symlink or not a directory"
    marker = root / MARKER
    if marker.is_file() and not marker.is_symlink():
        return None
    entries = os.listdir(root)
    strangers = [e for e in entries if e not in MADE and not _MADE_PATTERN.match(e)]
    if read_hash(root) in (None, "unknown"):
        return f"has no {MARKER} marker and no config_hash"
    if strangers:
        return f"holds files make never writes ({', '.join(sorted(strangers)[:3])})"
    return None  # an earlier kmatrix's results directory: config_hash and nothing foreign


def open_dir(root, create=True):
    """The results directory at `root`, created with its marker if it does not exist (then
    True), or found to be one that make made (then False). Anything else (a folder of the
    checkout, of the user, a symlink) is refused: make never writes into it. A directory of
    an earlier kmatrix (config_hash, no marker, nothing make would not write) is adopted
    and gets its marker."""
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        if not create:
            return None
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            root.mkdir()
        except FileExistsError:
            pass  # made a moment ago by another make: checked below like any other
        else:
            write_atomic(root / MARKER, lambda f: f.write(b"made by kmatrix (make)\n"))
            return True
    problem = _not_ours(root)
    if problem:
        raise ConfigError(
            str(root), f"is not a results directory made by make: it {problem}", NOT_OURS_FIX
        )
    if not (root / MARKER).is_file():
        write_atomic(root / MARKER, lambda f: f.write(b"made by kmatrix (make), adopted\n"))
    return False


def subdir(root, name, fresh=False):
    """root/name, a directory make writes (summary/, wandb/, repro-check/, config/):
    created if missing; a symlink or file planted in its place is removed, never followed.
    `fresh`: emptied first (repro-check/)."""
    path = Path(root) / name
    if path.is_symlink() or path.exists() and not path.is_dir():
        path.unlink()
    elif fresh and path.exists():
        shutil.rmtree(path)
    path.mkdir(exist_ok=True)
    return path


def unlink_planted(root, warn=None):
    """Remove a symlink or file planted where make writes a directory (summary/, wandb/,
    repro-check/, config/, cells/): it is removed, never followed, and said."""
    for name in sorted(MADE - {MARKER, ".lock", "config_hash", "plan.json"}):
        path = Path(root) / name
        if path.is_symlink() or path.exists() and not path.is_dir():
            path.unlink()
            (warn or (lambda t: print(t, file=sys.stderr, flush=True)))(
                f"warning: {path} was a symlink or a file, where make writes a directory; "
                "removed (nothing is written through a link)"
            )


def _changes(root, cfg):
    """The symbols whose values differ between the results' snapshot and `cfg`, as
    "SYMBOL: old -> new" (what a hash alone cannot say)."""
    from kmatrix.config import RUNTIME_PREFIXES

    try:
        with open(Path(root) / "config" / "config.json", "rb") as f:
            old, problem = parse_json(f.read(2**22), "configuration")
    except OSError:
        old, problem = None, "missing"
    if problem or not isinstance(old, dict):
        return []
    old, new = variants.by_fragment(old), variants.by_fragment(cfg.as_dict())
    keys = sorted(k for k in set(old) | set(new) if not str(k).startswith(RUNTIME_PREFIXES))

    def show(values, key):
        text = json.dumps(values[key]) if key in values else "(unset)"
        return text if len(text) <= 40 else text[:40] + "..."

    return [
        f"{k if '/' in str(k) else str(k).upper()}: {show(old, k)} -> {show(new, k)}"
        for k in keys
        if k not in old or k not in new or old[k] != new[k]
    ]


def claim(root, cfg, force=False, dotconfig=".config", warn=None):
    """Create or reuse a results directory for this configuration (it must be one make
    made: open_dir), and snapshot the configuration into it.

    A directory made with a different configuration (hash) is refused unless forced:
    mixing cells of two configurations in one matrix would make its summary a lie. Forced,
    a result is reused only where its cell's point is unchanged (read_cell).
    """
    root = Path(root)
    open_dir(root)
    unlink_planted(root, warn)
    old = read_hash(root)
    if old is not None and old != cfg.hash and not _variants_added(root, cfg, warn):
        what = _what_changed(root, cfg, old, "was made with another configuration")
        if not force:
            raise ConfigError(
                str(root),
                what,
                "keep both: a new name, `make setconfig SET=NAME=<new name>`; or FORCE=1 to "
                "reuse the results whose cells are unchanged (its figures then mix the two "
                "configurations); `make clean-results` DELETES every finished cell here",
            )
        (warn or (lambda t: print(t, file=sys.stderr, flush=True)))(
            f"warning: FORCE=1: {root} {what}\n  reusing its results: a cell whose point "
            "changed runs again, others keep results made with the old configuration"
        )
    write_snapshot(root, cfg, dotconfig)


def _variants_added(root, cfg, warn):
    """True when the configuration differs from the results' only by new variants (files
    added to its variant set): every finished cell stays valid, and the new ones run."""
    try:
        with open(Path(root) / "config" / "config.json", "rb") as f:
            old, problem = parse_json(f.read(2**22), "configuration")
    except OSError:
        return False
    names = [] if problem else variants.added(old, cfg.as_dict())
    if names:
        (warn or (lambda t: print(t, file=sys.stderr, flush=True)))(
            f"  VARIANT {', '.join(names)}: new in {variants.DIRECTORY}/{cfg.variants}/; their "
            f"cells run beside the finished ones in {root}"
        )
    return bool(names)


def _what_changed(root, cfg, old, head):
    """`head` (hash old, now new); changed: the symbols that differ, old -> new."""
    changes = _changes(root, cfg)
    listed = "".join(f"\n    {c}" for c in changes[:20])
    listed += f"\n    ... and {len(changes) - 20} more" if len(changes) > 20 else ""
    what = f"{head} (hash {old}, now {cfg.hash})"
    return what + (f"; changed:{listed}" if changes else "")


def check_for_summary(root, cfg, force=False, warn=None):
    """`make summary` draws only results of this configuration, as `make` would run them:
    the directory must be one make made, with this configuration's hash (FORCE=1: any,
    loudly; results whose point changed are left out as `make` would rerun them)."""
    root = Path(root)
    if open_dir(root, create=False) is None:
        raise ConfigError(str(root), "does not exist: nothing has run yet", "run `make` first")
    unlink_planted(root, warn)
    old = read_hash(root)
    if old == cfg.hash:
        return
    if old is None:
        raise ConfigError(str(root), "has no results yet (no config_hash)", "run `make` first")
    what = _what_changed(root, cfg, old, "holds results of another configuration")
    if not force:
        raise ConfigError(
            str(root),
            what,
            "`make` with the configuration they were made with (its snapshot is in "
            f"{root / 'config'}), or FORCE=1 to draw them under this one",
        )
    (warn or (lambda t: print(t, file=sys.stderr, flush=True)))(
        f"warning: FORCE=1: {root} {what}\n  drawing them under this configuration"
    )


def write_snapshot(root, cfg, dotconfig=".config"):
    """config/ (config.json, config.py and, when it is the same configuration, .config) and
    config_hash, all from `cfg` itself, never from files a concurrent `make setconfig`
    may have rewritten since: config/ is built aside and renamed into place whole."""
    from kmatrix import config as typed

    root = Path(root)
    values = cfg.as_dict()
    tmp = root / f".config.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write_json_atomic(tmp / "config.json", values)
    write_atomic(tmp / "config.py", lambda f: f.write(typed.render_config_py(values).encode()))
    with contextlib.suppress(OSError, ConfigError):
        data = Path(dotconfig).read_bytes()
        write_atomic(tmp / ".config", lambda f: f.write(data))
        if _dotconfig_hash(tmp / ".config") != cfg.hash:  # edited since `make` read it
            (tmp / ".config").unlink()
    replace_dir(tmp, root / "config")
    write_atomic(root / "config_hash", lambda f: f.write(f"{cfg.hash}\n".encode()))


def _dotconfig_hash(path):
    from kmatrix import config as typed
    from kmatrix import kconfig

    kconf = kconfig.load_dotconfig(dotconfig=path, warn=lambda t: None)
    values = typed.typed_values(kconf)
    quiet = lambda t: None  # noqa: E731
    text = kconf._config_contents(None)  # and its variants, merged as config.json has them
    values = variants.merge_set(kconf, values, text, kconfig.ROOT, say=quiet, warn=quiet)
    return typed.config_hash(values)


def remove(root, results_root):
    """`make clean-results`: delete one matrix's results directory, and only that. It must
    be a real directory directly inside the results root that make made (its marker, or
    an earlier kmatrix's config_hash and nothing else); anything else (a typo'd root, a
    symlink, a directory we did not make) is refused and left alone."""
    root, parent = Path(root), Path(results_root)
    if not root.exists() and not root.is_symlink():
        return False
    problem = None
    if root.is_symlink() or not root.is_dir():
        problem = "is a symlink or not a directory"
    elif root.resolve().parent != parent.resolve() or root.name in ("", ".", ".."):
        problem = f"is not directly inside the results root {parent}"
    else:
        problem = _not_ours(root)
        problem = f"{problem}: not a results directory made by make" if problem else None
    if problem:
        raise ConfigError(
            str(root), f"not deleted: it {problem}", "delete it yourself if you mean to"
        )
    with Lock(root):
        for path in root.iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    root.rmdir()
    return True
