"""Named ablation variants: a matrix axis whose values are bundles of settings.

`CONFIG_VARIANTS="<set>"` names the directory variants/<set>/; each file
`<variant>.config` in it is a Kconfig fragment, merged onto the configuration as Linux's
scripts/kconfig/merge_config.sh merges fragments (the base, then the fragment over it,
then a check that every requested value is the merged one). When the configuration is
generated, each fragment is linted like a defconfig and merged, and config.json keeps
what each variant changes as typed values ("variant_values": {variant: {key: value}}).
Planning then resolves every cell of a variant from the base values with those
changes on top, and the variant's name becomes the first axis of each cell id.

Adding a variant is adding one file: `make` regenerates config.json when a fragment or
the directory changes (the Makefile lists them).
"""

import fnmatch
import json
import re
import sys
import tempfile
from pathlib import Path

from kmatrix.config import NAME, RUNTIME_PREFIXES, VARIANT_VALUES, Config
from kmatrix.errors import ConfigError

DIRECTORY = "variants"
ROOT = Path(__file__).resolve().parent.parent  # where make runs: variants/ is under it
# What a variant may not change: the matrix itself (its name, workload, profile, seeds and
# variant set), the X x Y grid, and where cells run. Axes are checked at planning, where
# the workload names them (check_configs).
MATRIX_WIDE = re.compile(
    r"^(NAME|VARIANTS|SEEDS|WORKLOAD_\w+|PROFILE_\w+|SWEEP\w*|EXEC_\w+|TRACK_\w+)$"
)


def fragments(root, set_name):
    """[(variant name, fragment path)] of variants/<set>/, in name order."""
    folder = Path(root) / DIRECTORY / set_name
    shown = f"{DIRECTORY}/{set_name}/"
    if not folder.is_dir():
        raise ConfigError(
            "VARIANTS",
            f"{set_name!r} names no directory {shown}",
            f"create {shown} with one <variant>.config fragment per variant, or set "
            'CONFIG_VARIANTS="" for no variant axis',
        )
    found = []
    for path in sorted(folder.glob("*.config")):
        name = path.name[: -len(".config")]
        if not NAME.match(name):
            raise ConfigError(
                f"{shown}{path.name}",
                f"{name!r} is not a safe variant name (it goes into cell ids and paths)",
                "rename the file: 1-100 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit",
            )
        found.append((name, path))
    if not found:
        raise ConfigError(
            "VARIANTS",
            f"{shown} holds no <variant>.config fragment",
            "add one file per variant, e.g. an empty baseline.config for the base itself",
        )
    return found


def lint_fragment(kconf, base, path, root):
    """(problems, changes, redundant) of one fragment merged onto the configuration file
    `base` (kmatrix.kconfig.merge_fragment), after the line checks a defconfig gets and
    the refusal of settings a variant may not change."""
    from kmatrix import kconfig

    shown = _shown(path, root)
    problems, wanted, shown = kconfig.read_assignments(path, kconf, shown=shown)
    for name, (lineno, value) in wanted.items():
        if MATRIX_WIDE.match(name):
            problems.append(
                f"{shown}:{lineno}: CONFIG_{name}: a variant may not change the matrix's "
                "name, workload, profile, seeds, variant set, sweep or where cells run; "
                "set it in the defconfig (it then holds for every variant)"
            )
    if problems:
        return problems, [], []
    return kconfig.merge_fragment(kconf, base, path, shown, wanted)


def _shown(path, root):
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def merge_set(kconf, values, text, root, say=print, warn=None):
    """`values` (the base's typed values; `text`, its .config) with "variant_values" added
    when VARIANTS names a set: each fragment linted and merged onto the base, its changes
    said (`say`), lines that change nothing warned about. Every problem of every fragment
    is one ConfigError. Leaves `kconf` holding the base again."""
    if not values.get("variants"):
        return values
    warn = warn or (lambda line: print(line, file=sys.stderr))
    table, problems = _merge_all(kconf, values, text, root, say, warn)
    if problems:
        raise ConfigError(
            f"{DIRECTORY}/{values['variants']}/", "fragments refused:\n  " + "\n  ".join(problems)
        )
    return {**values, VARIANT_VALUES: table}


def lint_set(kconf, root):
    """`make lint-defconfigs` for the configuration `kconf` holds (a defconfig that linted
    clean): every problem of the fragments of the set it names, and how many there are."""
    from kmatrix import config as typed

    values = typed.typed_values(kconf)
    if not values.get("variants"):
        return [], 0
    try:
        table, problems = _merge_all(kconf, values, kconf._config_contents(None), root)
    except ConfigError as e:  # no such directory, no fragment, a bad file name
        return [str(e)], 0
    return problems, len(table) + len(problems)


def _merge_all(kconf, values, text, root, say=None, warn=None):
    """({variant: typed values its fragment changes}, problems) of the set `values`
    names, each fragment merged onto the base (`text`); `kconf` holds the base after."""
    from kmatrix import config as typed

    table, problems = {}, []
    with tempfile.TemporaryDirectory(prefix="kmatrix-variants-") as tmp:
        base = Path(tmp) / "base.config"
        base.write_text(text)
        for name, path in fragments(root, values["variants"]):
            found, changes, redundant = lint_fragment(kconf, base, path, root)
            problems += found
            if found:
                continue
            merged = typed.typed_values(kconf)
            table[name] = {k: v for k, v in merged.items() if values.get(k) != v}
            if say:
                say(f"  VARIANT {name}: {', '.join(changes) or 'the base configuration'}")
            for line in redundant if warn else ():
                warn(f"warning: {line} (the line changes nothing)")
        kconf.load_config(str(base), replace=True)
    return table, problems


