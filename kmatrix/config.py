"""The typed configuration: .config (Kconfig) -> Python values -> config.py / config.json.

This is the only module that turns Kconfig strings into Python types. Everything
downstream reads a `Config`, never `.config`. Rules (see the top of Kconfig):

- bool -> bool, int/hex -> int, string -> str, unless the prompt ends in a type tag:
  "(float)" -> float, "(floats)" / "(ints)" / "(words)" -> list (space separated).
  An empty tagged string becomes None (a float) or [] (a list).
- a named `choice FOO` with members FOO_BAR, FOO_BAZ -> foo = "bar" | "baz".
- a menu whose prompt ends in "(multi-select)" with bools PREFIX_NAME -> prefixs = [...].
"""

import collections
import functools
import hashlib
import json
import math
import os
import re
from pathlib import Path

import kconfiglib

from kmatrix.errors import ConfigError

# The tag that ends a string symbol's prompt says what its value is (see Kconfig's
# header): (float), (floats), (ints), (words), with an optional domain such as
# "(float > 0)", "(floats >= 0)" or "(float in [0, 1))"; (name) is a safe file name (a
# matrix name; "(name or empty)" may be empty); (regex) a Python regular expression.
# Untagged strings are text. Every string: one line, no control characters.
TAG = re.compile(
    r"\((?P<kind>floats?|ints|words|name|regex)(?P<optional> or empty)?"
    r"(?:\s*(?P<op>>=|>|<=|<)\s*(?P<bound>[-+.\deE]+)"
    r"|\s+in\s+(?P<lo_br>[\[(])\s*(?P<lo>[-+.\deE]+)\s*,\s*(?P<hi>[-+.\deE]+)\s*(?P<hi_br>[\])]))?\)$"
)
LIST_KINDS = ("floats", "ints", "words")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MULTI_SELECT = "(multi-select)"
VARIANT_VALUES = "variant_values"  # config.json: what each variant's fragment changes
# Symbols that say where and how cells run, not what they compute (see Kconfig).
RUNTIME_PREFIXES = ("exec_", "track_")
OPS = {
    ">": lambda v, b: v > b,
    ">=": lambda v, b: v >= b,
    "<": lambda v, b: v < b,
    "<=": lambda v, b: v <= b,
}


def shorten(text, limit=60):
    """A user's value for a message: repr'd, cut to `limit` characters."""
    text = str(text)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text):,} characters)"


