"""uv.lock must pin what pyproject.toml declares: a dependency added to one and not the other fails.

`make` installs with `uv sync --locked`, which refuses a stale lock too; this test says so without
a network or uv, in the suite CI runs, and names the requirements that differ.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

Key = tuple[str, tuple[str, ...], str, str]  # name, extras, specifier, marker


def _key(name: str, extras, specifier: str, marker: str) -> Key:
    return (canonicalize_name(name), tuple(sorted(extras)), str(SpecifierSet(specifier)), marker)


def declared_requirements(pyproject: dict) -> set[Key]:
    """(name, extras, specifier, marker) of every base and extra requirement in pyproject.toml."""
    project = pyproject["project"]
    groups = [(None, project.get("dependencies", []))]
    groups += sorted(project.get("optional-dependencies", {}).items())
    keys = set()
    for extra, lines in groups:
        for line in lines:
            req = Requirement(line)
            markers = [str(req.marker)] if req.marker else []
            if extra is not None:
                markers.append(f"extra == '{extra}'")
            keys.add(_key(req.name, req.extras, str(req.specifier), " and ".join(markers)))
    return keys


def locked_requirements(lock: dict, project_name: str) -> set[Key]:
    """The same tuples as recorded in uv.lock for the project itself (its requires-dist)."""
    (package,) = [p for p in lock["package"] if p["name"] == project_name]
    return {_key(r["name"], r.get("extras", ()), r.get("specifier", ""), r.get("marker", ""))
            for r in package["metadata"]["requires-dist"]}


def _difference_message(declared: set, locked: set, what: str) -> str:
    lines = [f"uv.lock is out of date with pyproject.toml ({what}); run `make lock` and commit uv.lock."]
    lines += [f"  only in pyproject.toml: {k}" for k in sorted(declared - locked)]
    lines += [f"  only in uv.lock:        {k}" for k in sorted(locked - declared)]
    return "\n".join(lines)


def _read(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def test_lock_pins_every_declared_requirement():
    pyproject, lock = _read(ROOT / "pyproject.toml"), _read(ROOT / "uv.lock")
    declared = declared_requirements(pyproject)
    locked = locked_requirements(lock, pyproject["project"]["name"])
    assert declared == locked, _difference_message(declared, locked, "requirements")


def test_lock_applies_the_declared_constraints():
    pyproject, lock = _read(ROOT / "pyproject.toml"), _read(ROOT / "uv.lock")
    declared = {_key(r.name, r.extras, str(r.specifier), "")
                for r in map(Requirement, pyproject["tool"]["uv"].get("constraint-dependencies", []))}
    locked = {_key(r["name"], (), r.get("specifier", ""), "")
              for r in lock.get("manifest", {}).get("constraints", [])}
    assert declared == locked, _difference_message(declared, locked, "constraint-dependencies")


def test_every_locked_dependency_has_one_pinned_version_per_python():
    """Each package of the lock is an exact version from a registry (or the project itself)."""
    lock = _read(ROOT / "uv.lock")
    for package in lock["package"]:
        assert package.get("version"), f"{package['name']} has no pinned version in uv.lock"
        source = package["source"]
        assert "registry" in source or source.get("editable") == ".", (
            f"{package['name']} comes from {source}: the lock must hold registry releases only")


def test_a_dependency_added_without_relocking_is_named(tmp_path):
    """The check above really fails when pyproject.toml gains a requirement the lock lacks."""
    pyproject = _read(ROOT / "pyproject.toml")
    pyproject["project"]["dependencies"] = [*pyproject["project"]["dependencies"], "tqdm>=4"]
    declared = declared_requirements(pyproject)
    locked = locked_requirements(_read(ROOT / "uv.lock"), pyproject["project"]["name"])
    assert declared - locked == {("tqdm", (), ">=4", "")}
    assert "only in pyproject.toml: ('tqdm'" in _difference_message(declared, locked, "requirements")
