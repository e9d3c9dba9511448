"""Create a file only if its name is free: the primitive that lets concurrent writers claim names.

Local disk: the content goes to a hidden temp file first (storage.atomic.AtomicFile), which is
then hard-linked to the final name (`AtomicFile.commit_new`); `link` fails if the name exists,
so exactly one writer wins and readers never see a partial file, across processes. memory:// lives in one process, so a lock around check-and-write
is enough there. Other filesystems (object stores) get a check followed by a write: two writers
racing within one round trip can both succeed, the last one winning (documented in the README).
"""

from __future__ import annotations

import posixpath
import threading

from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from storage.atomic import AtomicFile, atomic_write_bytes
from storage.fs import open_fs

# memory:// is one dict per process, shared by all threads: one lock makes check-and-write atomic.
_MEMORY_LOCK = threading.Lock()


def create_exclusive(url: str, data: bytes) -> bool:
    """Write `data` to `url` unless a file is already there; True if this call created it.

    Args:
        url: destination file URL; its directory is created if missing.
        data: the complete file content.
    """
    fs, path = open_fs(url)
    if isinstance(fs, LocalFileSystem):
        return _create_local(url, data)
    if isinstance(fs, MemoryFileSystem):
        with _MEMORY_LOCK:
            if fs.exists(path):
                return False
            fs.pipe_file(path, data)
            return True
    fs.invalidate_cache(posixpath.dirname(path))
    if fs.exists(path):
        return False
    atomic_write_bytes(url, data)
    return True


def _create_local(url: str, data: bytes) -> bool:
    """Hard-link a complete temp file to the final name; False if that name already exists."""
    writer = AtomicFile(url)
    try:
        writer.open().write(data)
    except BaseException:
        writer.discard()
        raise
    return writer.commit_new()
