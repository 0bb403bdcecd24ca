"""Writing files: the one atomic writer, and the one encoding of numbers in JSON.

Imports nothing from kmatrix, so every module (and every benchmark) can write files
without pulling in the results directory's logic.
"""

import contextlib
import json
import math
import os
import shutil
from pathlib import Path


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


MAX_DEPTH = 12  # how deeply JSON read back may nest: what we write nests a few levels
MAX_INT = 2**63  # ints beyond this are no measurement, and overflow a float or a seed


def check_json(value, max_depth=MAX_DEPTH):
    """What is wrong with JSON read back from a file, or None: nesting deeper than
    `max_depth`, or an int too large to become a float or a seed. Iterative, so a crafted
    file cannot exhaust the stack. (NaN and inf never parse: see parse_json.)"""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"nests deeper than {max_depth} levels"
        if isinstance(item, dict):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= MAX_INT:
            return f"holds an integer too large ({str(item)[:20]}...)"
    return None


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def parse_json(data, what="file"):
    """JSON from an untrusted file as (value, None) or (None, problem): strict JSON (no
    NaN or Infinity), nesting and integers checked by check_json."""
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        return None, f"nests too deeply to be a {what}"
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"cannot be read as JSON ({str(e)[:200]})"
    problem = check_json(value)
    return (None, problem) if problem else (value, None)


def as_float(value):
    """A number read from a result as a float for arithmetic and plots: null (not finite,
    or never measured), a bool or anything that is not a number gives NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def write_json_atomic(path, data, compact=False):
    """Write JSON (non-finite numbers as null) through write_atomic: never half-written.
    compact: no indentation, for large machine-read files such as plan.json."""
    layout = dict(separators=(",", ":")) if compact else dict(indent=1)
    text = json.dumps(json_safe(data), allow_nan=False, **layout) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_atomic(path, write):
    """The one way files are written: `write(f)` fills a temp file in the same directory
    (opened binary, never through a symlink), which is synced and renamed over `path`.
    A reader never sees half a file; on any error (a full disk) the temp file is removed
    and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:  # a full disk: say which file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    return path


def replace_dir(new, path):
    """Put the freshly written directory `new` at `path` in one rename: whatever is there
    (a directory, a planted symlink or file) is moved aside and removed, never followed."""
    path = Path(path)
    old = path.with_name(f".{path.name}.{os.getpid()}.tmp-old")
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        os.replace(path, old)
    os.replace(new, path)
    if old.exists():
        shutil.rmtree(old)
