"""Named presets live in mm2latent/presets.py, config classes are all *Cfg, and every entry of a
component table is used by the project (tests do not count as a use)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mm2latent import presets
from mm2latent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROJECT_CODE = ("mm2latent", "flows", "tasks", "storage", "benchmarks")
TABLES = {name: table for name, table in vars(presets).items()
          if name.endswith("_PRESETS") and isinstance(table, dict)}


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for top in PROJECT_CODE
            for path in sorted((ROOT / top).rglob("*.py"))}


def _name(node: ast.AST) -> str | None:
    """`X` for X or module.X."""
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)


def test_named_presets_are_defined_only_in_presets_py():
    elsewhere = []
    for path, tree in _trees().items():
        for node in tree.body:  # module level: where a named table lives
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else [])
            elsewhere += [f"{path.relative_to(ROOT)}:{node.lineno} {t.id}" for t in targets
                          if isinstance(t, ast.Name) and t.id.endswith("PRESETS")
                          and path != ROOT / "mm2latent" / "presets.py"]
    assert elsewhere == []


def test_config_classes_follow_one_naming_scheme():
    config_named = [f"{path.relative_to(ROOT)}: {node.name}" for path, tree in _trees().items()
                    for node in ast.walk(tree)
                    if isinstance(node, ast.ClassDef) and node.name.endswith("Config")]
    assert config_named == []  # the project's scheme is *Cfg (PresetCfg, AutoencoderCfg, ...)


def test_every_component_preset_entry_is_used_by_the_project():
    used = set()  # (table, key) read as TABLE["key"] or component_preset(TABLE, "key", ...)
    for tree in _trees().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                used.add((_name(node.value), node.slice.value))
            elif (isinstance(node, ast.Call) and _name(node.func) == "component_preset"
                  and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)):
                used.add((_name(node.args[0]), node.args[1].value))
    dead = [f"{table}[{key!r}]" for table, entries in TABLES.items() if table != "PRESETS"
            for key in entries if (table, key) not in used]
    assert dead == []


@pytest.mark.parametrize("table", sorted(TABLES))
def test_unknown_names_and_fields_list_the_valid_ones(table):
    entries = TABLES[table]
    with pytest.raises(ConfigError, match=", ".join(sorted(entries))):
        presets.component_preset(entries, "nope")
    with pytest.raises(ConfigError, match="Unknown config field"):
        presets.component_preset(entries, next(iter(entries)), no_such_field=1)
