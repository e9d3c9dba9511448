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


# --- storage owns every open -------------------------------------------------------------------
# The library, the tasks and the flows reach files and URLs only through storage/ (fsspec), so
# every path works as a local path, memory:// or s3:// and every write is atomic in one way.

_SCANNED = ("mm2latent", "tasks", "flows")
# Calls (by dotted name as written) that open, create, move or delete files or URLs.
_OPENING_CALLS = {
    "open", "io.open", "os.open", "os.fdopen", "os.replace", "os.rename", "os.renames",
    "os.link", "os.symlink", "os.remove", "os.unlink", "os.mkdir", "os.makedirs", "os.rmdir",
    "url_to_fs", "open_fs", "urlopen", "urllib.request.urlopen", "Path.open",
}
_OPENING_MODULES = ("fsspec", "shutil", "tempfile", "requests", "http.client", "urllib.request")
# Path (or file-system object) methods that read or write a file by itself.
_OPENING_METHODS = {"read_bytes", "write_bytes", "read_text", "write_text", "mkdir", "touch",
                    "unlink", "rmdir", "symlink_to", "hardlink_to", "cat_file", "pipe_file",
                    "open"}
# Deserialisers / serialisers: fine on an in-memory buffer, an open of their own on a path.
# Value: index of the positional argument that names the file.
_CODEC_CALLS = {"torch.load": 0, "torch.save": 1, "torch.jit.load": 0, "torch.jit.save": 1,
                "np.load": 0, "np.save": 0, "numpy.load": 0, "numpy.save": 0, "Image.open": 0,
                "PIL.Image.open": 0, "tarfile.open": 0, "pq.read_table": 0,
                "pq.write_table": 1, "pq.ParquetFile": 0, "zipfile.ZipFile": 0}
# (file, call) -> why it may open by itself. Keep this short; every entry must still be needed.
_ALLOWED_OPENS = {
    ("flows/app/server.py", "read_text"): "the editor's HTML page is package data read with "
        "importlib.resources (works from a wheel or zip), not a dataset, checkpoint or image path",
}


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a Name/Attribute chain; '' for anything else (calls, subscripts)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def _storage_aliases(tree: ast.AST) -> set[str]:
    """Names a module binds to storage modules (`import storage.x as s`, `from storage import x`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.asname or a.name for a in node.names if a.name.startswith("storage"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "storage":
            names.update(a.asname or a.name for a in node.names)
    return names


def _buffer_names(tree: ast.AST) -> set[str]:
    """Names assigned from `io.BytesIO(...)` / `BytesIO(...)` anywhere in the module."""
    return {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
            and _is_buffer(node.value, set()) for t in node.targets if isinstance(t, ast.Name)}


def _is_buffer(node: ast.AST, buffers: set[str]) -> bool:
    if isinstance(node, ast.Call):
        return _dotted(node.func) in ("io.BytesIO", "BytesIO")
    return isinstance(node, ast.Name) and node.id in buffers


def _codec_opens_a_path(call: ast.Call, name: str, buffers: set[str]) -> bool:
    """True if a (de)serialiser is given something other than an in-memory buffer."""
    index = _CODEC_CALLS[name]
    if len(call.args) > index:
        return not _is_buffer(call.args[index], buffers)
    fileobj = [k.value for k in call.keywords if k.arg in ("fileobj", "f", "file", "fp")]
    return not (fileobj and _is_buffer(fileobj[0], buffers))


def _opening_call(call: ast.Call, storage: set[str], buffers: set[str]) -> str | None:
    """The name of what `call` opens by itself, or None."""
    name = _dotted(call.func)
    if name in _CODEC_CALLS:
        return name if _codec_opens_a_path(call, name, buffers) else None
    if name in _OPENING_CALLS or name.split(".")[-1] in ("url_to_fs", "open_fs"):
        return name
    if any(name == m or name.startswith(m + ".") for m in _OPENING_MODULES):
        return name
    if isinstance(call.func, ast.Attribute) and call.func.attr in _OPENING_METHODS:
        receiver = _dotted(call.func.value)
        if receiver.split(".")[0] not in storage:  # storage's own functions are the way in
            return call.func.attr
    return None


def _imports_opening_module(node: ast.AST) -> str | None:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        names = [node.module or ""]
    else:
        return None
    return next((n for n in names if n.split(".")[0] == "fsspec"
                 or n in ("shutil", "tempfile", "requests")), None)


def _direct_opens() -> tuple[list[str], set[tuple[str, str]]]:
    """('file:line: what' for every unallowed direct open, allow-list entries that were used)."""
    found, used = [], set()
    for top in _SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), filename=rel)
            storage, buffers = _storage_aliases(tree), _buffer_names(tree)
            for node in ast.walk(tree):
                what = (_opening_call(node, storage, buffers) if isinstance(node, ast.Call)
                        else _imports_opening_module(node))
                if what is None:
                    continue
                if (rel, what) in _ALLOWED_OPENS:
                    used.add((rel, what))
                else:
                    found.append(f"{rel}:{node.lineno}: {what}")
    return sorted(found, key=lambda s: (s.split(":")[0], int(s.split(":")[1]))), used


def test_library_tasks_and_flows_open_no_paths_themselves():
    found, used = _direct_opens()
    assert not found, ("these open files or URLs themselves; route them through storage/ "
                       "(storage.fs.read_file/open_read, storage.atomic, storage.torch_files):\n"
                       + "\n".join(found))
    assert used == set(_ALLOWED_OPENS), f"stale allow-list entries: {set(_ALLOWED_OPENS) - used}"


def test_the_open_scanner_catches_each_kind_of_direct_open():
    code = ("import fsspec, io, os, torch, numpy as np\nfrom pathlib import Path\n"
            "buf = io.BytesIO()\n"
            "open('a')\nfsspec.open('a')\nos.replace('a', 'b')\nPath('a').write_bytes(b'')\n"
            "torch.load('a.pt')\ntorch.save({}, 'a.pt')\nnp.load(path)\n"
            "torch.load(io.BytesIO(data))\ntorch.save({}, buf)\nnp.save(buf, x)\n")
    tree = ast.parse(code)
    hits = [(n.lineno, _opening_call(n, set(), _buffer_names(tree))) for n in ast.walk(tree)
            if isinstance(n, ast.Call)]
    flagged = sorted((line, what) for line, what in hits if what)
    assert flagged == [(4, "open"), (5, "fsspec.open"), (6, "os.replace"), (7, "write_bytes"),
                       (8, "torch.load"), (9, "torch.save"), (10, "np.load")]
