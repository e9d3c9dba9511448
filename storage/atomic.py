"""Atomic writes: a file appears under its final name complete or not at all.

A writer fills `.<name>.tmp-<uuid32>` in the destination directory, then moves it into place
(local: fsync + os.replace, which is atomic on POSIX; other fsspec filesystems: `fs.mv`, a
server-side copy + delete on object stores, where the final key is only created once the copy
completes). A crash leaves only the dot-prefixed temp file: readers never look at names that
start with a dot, and `remove_temp_files` (run by the next writer) deletes it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import uuid
from typing import IO

from fsspec.implementations.local import LocalFileSystem

from storage.fs import open_fs

logger = logging.getLogger(__name__)

_TEMP_RE = re.compile(r"^\..+\.tmp-[0-9a-f]{32}$")


def temp_name(name: str) -> str:
    """A fresh temporary file name for final name `name` (same directory, hidden, unique)."""
    return f".{name}.tmp-{uuid.uuid4().hex}"


def is_temp_name(name: str) -> bool:
    """True if `name` (a base name) is a temp file left by an atomic write."""
    return bool(_TEMP_RE.match(name))


class AtomicFile:
    """Context manager yielding a binary file that is committed to `url` only on success.

    On an exception inside the block the temp file is removed and nothing appears at `url`;
    an existing file at `url` is replaced only at commit.

    Args:
        url: final destination; its directory is created if missing.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._fs, self._path = open_fs(url)
        parent, name = posixpath.split(self._path)
        self._tmp_path = posixpath.join(parent, temp_name(name))
        self._parent = parent
        self._file: IO[bytes] | None = None

    @property
    def _is_local(self) -> bool:
        return isinstance(self._fs, LocalFileSystem)

    def __enter__(self) -> IO[bytes]:
        return self.open()

    def open(self) -> IO[bytes]:
        """Create and open the temp file; prefer the `with` form, which commits or discards."""
        if self._file is not None:
            raise ValueError(f"{self.url}: AtomicFile is already open")
        self._fs.makedirs(self._parent, exist_ok=True)
        if self._is_local:
            self._file = open(self._tmp_path, "wb")  # noqa: SIM115 - closed in __exit__
        else:
            self._file = self._fs.open(self._tmp_path, "wb")
        return self._file

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def commit(self) -> None:
        """Flush, close and move the temp file onto the final name."""
        if self._file is None:
            raise ValueError(f"{self.url}: commit() before open()")
        try:
            if self._is_local:
                self._file.flush()
                os.fsync(self._file.fileno())  # data on disk before the rename makes it visible
                self._file.close()
                os.replace(self._tmp_path, self._path)
                _fsync_dir(self._parent)
            else:
                self._file.close()  # remote writers upload on close
                self._fs.mv(self._tmp_path, self._path)
        except BaseException:
            self.discard()
            raise
        logger.debug("committed %s", self.url)

    def discard(self) -> None:
        """Close and delete the temp file; the final name is left untouched."""
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except Exception:  # a failing upload on close must not mask the original error
                logger.debug("closing %s failed while discarding", self._tmp_path, exc_info=True)
        try:
            if self._fs.exists(self._tmp_path):
                self._fs.rm(self._tmp_path)
        except OSError:
            logger.warning("could not remove temp file %s; the next run removes it", self._tmp_path)


def _fsync_dir(path: str) -> None:
    """Persist a rename by syncing its directory (POSIX only; a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(url: str, data: bytes) -> None:
    """Write `data` to `url` atomically (temp file in the same directory, then rename).

    Args:
        url: destination file URL.
        data: the complete file content.
    """
    with AtomicFile(url) as f:
        f.write(data)


def remove_temp_files(dir_url: str) -> list[str]:
    """Delete temp files of interrupted atomic writes directly under `dir_url`; return their paths.

    Only call this when no other writer is active in the directory: a concurrent writer's
    in-flight temp file looks the same as a crashed one.

    Args:
        dir_url: the directory to clean (not recursive); missing directories are ignored.
    """
    fs, root = open_fs(dir_url)
    fs.invalidate_cache(root)  # other processes may have written since the last listing
    if not fs.exists(root):
        return []
    removed = []
    for path in fs.ls(root, detail=False):
        if is_temp_name(posixpath.basename(path)):
            fs.rm(path)
            removed.append(path)
    if removed:
        logger.info("removed %d stale temp file(s) under %s", len(removed), dir_url)
    return removed