def configs(cfg):
    """[(variant name, its Config)] in name order; [(None, cfg)] without variants."""
    if not cfg.get("variants"):
        return [(None, cfg)]
    table = cfg.get(VARIANT_VALUES)
    if not table:
        raise ConfigError(
            "VARIANTS",
            f"config.json holds no merged fragments of {DIRECTORY}/{cfg.variants}/",
            "`make olddefconfig` merges them again",
        )
    base = cfg.as_dict()
    return [(name, Config({**base, **table[name]})) for name in sorted(table)]


def config_for(cfg, point):
    """The Config a cell at `point` is resolved from: its variant's, or `cfg`."""
    name = point.get("variant") if cfg.get("variants") else None
    if name is None:
        return cfg
    table = cfg.get(VARIANT_VALUES) or {}
    if name not in table:
        raise ConfigError(
            "VARIANTS",
            f"no variant {name!r} in {DIRECTORY}/{cfg.variants}/ (a cell of an earlier plan)",
            "`make olddefconfig` merges the fragments there again",
        )
    return Config({**cfg.as_dict(), **table[name]})


def fragment_path(cfg, name):
    return f"{DIRECTORY}/{cfg.variants}/{name}.config"


def check_configs(cfg, wl, variant_cfgs):
    """Each variant's configuration passes the workload's validate(), and changes no
    matrix axis (its cells would not be the base's axes times the variants): refused
    naming the fragment, and its line behind the axis."""
    base = {a[0]: (list(a[1]), a[2] if len(a) > 2 else a[0].upper()) for a in wl.axes(cfg)}
    if "variant" in base:
        raise ConfigError("VARIANTS", "the workload has an axis named variant already")
    for name, vcfg in variant_cfgs:
        try:
            wl.validate(vcfg)
        except ConfigError as e:
            raise ConfigError(
                fragment_path(cfg, name), f"variant {name}: {e.symbol}: {e.problem}", e.fix
            ) from None
        for axis in wl.axes(vcfg):
            values, symbol = base[axis[0]]
            if list(axis[1]) == values:
                continue
            shown = fragment_path(cfg, name)
            lines = _lines_setting(ROOT / shown, symbol)
            raise ConfigError(
                f"{shown}:{lines[0]}" if lines else shown,
                f"variant {name} changes the {axis[0]} axis ({' '.join(map(str, values))} -> "
                f"{' '.join(map(str, axis[1]))}); a variant may not change an axis",
                f"remove CONFIG_{symbol} from the fragment, or change the axis in the "
                "defconfig for every variant",
            )


def _lines_setting(path, pattern):
    """Line numbers of `path` that assign a symbol matching `pattern` (e.g. PRECISION_*)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for lineno, line in enumerate(lines, 1):
        m = re.match(r"^(?:# )?CONFIG_([A-Za-z0-9_]+)[= ]", line.strip())
        if m and fnmatch.fnmatchcase(m.group(1), pattern):
            found.append(lineno)
    return found


def check_cells(cfg, wl, combos, params):
    """Refuse variants that make no difference. `combos`: the axis points without the
    variant; `params`: variant -> the cell parameters of each combination, in that order.
    A variant that changes the knob a sweep sets at every grid point would never have
    its value used; two variants with the same parameters everywhere would run the same
    cells under two names."""
    swept = [cfg.get(f"sweep_{a}_param") for a in "xy"] if cfg.get("sweep") else []
    base = [wl.cell_params(cfg, point) for point in combos] if swept else []
    seen = {}
    for name, each in params.items():
        for key, axis in zip(swept, "XY"):
            if any(mine.get(key) != theirs.get(key) for mine, theirs in zip(each, base)):
                raise ConfigError(
                    fragment_path(cfg, name),
                    f"variant {name} changes {key}, which the sweep sets at every grid point "
                    f"(SWEEP_{axis}_PARAM): the fragment's value would never be used",
                    "remove it from the fragment, or sweep another knob",
                )
        key = json.dumps(each, sort_keys=True, default=str)
        if key in seen:
            raise ConfigError(
                fragment_path(cfg, name),
                f"variants {seen[key]} and {name} give every cell the same parameters: what "
                "differs between their fragments changes nothing a cell computes",
                "change a setting the cells use in one of them, or delete one",
            )
        seen[key] = name


def by_fragment(values):
    """Typed values with each variant's changes as one entry named by its fragment file
    (variants/<set>/<name>.config), so that a list of what changed names the file."""
    table = values.get(VARIANT_VALUES)
    if not isinstance(table, dict):
        return values
    out = {k: v for k, v in values.items() if k != VARIANT_VALUES}
    out.update({f"{DIRECTORY}/{values.get('variants')}/{n}.config": c for n, c in table.items()})
    return out


def added(old, new):
    """The variants `new` (typed values) has beside all of `old`'s, when nothing else that
    decides what cells compute differs (the other variants' changes included); else []."""
    if not isinstance(old, dict):
        return []
    was, now = old.get(VARIANT_VALUES), new.get(VARIANT_VALUES)
    if not isinstance(was, dict) or not isinstance(now, dict) or not was:
        return []
    rest = lambda values: {  # noqa: E731
        k: v
        for k, v in values.items()
        if k != VARIANT_VALUES and not k.startswith(RUNTIME_PREFIXES)
    }
    if rest(old) != rest(new) or any(now.get(name) != was[name] for name in was):
        return []
    return sorted(set(now) - set(was))