class Config:
    """Read-only typed configuration: cfg.sweep_x_points, cfg.get("seeds", [0])."""

    def __init__(self, values):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no configuration symbol {name.upper()!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("Config is read-only: change .config (make menuconfig/setconfig)")

    def __contains__(self, name):
        return name in self._values

    def get(self, name, default=None):
        return self._values.get(name, default)

    def as_dict(self):
        return dict(self._values)

    def replace(self, **changes):
        """A copy with some values changed (for tests and probes; never written back)."""
        return Config({**self._values, **changes})

    @property
    def hash(self):
        return config_hash(self._values)


def config_hash(values):
    """Hash of everything that decides what the matrix computes (not where it runs)."""
    relevant = {
        k: v
        for k, v in values.items()
        # an empty VARIANTS (no variant axis) is left out: hashes made before variants
        # existed stay valid
        if not k.startswith(RUNTIME_PREFIXES) and not (k == "variants" and not v)
    }
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _prompt(sym):
    for node in sym.nodes:
        if node.prompt:
            return node.prompt[0].strip()
    return ""


def _tag(sym):
    """The prompt's type tag as a match (kind, op/bound or interval), or None."""
    return TAG.search(_prompt(sym))


def _domain(tag):
    """(check(value) -> bool, text) for the tag's domain; (None, "") if it has none."""
    if tag["op"]:
        bound = float(tag["bound"])
        return (lambda v: OPS[tag["op"]](v, bound)), f"{tag['op']} {tag['bound']}"
    if tag["lo"]:
        lo, hi = float(tag["lo"]), float(tag["hi"])
        low_ok = OPS[">=" if tag["lo_br"] == "[" else ">"]
        high_ok = OPS["<=" if tag["hi_br"] == "]" else "<"]
        text = f"in {tag['lo_br']}{tag['lo']}, {tag['hi']}{tag['hi_br']}"
        return (lambda v: low_ok(v, lo) and high_ok(v, hi)), text
    return None, ""


@functools.lru_cache(maxsize=1)
def _kconfig():
    from kmatrix import kconfig

    return kconfig.load_kconfig()


def symbol_domain(symbol):
    """(check(value) -> bool, text) of a Kconfig symbol's stated domain ("(float > 0)", an
    int's range); (None, "") for a symbol without one or no such symbol."""
    sym = _kconfig().syms.get(symbol)
    if sym is None:
        return None, ""
    if sym.orig_type in (kconfiglib.INT, kconfiglib.HEX) and sym.ranges:
        low, high, _ = sym.ranges[0]
        lo, hi = int(low.str_value, 0), int(high.str_value, 0)
        return (lambda v: lo <= v <= hi), f"in [{lo}, {hi}]"
    tag = _tag(sym)
    return _domain(tag) if tag else (None, "")


def _number(sym, item, kind, check, domain):
    example = "1e-3" if kind is float else "0"
    fix = f'set it like CONFIG_{sym.name}="{example}"'
    try:
        value = kind(item)
    except ValueError:
        name = "a number" if kind is float else "an integer"
        raise ConfigError(sym.name, f"{shorten(item)} is not {name}", fix) from None
    if kind is float and not math.isfinite(value):
        raise ConfigError(sym.name, f"{shorten(item)} is not a finite number", fix)
    if check and not check(value):
        raise ConfigError(sym.name, f"{shorten(item)} is not {domain}", f"use a number {domain}")
    return value


def _parse_string(sym, text):
    """A string symbol's value, typed and checked by its prompt's tag."""
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise ConfigError(
            sym.name,
            f"{shorten(text)} holds a newline or another control character",
            "write the value on one line, without control characters",
        )
    tag = _tag(sym)
    if tag is None:
        return text
    kind = tag["kind"]
    if kind == "name":
        if (text or not tag["optional"]) and not NAME.match(text):
            raise ConfigError(
                sym.name,
                f"{shorten(text)} is not a safe name (it names a directory)",
                "use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        return text
    if kind == "regex":
        try:
            re.compile(text)
        except re.error as e:
            raise ConfigError(
                sym.name, f"{shorten(text)} is not a regular expression: {e}", "fix the pattern"
            ) from None
        return text
    items = text.split() if kind in LIST_KINDS else ([text.strip()] if text.strip() else [])
    if kind == "words":
        values = items
    else:
        check, domain = _domain(tag)
        number = float if kind.startswith("float") else int
        values = [_number(sym, item, number, check, domain) for item in items]
    if kind in LIST_KINDS:
        counts = collections.Counter(values)  # linear: a list may hold 100,000 seeds
        repeated = sorted((v for v, n in counts.items() if n > 1), key=str)
        if repeated:
            raise ConfigError(
                sym.name,
                f"{' '.join(map(str, repeated[:10]))}{' ...' if len(repeated) > 10 else ''} "
                "listed more than once",
                "list each value once",
            )
        return values
    return values[0] if values else None


def _symbol_value(sym):
    if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        return sym.tri_value == 2
    text = sym.str_value
    if sym.orig_type == kconfiglib.INT:
        return int(text) if text else None
    if sym.orig_type == kconfiglib.HEX:
        return int(text, 16) if text else None
    return _parse_string(sym, text)


def _multi_select_groups(kconf):
    """(list name, prefix, member symbols) for every "(multi-select)" menu."""
    groups = []
    node = kconf.top_node
    stack = [node.list] if node.list else []
    while stack:
        node = stack.pop()
        while node:
            if node.item == kconfiglib.MENU and node.prompt[0].strip().endswith(MULTI_SELECT):
                syms = []
                child = node.list
                while child:
                    if isinstance(child.item, kconfiglib.Symbol):
                        syms.append(child.item)
                    child = child.next
                prefix = os.path.commonprefix([s.name for s in syms]).rsplit("_", 1)[0]
                groups.append((prefix.lower() + "s", prefix, syms))
            if node.list:
                stack.append(node.list)
            node = node.next
    return groups


def typed_values(kconf):
    """Every symbol of a loaded Kconfig as a typed Python value (sorted by name)."""
    values = {}
    errors = []
    for sym in kconf.unique_defined_syms:
        try:
            values[sym.name.lower()] = _symbol_value(sym)
        except ConfigError as e:
            errors.append(e)
    if errors:
        raise (
            errors[0]
            if len(errors) == 1
            else ConfigError(
                ", ".join(e.symbol for e in errors), "; ".join(e.problem for e in errors)
            )
        )
    for choice in kconf.unique_choices:
        if choice.name:
            selected = choice.selection
            value = selected.name[len(choice.name) + 1 :].lower() if selected else None
            values[choice.name.lower()] = value
    for list_name, prefix, syms in _multi_select_groups(kconf):
        values[list_name] = [s.name[len(prefix) + 1 :].lower() for s in syms if s.tri_value == 2]
    return dict(sorted(values.items()))


def render_config_py(values):
    """config.py text: one literal assignment per symbol, never code."""
    lines = [
        "# Generated from .config by kmatrix (make genconfig). Do not edit:",
        "# use `make menuconfig` or `make setconfig SET=...`.",
        "# Every value is a Python literal written with repr(); nothing here runs code.",
        f"CONFIG_HASH = {config_hash(values)!r}",
    ]
    lines += [f"{name.upper()} = {value!r}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def write_config(values, out_dir="."):
    """Write config.py and config.json (atomically, deterministic output)."""
    from kmatrix.files import write_atomic

    out_dir = Path(out_dir)
    text = json.dumps(values, indent=1, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(out_dir / "config.json", lambda f: f.write(text.encode()))
    write_atomic(out_dir / "config.py", lambda f: f.write(render_config_py(values).encode()))


MAX_CONFIG_BYTES = 2**24
MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def load(path="config.json"):
    """The typed configuration written by `make` (config.json beside config.py). The file
    is checked as untrusted (a hand edit): strict JSON, flat, and every Kconfig symbol's
    value of its type and in its domain, as if it had been typed into `make setconfig`."""
    from kmatrix.files import parse_json

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: run `make defconfig-<name>` or `make olddefconfig`"
        )
    fix = "`make olddefconfig` writes it again from .config"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(str(path), f"cannot be read ({e.strerror or e})", fix) from None
    values, problem = parse_json(data, "configuration")
    if len(data) > MAX_CONFIG_BYTES:
        problem = f"is larger than {MAX_CONFIG_BYTES // 2**20} MiB"
    elif problem is None:
        problem = _malformed_config(values)
    if problem:
        problem = problem if len(problem) <= 300 else problem[:300] + "..."
        raise ConfigError(str(path), f"cannot be used: {problem}", fix)
    return Config(values)


def _malformed_config(values):
    """What is wrong with config.json's values, or None."""
    if not isinstance(values, dict) or not isinstance(values.get("name"), str):
        return "not a configuration object"
    for key, value in values.items():
        if key == VARIANT_VALUES:  # checked below, like every other value
            continue
        items = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, (str, int, float, bool)) for v in items):
            return f"{key.upper()} = {shorten(json.dumps(value))}: is not a value or a flat list"
    from kmatrix import kconfig

    kconf = kconfig.load_kconfig()
    workloads = [n.lower()[len("workload_") :] for n in kconf.syms if n.startswith("WORKLOAD_")]
    # A configuration of a shipped workload holds every symbol; one whose WORKLOAD is a
    # module path (a test's workload; plan.py imports it, or says there is none) is
    # checked on the symbols it holds.
    workload = values.get("workload")
    complete = workload in workloads
    if not complete and not (isinstance(workload, str) and MODULE.match(workload)):
        return f"WORKLOAD = {shorten(json.dumps(workload))}: is none of {', '.join(workloads)}"
    expected = typed_values(kconf)
    for key in expected:
        if key == "workload" and not complete:
            continue
        if key not in values:
            if complete:
                return f"{key.upper()} is missing"
            continue
        problem = _check_value(kconf, key, values[key])
        if problem:
            return f"{key.upper()} = {shorten(json.dumps(values[key]))}: {problem}"
    return _malformed_variants(kconf, values, expected)


def _malformed_variants(kconf, values, expected):
    """What is wrong with config.json's merged fragments (kmatrix/variants.py), or None:
    present exactly when VARIANTS names a set, and every value one its symbol can hold."""
    table = values.get(VARIANT_VALUES)
    if not values.get("variants"):
        return None if table is None else f"{VARIANT_VALUES} is set but VARIANTS is empty"
    if not isinstance(table, dict) or not table:
        return f"{VARIANT_VALUES} is not an object of variants (VARIANTS is set)"
    for name, changes in table.items():
        if not NAME.match(name) or not isinstance(changes, dict):
            return f"{VARIANT_VALUES}: {shorten(name)} is not a variant name and its values"
        for key, value in changes.items():
            problem = "is no setting" if key not in expected else _check_value(kconf, key, value)
            if problem:
                return f"{VARIANT_VALUES}[{name}]: {key.upper()} = {shorten(json.dumps(value))}: {problem}"
    return None


def _check_value(kconf, key, value):
    """Why `value` is not what Kconfig's `key` (a symbol, choice or multi-select list)
    can hold, or None."""
    sym = kconf.syms.get(key.upper())
    choice = next((c for c in kconf.unique_choices if c.name and c.name.lower() == key), None)
    if choice is not None:
        names = [s.name[len(choice.name) + 1 :].lower() for s in choice.syms]
        return None if value is None or value in names else f"is none of {', '.join(names)}"
    if sym is None:  # a multi-select list
        for list_name, prefix, syms in _multi_select_groups(kconf):
            if list_name == key:
                names = [s.name[len(prefix) + 1 :].lower() for s in syms]
                ok = isinstance(value, list) and all(v in names for v in value)
                return None if ok else f"is not a list of {', '.join(names)}"
        return None
    if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        return None if isinstance(value, bool) else "is not true or false"
    if sym.orig_type in (kconfiglib.INT, kconfiglib.HEX):
        if value is None:  # a symbol whose dependencies are not met has no value
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            return "is not an integer"
        for low, high, _ in sym.ranges:
            lo, hi = int(low.str_value, 0), int(high.str_value, 0)
            if not lo <= value <= hi:
                return f"is out of range [{lo}, {hi}]"
        return None
    tag = _tag(sym)
    kind = tag["kind"] if tag else None
    if kind in LIST_KINDS:
        if not isinstance(value, list):
            return "is not a list"
        text = " ".join(map(str, value))
    elif kind and kind.startswith("float"):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return "is not a number"
        text = "" if value is None else repr(value)
    elif not isinstance(value, str):
        return "is not a string"
    else:
        text = value
    if kind == "words" and any(not isinstance(v, str) or not v or v.split() != [v] for v in value):
        return "is not a list of words"
    try:
        parsed = _parse_string(sym, text)
    except ConfigError as e:
        return e.problem
    return None if parsed == value else "does not read back as the same value"
