"""Kconfig front door: defconfigs, lint, command-line overrides, savedefconfig.

Thin glue over kconfiglib. Kconfig on its own silently ignores a malformed line or an
assignment that its dependencies reject; `lint_defconfig` reports every such line as
`file:line: problem`, and nothing loads a defconfig that does not lint clean.
"""

import difflib
import os
import re
import shlex
import sys
from pathlib import Path

import kconfiglib

from kmatrix import config as typed
from kmatrix.errors import ConfigError
from kmatrix.files import write_atomic

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
NOT_SET = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")

# Symbols a Kconfig change renamed or removed: old name -> (new name or None, what to
# write instead). The one table of renames: an old defconfig or .config that sets one is
# refused with its fix, and `make setconfig` names the new symbol. (Renaming a symbol
# changes the configuration's hash: results made before it need FORCE=1.)
RENAMED = {
    "FRACTAL_ENGINE_LLM": (
        "WORKLOAD_LLMMAP",
        "the LLM maps are a workload of their own: set CONFIG_WORKLOAD_LLMMAP=y instead of "
        "CONFIG_WORKLOAD_FRACTAL=y",
    ),
    "FRACTAL_ENGINE_MLP": (
        None,
        "the paper's engine is the whole fractal workload: CONFIG_WORKLOAD_FRACTAL=y alone",
    ),
    "TRAINABLE_WINDOW": ("LLMMAP_TRAINABLE_WINDOW", None),
    "TRAINABLE_THRESHOLD": ("LLMMAP_TRAINABLE_THRESHOLD", None),
    "FRACTAL_LLM_PARENT": ("LLMMAP_ZOOMS_INTO", None),
}


def renamed(name):
    """What became of a symbol Kconfig no longer knows and what to write instead, as
    'CONFIG_X was renamed CONFIG_Y (fix)', or None."""
    if name not in RENAMED:
        return None
    new, fix = RENAMED[name]
    if new is None:
        return f"CONFIG_{name} was removed ({fix})"
    fix = fix or f"set CONFIG_{new} to the same value"
    return f"CONFIG_{name} was renamed CONFIG_{new} ({fix})"


def load_kconfig(root=ROOT):
    """Parse the Kconfig tree (quietly: we report problems ourselves), from any working
    directory: kconfiglib finds `source`d files under $srctree."""
    old = os.environ.get("srctree")
    os.environ["srctree"] = str(root)
    try:
        kconf = kconfiglib.Kconfig(
            str(Path(root) / "Kconfig"), warn=False, suppress_traceback=False
        )
    finally:
        if old is None:
            del os.environ["srctree"]
        else:
            os.environ["srctree"] = old
    kconf.warn_assign_undef = False
    return kconf


def _close_names(kconf, name):
    return difflib.get_close_matches(name, list(kconf.syms), n=1, cutoff=0.75)


def unknown_symbol(kconf, name):
    hint = _close_names(kconf, name)
    return f"unknown symbol CONFIG_{name}" + (f" (did you mean CONFIG_{hint[0]}?)" if hint else "")


def _clip(value, limit=40):
    return value if len(value) <= limit else value[:limit] + "..."


