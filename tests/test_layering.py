"""Architecture rules that keep the library usable without the orchestration layer."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import mm2latent
from mm2latent import model_loading, weights

ROOT = Path(__file__).resolve().parents[1]


def _imported_tops(extra: list[str], tops: tuple[str, ...]) -> str:
    """Sorted modules under `tops` that importing every library module (+ `extra`) pulls in."""
    modules = [m.name for m in pkgutil.walk_packages(mm2latent.__path__, "mm2latent.")]
    code = ("import importlib, sys\n"
            f"for name in {modules!r} + {extra!r}:\n"
            "    importlib.import_module(name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {tops!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_library_and_storage_never_import_prefect_or_typer():
    assert _imported_tops(["storage.readers", "storage.checkpoints"], ("prefect", "typer")) == "[]"


def test_library_never_imports_a_web_framework():
    assert _imported_tops([], ("fastapi", "uvicorn", "gradio")) == "[]"


def test_every_registered_format_has_a_loader():
    formats = {spec.format for spec in weights.list_specs()}
    assert formats <= set(model_loading.LOADERS), formats - set(model_loading.LOADERS)


def test_listing_weights_does_not_import_model_code():
    code = ("import sys, mm2latent.weights\n"
            "print(sorted(m for m in ('open_clip', 'mm2latent.models') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _first_party_imports(path: Path) -> set[str]:
    """Modules of mm2latent/storage/tests that `path` imports (any depth in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("mm2latent", "storage", "tests")}


def test_storage_uses_only_the_shared_layer_of_the_library():
    # errors, fixed widths and modality codecs sit below storage; nothing else of mm2latent may.
    allowed = ("mm2latent.errors", "mm2latent.dims", "mm2latent.modalities")
    for path in sorted((ROOT / "storage").glob("*.py")):
        bad = [m for m in _first_party_imports(path)
               if m.startswith("mm2latent") and not m.startswith(allowed)]
        assert not bad, f"{path.name} imports {bad}; storage may use only {allowed}"


def test_modalities_never_import_storage_nor_network_code_up_front():
    for path in sorted((ROOT / "mm2latent" / "modalities").glob("*.py")):
        assert not [m for m in _first_party_imports(path) if m.startswith("storage")], path.name
    code = ("import sys, storage.readers, mm2latent.modalities.registry\n"
            "print(sorted(m for m in ('open_clip', 'mm2latent.models.clip_towers', "
            "'mm2latent.model_loading') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
