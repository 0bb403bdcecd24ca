"""A copy of this checkout for benchmarks that run `make` as a user would, so that a
benchmark never touches the developer's .config, config.json or results.

The copy leaves out the environment, the configuration, results and caches (SKIP); the
prepared data/ is shared through a symlink (prepared once, as on a user's machine).
"""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".git", ".venv", "results", "data", ".stage", ".whl", ".gl", "build", "wandb"}
SKIP |= {".config", ".config.old", "config.py", "config.json", "defconfig"}


def copy_checkout(tree, share_data=True):
    """Copy the checkout's code into `tree` (created, or refreshed: its results/ stay, so a
    run there can be resumed); returns `tree` as a Path."""
    tree = Path(tree)
    top = lambda d, names: [n for n in names if n in SKIP] if Path(d) == ROOT else []  # noqa
    shutil.copytree(
        ROOT, tree, ignore=lambda d, names: top(d, names) + ["__pycache__"], dirs_exist_ok=True
    )
    if share_data and (ROOT / "data").is_dir() and not (tree / "data").exists():
        (tree / "data").symlink_to(ROOT / "data")
    return tree
