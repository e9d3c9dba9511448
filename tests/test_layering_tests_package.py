"""Layering rule: tests/ sits on top; nothing shipped (library, storage, tasks, flows) and no
benchmark imports it, so benchmarks run from an install without the test suite."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("mm2latent", "storage", "tasks", "flows", "benchmarks")


def _imports_of_tests(path: Path) -> list[str]:
    """Every import in `path` (at any depth) that names the tests package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n.split(".")[0] == "tests"]
    return found


def test_nothing_outside_tests_imports_the_tests_package():
    offenders = {str(p.relative_to(ROOT)): _imports_of_tests(p)
                 for top in SHIPPED for p in sorted((ROOT / top).rglob("*.py"))}
    assert {p: names for p, names in offenders.items() if names} == {}


def test_the_check_sees_an_import_of_tests(tmp_path):
    # Guards the check itself: both import forms of the old benchmarks/train_mapping.py count.
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom tests.fabricate_storage import make_index\n"
                      "def f():\n    import tests.fabricate_training\n")
    assert _imports_of_tests(sample) == ["tests.fabricate_storage",
                                         "tests.fabricate_storage.make_index",
                                         "tests.fabricate_training"]
