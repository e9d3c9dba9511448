"""sha256 of a file through fsspec, read in blocks (never the whole file in memory)."""

from __future__ import annotations

import hashlib
import os

from storage.fs import open_fs


def file_sha256(url: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of the file at `url` (path or fsspec URL); FileNotFoundError if it is missing."""
    fs, path = open_fs(os.fspath(url))
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()
