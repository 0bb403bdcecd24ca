"""Configuration commands behind the Makefile: defconfig, lint, setconfig, savedefconfig.

Usage: python scripts/config.py {defconfig NAME | lint [FILE...] | genconfig | menuconfig |
        setconfig 'SYM=value ...' | savedefconfig OUT | list}
The Makefile passes NAME, SET and OUT in $KMATRIX_ARG, so no shell ever parses them.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix import kconfig, variants  # noqa: E402
from kmatrix.errors import ConfigError  # noqa: E402


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if not args and "KMATRIX_ARG" in os.environ:  # from make: never through a shell
        args = [os.environ["KMATRIX_ARG"]]
    try:
        if command == "defconfig":
            values = kconfig.apply_defconfig(args[0])
            print(f"  CONF    .config <- defconfigs/{args[0]} (matrix {values['name']!r})")
        elif command == "lint":
            files = args or sorted(str(p) for p in (kconfig.ROOT / "defconfigs").iterdir())
            kconf = kconfig.load_kconfig()
            problems, fragments = [], 0
            for f in files:
                found = kconfig.lint_defconfig(f, kconf)
                if not found:  # and the variant fragments it names, merged onto it
                    found, count = variants.lint_set(kconf, kconfig.ROOT)
                    fragments += count
                problems += found
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                return 1
            more = f", {fragments} variant fragment(s) merged onto them" if fragments else ""
            print(f"  LINT    {len(files)} defconfig(s) clean{more}")
        elif command == "genconfig":
            kconfig.genconfig()
            print("  GEN     config.py config.json")
        elif command == "menuconfig":
            menu = [sys.executable, "-m", "menuconfig", "Kconfig"]
            kconfig.edit_dotconfig(lambda: subprocess.run(menu, cwd=kconfig.ROOT))
            print("  GEN     config.py config.json")
        elif command == "setconfig":
            text = " ".join(args)
            if not text.strip():
                raise ConfigError("SET", "nothing to set", 'make setconfig SET="SYM=value ..."')
            kconfig.setconfig(text)
            print(f"  SET     {text if len(text) <= 200 else text[:200] + '...'}")
        elif command == "savedefconfig":
            out = kconfig.savedefconfig(args[0] if args else "defconfig")
            print(f"  SAVE    {out} (minimal: only values that differ from the defaults)")
        elif command == "list":
            for path in sorted((kconfig.ROOT / "defconfigs").iterdir()):
                print(path.name)
        else:
            print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
            return 2
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
