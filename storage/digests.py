"""sha256 of a file through fsspec, read in 1 MiB blocks (never the whole file in memory)."""

from __future__ import annotations

import hashlib

from storage.fs import open_fs


def file_sha256(url: str) -> str:
    """Hex sha256 of the file at `url`; FileNotFoundError if it is missing."""
    fs, path = open_fs(url)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
