"""An advisory lock on a local file, for read-modify-write of small shared records.

Used for the weights cache's recorded-digest JSON: two processes recording digests at once
would otherwise each rewrite the file from what they read and lose the other's entry. POSIX
`flock` on a side file `<name>.lock`; where `fcntl` is missing (Windows) the block runs
unlocked, and the atomic rewrite still keeps the JSON whole.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from fsspec.implementations.local import LocalFileSystem

from storage.fs import open_fs

try:  # POSIX advisory lock; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def locked(url: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on `<url>.lock` (created with its directory) for the block.

    Args:
        url: the local file the lock guards.

    Raises:
        ValueError: `url` is not on the local filesystem (no cross-host lock exists there).
    """
    fs, path = open_fs(os.fspath(url))
    if not isinstance(fs, LocalFileSystem):
        raise ValueError(f"{url}: file locks exist only on the local filesystem")
    fs.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
        yield
