"""Checks of user-given paths before a command writes anything.

Report commands (`dataset grid`, `generate`, `edit`) write one file: it must not land on a
dataset's own files, and its name must say the format written. Commands that fill a directory
(`synth-data`, `train`, `dataset export`, ...) refuse a --out that is an existing file or lies
inside one of the command's input datasets. Every output must be creatable: not under a
regular file, and (local paths) on a writable filesystem, probed without creating anything
that stays. Readers say so when handed a file instead of a dataset directory. Object-store
buckets must exist (storage.fs.check_bucket).
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from collections.abc import Sequence

from fsspec.implementations.local import LocalFileSystem

from mm2latent_core.errors import DatasetError
from storage.dataset_index import DATASET_FILE
from storage.fs import check_bucket, is_object_store, open_fs, storage_errors

# Names a dataset owns at its root: its index, shard files, derived data and hidden temp files.
_DATASET_OWNED = re.compile(r"^(dataset\.json|shard-\d+\..+|embeddings|\..+)$")


def _ancestors(fs, path: str) -> list[str]:
    """Directories above `path` inside its filesystem, nearest first (up to the bucket or /)."""
    out, parent = [], posixpath.dirname(path.rstrip("/"))
    while parent and parent not in out:
        out.append(parent)
        if is_object_store(fs) and "/" not in parent.strip("/"):
            break  # the bucket: nothing above it
        parent = posixpath.dirname(parent)
    return out


def _owning_dataset(fs, path: str) -> tuple[str, str] | None:
    """(dataset root, path relative to it) if `path` is one of a dataset's own files."""
    if isinstance(fs, LocalFileSystem):
        path = os.path.abspath(path)
    for root in _ancestors(fs, path):
        relative = posixpath.relpath(path, root)
        if _DATASET_OWNED.match(relative.split("/", 1)[0]) and fs.exists(posixpath.join(root, DATASET_FILE)):
            return root, relative
    return None


def _nearest_existing(fs, path: str) -> str | None:
    """`path` or its nearest ancestor that exists (None if none does)."""
    for candidate in [path, *_ancestors(fs, path)]:
        if fs.exists(candidate):
            return candidate
    return None


def _check_creatable(url: str, option: str) -> None:
    """Refuse an output path under a regular file, or (local) in a directory nobody can write.

    Local only: object stores have no directories, and their permissions show at the first
    write (storage.fs.as_user_error names them). The probe file is removed again at once.
    """
    fs, path = open_fs(url)
    if not isinstance(fs, LocalFileSystem):
        return
    path = os.path.abspath(path)
    existing = _nearest_existing(fs, path)
    if existing is None:
        return
    if existing != path and not os.path.isdir(existing):
        raise DatasetError(f"{option} {url} lies under {existing}, which is a regular file, not a "
                           "directory. Fix: choose a path outside it (or move the file).")
    folder = existing if os.path.isdir(existing) else os.path.dirname(existing)
    probe = os.path.join(folder, f".write-probe-{uuid.uuid4().hex}")
    try:
        with open(probe, "xb"):
            pass
        os.remove(probe)
    except OSError as e:
        raise DatasetError(f"{option} {url}: cannot write in {folder} ({e.strerror or e}; a "
                           "read-only filesystem or no write permission). Fix: choose a "
                           f"writable {option}, or grant write permission.") from e


def _inside(fs, path: str, root: str) -> bool:
    """True if `path` is `root` or lies under it (local paths compared absolute)."""
    if isinstance(fs, LocalFileSystem):
        path, root = os.path.realpath(path), os.path.realpath(root)
    path, root = path.rstrip("/"), root.rstrip("/")
    return path == root or path.startswith(root + "/")


def _check_not_inside_inputs(url: str, inputs: Sequence[str], option: str) -> None:
    """Refuse an output that is, or lies inside, one of the command's input datasets."""
    fs, path = open_fs(url)
    for source in inputs:
        source_fs, source_path = open_fs(source)
        if type(source_fs) is type(fs) and _inside(fs, path, source_path):
            raise DatasetError(f"{option} {url} lies inside the input dataset {source}: writing "
                               "there would mix files into the dataset. Fix: choose an "
                               f"{option} outside it, e.g. {option} sample.")


def check_output_file(url: str, suffix: str = ".png", what: str = "PNG", option: str = "--out") -> str:
    """Refuse an output file inside a dataset's own files, a directory, or a misleading name.

    Args:
        url: the file the command will write (local path or fsspec URL).
        suffix: the extension that matches the format written, e.g. '.png'.
        what: the format's name for the message.
        option: the option the URL came from, named in messages.

    Raises:
        DatasetError: naming the path, the problem and the fix.
    """
    check_bucket(url)
    fs, path = open_fs(url)
    with storage_errors(url):
        owner = _owning_dataset(fs, path)
        if owner is not None:
            raise DatasetError(f"{option} {url} is {owner[1]!r} of the dataset at {owner[0]}: "
                               "writing it would destroy data. Fix: write the file outside the "
                               f"dataset, e.g. {option} grid{suffix}.")
        if fs.isdir(path):
            raise DatasetError(f"{option} {url} is a directory. Fix: give a file name ending in {suffix}.")
        if not path.lower().endswith(suffix):
            raise DatasetError(f"{option} {url}: this command writes {what}, but the name does not "
                               f"end in {suffix}. Fix: name the file *{suffix}.")
        _check_creatable(url, option)
    return url


def check_output_dir(url: str, option: str = "--out", inputs: Sequence[str] = ()) -> str:
    """Refuse a directory output (dataset root, run root) that cannot be one.

    Refused: an existing file, a path under a regular file, a local directory that cannot be
    written (read-only filesystem, permissions), a path inside one of `inputs`.

    Args:
        url: the directory the command will write into.
        option: the option the URL came from, named in messages.
        inputs: the command's input datasets; the output may not lie inside one.
    """
    check_bucket(url)  # first: names an unreachable endpoint or a missing bucket at once
    fs, path = open_fs(url)
    with storage_errors(url):
        is_file = fs.isfile(path)
        if is_file:
            raise DatasetError(f"{option} {url} is an existing file, but this command writes a "
                               "directory there. Fix: choose a directory path (or move the file).")
        _check_not_inside_inputs(url, inputs, option)
        _check_creatable(url, option)
    return url


def check_dataset_dir(url: str) -> str:
    """Refuse a file where a dataset root (the directory holding dataset.json) is expected."""
    check_bucket(url)
    fs, path = open_fs(url)
    with storage_errors(url):
        is_file = fs.isfile(path)
    if is_file:
        raise DatasetError(f"{url} is a file, not a dataset. Fix: pass the directory that holds "
                           f"{DATASET_FILE} (e.g. {posixpath.dirname(url.rstrip('/')) or '.'}).")
    return url
