"""Architecture rules that keep the library usable without the orchestration layer."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import mm2latent
from mm2latent import model_loading, weights


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