def why_not(kconf, sym, wanted):
    """Why `sym` did not end up with the value `wanted` (a Kconfig string)."""
    if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE) and sym.choice is not None:
        choice = sym.choice
        if choice.visibility == 0:
            return f"choice has unmet dependencies ({kconfiglib.expr_str(choice.direct_dep)})"
        if wanted == "y":
            return f"another member of the choice is selected ({choice.selection.name})"
        return "a choice needs one member set; select another member instead of unsetting"
    if sym.visibility == 0 and not sym.nodes[0].prompt:
        return "has no prompt: it is set automatically and cannot be assigned"
    if sym.visibility == 0:
        why = f"unmet dependencies ({kconfiglib.expr_str(sym.direct_dep)})"
        selected = [  # a hidden symbol in the way: say which setting selects it
            f"{s.name} is selected by {kconfiglib.expr_str(s.rev_dep)}"
            for s in kconfiglib.expr_items(sym.direct_dep)
            if isinstance(s, kconfiglib.Symbol) and s.tri_value == 2 and s.rev_dep is not kconf.n
        ]
        return why + (f": {'; '.join(selected)}" if selected else "")
    if sym.orig_type in (kconfiglib.INT, kconfiglib.HEX):
        kind = kconfiglib.TYPE_TO_STR[sym.orig_type]
        span = _range(sym)
        within = f" in [{span[0]}, {span[1]}]" if span else ""
        try:
            int(wanted, 16 if sym.orig_type == kconfiglib.HEX else 10)
        except ValueError:
            return (
                f"{typed.shorten(wanted)} is not an {kind} value: it takes a whole number{within}"
            )
        if span:
            return f"value {typed.shorten(wanted)} out of range [{span[0]}, {span[1]}]"
        return f"{typed.shorten(wanted)} is not a valid {kind} value"
    if sym.orig_type == kconfiglib.BOOL and wanted not in ("y", "n"):
        return f"{typed.shorten(wanted)} is not a bool value (use y, or '# CONFIG_{sym.name} is not set')"
    if sym.rev_dep is not kconf.n and wanted == "n":
        return f"forced on by select ({kconfiglib.expr_str(sym.rev_dep)})"
    return f"did not take effect (value is {typed.shorten(sym.str_value)})"


def _range(sym):
    """The (low, high) strings of an int symbol's active range, or None."""
    for low, high, cond in sym.ranges:
        if kconfiglib.expr_value(cond):
            return low.str_value, high.str_value
    return None


def how_to_set(sym):
    """The fix for a refused value: what the symbol takes, as a `make setconfig` line."""
    example = sym.str_value or (sym.defaults[0][0].str_value if sym.defaults else "")
    if sym.orig_type in (kconfiglib.INT, kconfiglib.HEX):
        span = _range(sym)  # why_not() already names it; the example is in it
        takes = f"a whole number in [{span[0]}, {span[1]}]" if span else "a whole number"
    elif sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        takes, example = "y or n", "y"
    else:
        prompt = sym.nodes[0].prompt[0] if sym.nodes and sym.nodes[0].prompt else ""
        kind = re.search(r"\(([^()]*)\)\s*$", prompt)
        takes = f"a value of the kind its prompt states ({kind.group(1)})" if kind else "a string"
    return f"give {takes}, e.g. `make setconfig SET={sym.name}={example}`"


