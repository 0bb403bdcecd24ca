"""Writing files: the one atomic writer, and the one encoding of numbers in JSON.

Imports nothing from kmatrix, so every module (and every benchmark) can write files
without pulling in the results directory's logic.
"""

import contextlib
import json
import math
import os
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
