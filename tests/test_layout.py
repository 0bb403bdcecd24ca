"""The house's rules that a reader relies on: test modules share helpers through
conftest.py only, and the guides name files that exist."""

import ast
import re

import pytest

from tests.conftest import ROOT

TESTS = sorted((ROOT / "tests").glob("test_*.py"))


def imported_modules(path):
    """Every module an `import` or `from ... import` of this file names (absolute or
    relative), at any depth of the file: in a function too."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.append(base)
            if not node.module:  # from . import test_x
                names += [base + alias.name for alias in node.names]
    return names


def imported_test_modules(path):
    return [m for m in imported_modules(path) if re.search(r"(^|\.)test_\w+$", m)]


def test_the_import_finder_sees_every_form(tmp_path):
    path = tmp_path / "test_example.py"
    path.write_text(
        "import tests.test_a\nfrom tests.test_b import x\nfrom . import test_c\n"
        "from .test_d import y\nimport os\nfrom tests.conftest import ROOT\n"
        "def f():\n    from tests.test_e import z\n"
    )
    found = imported_test_modules(path)
    assert found == ["tests.test_a", "tests.test_b", ".test_c", ".test_d", "tests.test_e"]


@pytest.mark.parametrize("path", TESTS, ids=[p.name for p in TESTS])
def test_no_test_module_imports_another(path):
    # A helper two test modules need belongs in tests/conftest.py: importing a test
    # module runs its module-level code and collects its tests a second time.
    assert (
        imported_test_modules(path) == []
    ), f"{path.name}: move the shared helper to tests/conftest.py"


# Files that a newcomer reads to find the code: every repository path they name exists.
GUIDES = ["CLAUDE.md", "docs/architecture.md", "docs/workload-interface.md", "Kconfig"]
GUIDES += [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("*/Kconfig"))]
PATH = re.compile(r"\b((?:kmatrix|gpt2|fractal|llmmap|tests|scripts|bench|docs)/[\w/.-]*\w)")


def test_the_path_finder_sees_paths():
    found = PATH.findall("see `kmatrix/plan.py`, tests/fake_workload.py and llmmap/.")
    assert found == ["kmatrix/plan.py", "tests/fake_workload.py"]


@pytest.mark.parametrize("guide", GUIDES)
def test_guides_name_files_that_exist(guide):
    named = set(PATH.findall((ROOT / guide).read_text()))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == [], f"{guide} names files that do not exist: {missing}"