def _parse_value(sym, raw):
    """A defconfig right-hand side -> the Kconfig string value, or an error string."""
    if sym.orig_type == kconfiglib.STRING:
        if not (len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"'):
            return None, f'string value must be quoted: CONFIG_{sym.name}="{raw}"'
        body = raw[1:-1]
        if re.search(r'(?<!\\)"', body):
            return None, 'unescaped " inside a string value (write \\")'
        return kconfiglib.unescape(body), None
    if raw.startswith('"'):
        return None, f"{kconfiglib.TYPE_TO_STR[sym.orig_type]} value must not be quoted"
    return raw, None


def _parse_line(line, defconfig):
    """One line of a defconfig or .config: (name, value, problems). name is None where the
    line assigns nothing: blank, a comment, or a problem that stops the line there."""
    stripped = line.strip()
    if not stripped:
        return None, None, []
    problems = ["trailing whitespace"] if line != line.rstrip() else []
    if stripped.startswith("#"):
        m = NOT_SET.match(stripped)
        if m:
            return m.group(1), "n", problems
        if stripped.startswith("# CONFIG_"):
            problems.append("malformed '# CONFIG_X is not set' line")
        return None, None, problems  # else a comment on its own line
    m = ASSIGNMENT.match(line)
    if not m:
        if re.match(r"^\s*CONFIG_\w+(\s+=|=\s+|\s+=\s+)", line):
            problems.append("spaces around '=' (write CONFIG_X=value)")
        elif re.match(r"^\s*\w+\s*=", line) and not stripped.startswith("CONFIG_"):
            problems.append("assignment must start with CONFIG_")
        else:
            problems.append("malformed line (write CONFIG_X=value)")
        return None, None, problems
    name, raw = m.group(1), m.group(2)
    if re.search(r"\s#", raw) and not (raw.startswith('"') and raw.endswith('"')):
        problems.append("inline comment (put comments on their own line)")
    elif raw != raw.strip():
        problems.append("spaces around '=' (write CONFIG_X=value)")
    elif raw == "n" and defconfig:  # a defconfig's style; .config may say =n
        problems.append(f"write '# CONFIG_{name} is not set' to turn a bool off")
    else:
        return name, raw, problems
    return None, None, problems


def lint_defconfig(path, kconf=None, warnings=None):
    """Every problem of one defconfig file as 'file:line: problem' (empty list = clean).

    With a `warnings` list, unknown symbols (a .config written before a Kconfig change)
    go there instead and are dropped, as kconfiglib drops them; the rest still counts."""
    kconf = kconf or load_kconfig()
    problems, wanted, shown = read_assignments(path, kconf, warnings)
    return problems or _check_loaded(kconf, path, shown, wanted)


def read_assignments(path, kconf, warnings=None, shown=None):
    """A defconfig-style file's lines, checked one by one: (problems, {symbol name: (line
    number, Kconfig string value)}, the file's name as messages show it: `shown`, or the
    path from the current directory)."""
    path = Path(path)
    if shown is None:
        here = path.resolve().is_relative_to(Path.cwd())
        shown = os.path.relpath(path) if here else str(path)
    problems = []
    wanted = {}  # symbol name -> (line number, Kconfig string value)
    for lineno, raw_line in enumerate(path.read_bytes().splitlines(), 1):
        found, warned, assigned = _lint_line(kconf, raw_line, warnings is None, wanted)
        problems += [f"{shown}:{lineno}: {problem}" for problem in found]
        if warnings is not None:
            warnings += [f"{shown}:{lineno}: {warning}" for warning in warned]
        if assigned:
            wanted[assigned[0]] = (lineno, assigned[1])
    return problems, wanted, shown


def _lint_line(kconf, raw_line, defconfig, wanted):
    """One line of a defconfig (or, not `defconfig`, of a .config): its problems, its
    warnings, and the (symbol, Kconfig string value) it assigns, or None."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as e:
        byte, column = raw_line[e.start], e.start + 1
        text = f"not UTF-8 text (byte 0x{byte:02x} at column {column}); save the file as UTF-8"
        return [text], [], None
    name, value, problems = _parse_line(line, defconfig)
    if name is None:
        return problems, [], None
    sym = kconf.syms.get(name)
    if sym is None or not sym.nodes:
        text, error = _unknown(kconf, name, value, defconfig)
        return (problems + [text], [], None) if error else (problems, [text], None)
    if name in wanted:
        again = f"CONFIG_{name} assigned again (first at line {wanted[name][0]})"
        return problems + [again], [], None
    if not line.lstrip().startswith("#"):
        value, error = _parse_value(sym, value)
        if error:
            return problems + [error], [], None
    return problems, [], (name, value)


def _unknown(kconf, name, value, defconfig):
    """(message, whether it is an error) for a symbol Kconfig does not know: in a
    defconfig always an error; in a .config a warning (the symbol is dropped), unless a
    renamed symbol is set: dropping it would silently run another configuration."""
    gone = renamed(name)
    if gone is None:
        return unknown_symbol(kconf, name), defconfig
    return gone, defconfig or value != "n"


def _check_loaded(kconf, path, shown, wanted):
    """Load the file for real: every assignment took effect and the typed values pass."""
    kconf.load_config(str(path), replace=True)
    return _not_taken(kconf, shown, wanted)


def _not_taken(kconf, shown, wanted):
    """A problem (file:line) for each wanted value the loaded configuration does not hold,
    then, if none, for the first typed value that fails its domain."""
    problems = []
    for name, (lineno, value) in wanted.items():
        sym = kconf.syms[name]
        if sym.str_value != value:
            why = why_not(kconf, sym, value)
            problems.append(f"{shown}:{lineno}: CONFIG_{name}={_clip(value)}: {why}")
    if not problems:
        try:
            typed.typed_values(kconf)
        except ConfigError as e:
            first = e.symbol.split(",")[0].strip()
            lineno = wanted.get(first, (0, None))[0]
            problems.append(f"{shown}:{lineno}: CONFIG_{e}")
    return problems


def merge_fragment(kconf, base, path, shown, wanted):
    """Merge a fragment (`wanted`, from read_assignments) onto the configuration file
    `base` as merge_config.sh does: load the base, then the fragment over it, then check
    that every requested value is the merged one. Returns (problems, changes, redundant):
    a problem for each value the merge did not take (a dependency, a choice member that
    lost to another line, an int out of range), 'CONFIG_X old -> new' for each value the
    fragment redefines, and a warning for each line that restates the base's value."""
    kconf.load_config(str(base), replace=True)
    before = {name: kconf.syms[name].str_value for name in wanted}
    kconf.load_config(str(path), replace=False)
    problems = _not_taken(kconf, shown, wanted)
    changes, redundant = [], []
    for name, (lineno, value) in wanted.items():
        if kconf.syms[name].str_value != value:
            continue  # a problem above
        if before[name] == value:
            redundant.append(
                f"{shown}:{lineno}: CONFIG_{name}={_clip(value)} is the base's value already"
            )
        else:
            changes.append(f"CONFIG_{name} {_clip(before[name]) or '(empty)'} -> {_clip(value)}")
    return problems, changes, redundant


def defconfig_path(name, root=ROOT):
    path = Path(root) / "defconfigs" / name
    if not path.is_file() or not path.resolve().is_relative_to(Path(root) / "defconfigs"):
        names = sorted(p.name for p in (Path(root) / "defconfigs").iterdir())
        hint = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        suggestion = f"did you mean `make defconfig-{hint[0]}`? " if hint else ""
        raise ConfigError(
            f"defconfig-{name}",
            f"no file defconfigs/{name}; the defconfigs are: {' '.join(names)}",
            suggestion + "`make list-defconfigs` lists them",
        )
    return path


def apply_defconfig(name, root=ROOT, dotconfig=None):
    """Lint defconfigs/<name>, then write .config and config.py/config.json from it."""
    path = defconfig_path(name, root)
    kconf = load_kconfig(root)
    problems = lint_defconfig(path, kconf)
    if problems:
        raise ConfigError(f"defconfigs/{name}", "lint failed:\n  " + "\n  ".join(problems))
    return _save(kconf, root, dotconfig)


def _save(kconf, root, dotconfig=None):
    from kmatrix import variants

    dotconfig = Path(dotconfig or Path(root) / ".config")
    values = typed.typed_values(kconf)  # validate before touching any file
    text = kconf._config_contents(None)  # what kconf.write_config writes, written atomically
    values = variants.merge_set(kconf, values, text, root)  # the fragments, onto this
    write_atomic(dotconfig, lambda f: f.write(text.encode()))
    typed.write_config(values, dotconfig.parent)
    return values


def load_dotconfig(root=ROOT, dotconfig=None, warn=None):
    """Load .config, checked like a defconfig: a value Kconfig would reject or silently
    reset (a hand edit out of range, an unmet dependency, a bad float) is an error that
    names the line; symbols Kconfig no longer knows are dropped with a warning."""
    dotconfig = Path(dotconfig or Path(root) / ".config")
    kconf = load_kconfig(root)
    if not dotconfig.exists():
        raise ConfigError(".config", "not found", "run `make defconfig-<name>` first")
    warnings = []
    problems = lint_defconfig(dotconfig, kconf, warnings)
    for warning in warnings:
        (warn or (lambda text: print(text, file=sys.stderr)))(f"warning: {warning} (dropped)")
    if problems:  # each problem names its own fix; then what to do about the file
        raise ConfigError(
            str(dotconfig),
            "holds values Kconfig would not take:\n  "
            + "\n  ".join(problems)
            + "\ncorrect those lines (`make menuconfig`), or start again from "
            "`make defconfig-<name>`",
        )
    if warnings:
        kconf.load_config(str(dotconfig), replace=True)
    return kconf


def edit_dotconfig(edit, root=ROOT, dotconfig=None):
    """Run `edit()` (the menu) on .config, then regenerate config.py. A value the menu
    took but the typed check refuses (a float symbol is a string to the menu, so 'abc'
    passes it) leaves nothing behind: .config goes back to what it was, the edited file
    is kept as .config.rejected, and the one error says so. A .config that sets a renamed
    symbol is refused before the menu starts: the menu would drop it without a word."""
    dotconfig = Path(dotconfig or Path(root) / ".config")
    before = dotconfig.read_bytes()
    _refuse_renamed(dotconfig, before)
    edit()
    try:
        return genconfig(root, dotconfig)
    except ConfigError as e:
        after = dotconfig.read_bytes()
        if after == before:
            raise
        rejected = dotconfig.with_name(dotconfig.name + ".rejected")
        write_atomic(rejected, lambda f: f.write(after))
        write_atomic(dotconfig, lambda f: f.write(before))
        problem = e.problem.split("\ncorrect those lines")[0]  # the fix below replaces it
        raise ConfigError(
            str(rejected) if e.symbol == str(dotconfig) else e.symbol,
            problem.replace(f"{dotconfig.name}:", f"{rejected.name}:")
            + f"\n{dotconfig.name} is unchanged (the menu's edits are in {rejected.name}): run "
            "`make menuconfig` again and correct the value",
        ) from None


def _refuse_renamed(dotconfig, text):
    gone = []
    for lineno, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
        m = ASSIGNMENT.match(line)
        if m and m.group(2) != "n" and renamed(m.group(1)):
            gone.append(f"{dotconfig.name}:{lineno}: {renamed(m.group(1))}")
    if gone:
        raise ConfigError(
            str(dotconfig),
            "was written before symbols it sets were renamed:\n  " + "\n  ".join(gone),
            "edit those lines, or start again from `make defconfig-<name>`",
        )


def genconfig(root=ROOT, dotconfig=None):
    """.config -> config.py + config.json (also fills in new symbols: olddefconfig)."""
    return _save(load_dotconfig(root, dotconfig), root, dotconfig)


def parse_assignments(text):
    """'SWEEP_X_POINTS=32 SEEDS="0 1"' -> [("SWEEP_X_POINTS", "32"), ("SEEDS", "0 1")]."""
    pairs = []
    try:
        items = shlex.split(text)
    except ValueError as e:  # an unbalanced quote
        raise ConfigError(
            "SET", f"cannot split {typed.shorten(text)}: {e}", "balance the quotes"
        ) from None
    for item in items:
        if "=" not in item:
            raise ConfigError(item, "not an assignment", "write SYMBOL=value")
        name, value = item.split("=", 1)
        name = name.strip().removeprefix("CONFIG_")
        pairs.append((name, value))
    return pairs


def setconfig(assignments, root=ROOT, dotconfig=None):
    """Set symbols on top of .config, validated by Kconfig; regenerate config.py."""
    kconf = load_dotconfig(root, dotconfig)
    pairs = parse_assignments(assignments) if isinstance(assignments, str) else assignments
    for name, value in pairs:
        sym = kconf.syms.get(name)
        if sym is None or not sym.nodes:
            if renamed(name):
                raise ConfigError(name, renamed(name))
            hint = _close_names(kconf, name)
            raise ConfigError(name, "unknown symbol", f"did you mean {hint[0]}?" if hint else None)
        if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
            value = {"1": "y", "true": "y", "0": "n", "false": "n"}.get(value.lower(), value)
        sym.set_value(value)
    for name, value in pairs:
        sym = kconf.syms[name]
        if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
            value = {"1": "y", "true": "y", "0": "n", "false": "n"}.get(value.lower(), value)
        if sym.str_value != value:
            why = why_not(kconf, sym, value)
            fix = how_to_set(sym) if sym.visibility else None  # hidden: `why` says what to set
            raise ConfigError(name, f"cannot be set to {typed.shorten(value)}: {why}", fix)
    return _save(kconf, root, dotconfig)


def savedefconfig(out, root=ROOT, dotconfig=None):
    """Write a minimal defconfig (only non-default values) that lints clean."""
    kconf = load_dotconfig(root, dotconfig)
    text = kconf._min_config_contents("")  # what kconf.write_min_config writes
    return write_atomic(out, lambda f: f.write(text.encode()))
