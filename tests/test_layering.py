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


_FIRST_PARTY = ("mm2latent", "mm2latent_core", "storage", "tasks", "flows", "tests")


def _first_party_imports(path: Path) -> set[str]:
    """First-party modules `path` imports (any depth in the file, TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] in _FIRST_PARTY}


def test_storage_uses_only_the_bottom_layer():
    # errors, fixed widths and modality types sit in mm2latent_core, below both storage and the
    # library; storage importing the library would close a package circle.
    for path in sorted((ROOT / "storage").glob("*.py")):
        bad = [m for m in _first_party_imports(path)
               if m.split(".")[0] not in ("storage", "mm2latent_core")]
        assert not bad, f"{path.name} imports {bad}; storage may use only mm2latent_core"


def test_the_bottom_layer_imports_no_upper_layer():
    import mm2latent_core.errors  # the library re-exports its base error from the bottom layer
    assert mm2latent.Mm2LatentError is mm2latent_core.errors.Mm2LatentError
    for path in sorted((ROOT / "mm2latent_core").rglob("*.py")):
        bad = [m for m in _first_party_imports(path) if m.split(".")[0] != "mm2latent_core"]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}; mm2latent_core is the bottom layer"


def test_importing_storage_loads_no_library_module():
    # The static rule above, checked at run time: every storage module together pulls in no
    # mm2latent module (mm2latent_core is a separate top-level package).
    names = sorted(f"storage.{p.stem}" for p in (ROOT / "storage").glob("*.py") if p.stem != "__init__")
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mm2latent'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


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
    ("flows/app/routes.py", "read_text"): "the editor's HTML page is package data read with "
        "importlib.resources (works from a wheel or zip), not a dataset, checkpoint or image path",
}
# The temporary Prefect server's stdout/stderr go to a local scratch log (Popen needs an OS file
# descriptor, so no fsspec URL can stand in); it is read for the crash cause and deleted.
_ALLOWED_OPENS.update({("flows/prefect_runtime.py", call): "the temporary Prefect server's "
                       "local scratch log, not a dataset, checkpoint or image path"
                       for call in ("tempfile", "tempfile.NamedTemporaryFile", "read_text",
                                    "os.unlink")})


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


# --- the import graph: no circles, every arrow points down the layers --------------------------
# Built from the source with `ast`, every import at any depth (the CLI imports lazily inside its
# commands) and those under `if TYPE_CHECKING:` too: a type-only circle is still two modules
# that each need the other's names, and it turns into a run-time circle at the first annotation
# evaluated at run time. tests/ is left out (it sits on top; see test_layering_tests_package.py).

_LAYERS = ("mm2latent_core", "storage", "mm2latent", "tasks", "flows", "benchmarks")
# Order inside the library: a module under the first prefix never imports one under the second.
_LIBRARY_ORDER = (
    ("mm2latent.modalities", "mm2latent.synth"),  # the registry sits below the synth pipeline
    ("mm2latent.models", "mm2latent.presets"),  # presets are built from the models' configs
    ("mm2latent.editing", "mm2latent.inference"),  # the generator's edit delegates to editing
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules(root: Path, tops: tuple[str, ...]) -> dict[str, Path]:
    return {_module_name(p, root): p for top in tops for p in sorted((root / top).rglob("*.py"))}


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement may bind: `from a import b` gives a.b, then a."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph(root: Path, tops: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the project modules importing it runs (`from a import b` of a name: a)."""
    modules = _project_modules(root, tops)
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = _imported_names(node, name, path.name == "__init__.py")
            if isinstance(node, ast.Import):
                found.update(n for n in names if n in modules)
            else:  # each alias: the submodule if there is one, else the module it comes from
                *submodules, base = names
                found.update(s if s in modules else base for s in submodules
                             if s in modules or base in modules)
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first (unless they are the
        # importer's own packages, already being imported): a re-export in a package's
        # __init__ closes a circle as surely as a direct import.
        parents = {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}
        graph[name] = (found | {p for p in parents if p in modules
                                and not name.startswith(p + ".")}) - {name}
    return graph


def import_knots(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that reach each other through imports (strongly connected, size > 1)."""
    order, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's algorithm
        order[v] = low[v] = len(order)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:  # v is the first-visited module of its group: pop the group
            group = set()
            while v not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return sorted(groups)


def circle_in(graph: dict[str, set[str]], knot: list[str]) -> list[str]:
    """A shortest import path from the knot's first module back to itself, a -> ... -> a."""
    group, start = set(knot), knot[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle through {start} in {sorted(group)}")


def arrows_up(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import of a higher layer, or against the order inside the library."""
    rank = {top: i for i, top in enumerate(_LAYERS)}
    under = lambda module, prefix: module == prefix or module.startswith(prefix + ".")  # noqa: E731
    bad = []
    for a in sorted(graph):
        for b in sorted(graph[a]):
            if rank[b.split(".")[0]] > rank[a.split(".")[0]]:
                bad.append(f"{a} -> {b} (layer {b.split('.')[0]} sits above {a.split('.')[0]})")
            bad += [f"{a} -> {b} ({low} sits below {high})" for low, high in _LIBRARY_ORDER
                    if under(a, low) and under(b, high)]
    return bad


def test_no_import_circle_outside_tests():
    graph = import_graph(ROOT, _LAYERS)
    knots = import_knots(graph)
    # One circle of each knot, then every module caught in it with its imports inside the knot.
    report = [" -> ".join(circle_in(graph, knot)) + "".join(
        f"\n    {m} imports {', '.join(sorted(graph[m] & set(knot)))}" for m in knot)
        for knot in knots]
    assert not knots, ("import circles (move what both sides need to a module below them):\n"
                       + "\n".join(report))


def test_every_import_points_down_the_layers():
    bad = arrows_up(import_graph(ROOT, _LAYERS))
    assert not bad, ("imports against the layer order (core -> storage -> library -> tasks -> "
                     "flows -> benchmarks):\n" + "\n".join(bad))


def test_the_graph_sees_lazy_relative_and_type_only_imports_and_reports_a_circle(tmp_path):
    # Guards the checks above: the import forms the project uses, and one circle through three
    # modules reported as a path, on a throw-away tree shaped like the project.
    files = {
        "mm2latent_core/__init__.py": "",
        "mm2latent_core/errors.py": "",
        "mm2latent/__init__.py": "from mm2latent_core.errors import *\n",
        "mm2latent/models/__init__.py": "",
        "mm2latent/models/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                 "    from mm2latent.models.b import X\n",
        "mm2latent/models/b.py": "def f():\n    from . import c\n",
        "mm2latent/models/c.py": "import mm2latent.models.a\nfrom mm2latent import presets\n",
        "mm2latent/presets.py": "from mm2latent.models import a\n",
        "flows/__init__.py": "",
        "flows/cli.py": "from mm2latent_core.errors import E\n",
        "storage/__init__.py": "",
        "storage/fs.py": "def f():\n    from flows.cli import main\n",
        "flows/app/__init__.py": "",
        "flows/app/server.py": "from flows.app import gate\nfrom storage.fs import f\n",
        "flows/app/gate.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(tmp_path, ("mm2latent_core", "storage", "mm2latent", "flows"))
    assert graph["mm2latent.models.b"] == {"mm2latent.models.c"}
    assert graph["flows.cli"] == {"mm2latent_core", "mm2latent_core.errors"}
    assert graph["flows.app.server"] == {"flows.app.gate", "storage", "storage.fs"}
    assert graph["mm2latent.presets"] == {"mm2latent.models", "mm2latent.models.a"}
    knot = ["mm2latent.models.a", "mm2latent.models.b", "mm2latent.models.c", "mm2latent.presets"]
    assert import_knots(graph) == [knot]
    assert circle_in(graph, knot) == ["mm2latent.models.a", "mm2latent.models.b",
                                      "mm2latent.models.c", "mm2latent.models.a"]
    assert arrows_up(graph) == [
        "mm2latent.models.c -> mm2latent.presets (mm2latent.models sits below mm2latent.presets)",
        "storage.fs -> flows (layer flows sits above storage)",
        "storage.fs -> flows.cli (layer flows sits above storage)"]
