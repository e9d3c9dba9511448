"""Is a complete shard still what its stats file says? Size checks (cheap) and sha256 (full).

A shard counts as complete once its stats file exists (storage/dataset_index.py). Later damage
(a truncated copy, a flipped bit, a deleted file) leaves the marker in place, so readers and
reruns would trust bad bytes. `shard_damage` compares the tar and parquet against the sizes
and, with `rehash`, the sha256 digests recorded in the stats file.
"""

from __future__ import annotations

from storage.dataset_index import read_shard_stats
from storage.digests import file_sha256
from storage.fs import join, open_fs

PARTS = ("tar", "parquet")


def shard_damage(dataset_url: str, index: int, rehash: bool = False,
                 parts: tuple[str, ...] = PARTS) -> str | None:
    """Why complete shard `index` does not match its stats file, or None if it does.

    Args:
        dataset_url: the dataset root.
        index: a shard whose stats file exists (an incomplete shard is not damaged: None).
        rehash: also recompute the sha256 digests (reads every byte); False = sizes only.
        parts: which files to check, of "tar" and "parquet".
    """
    stats = read_shard_stats(dataset_url, index)
    if stats is None:
        return None
    for part in parts:
        recorded = getattr(stats, part)  # FileRecord: name, bytes, sha256
        name = recorded.name
        url = join(dataset_url, name)
        fs, path = open_fs(url)
        try:
            size = fs.size(path)
        except FileNotFoundError:
            return f"{name} is missing"
        if size != recorded.bytes:
            return f"{name} has {size} bytes, its stats file records {recorded.bytes}"
        if rehash and file_sha256(url) != recorded.sha256:
            return f"{name} has another sha256 than its stats file records"
    return None


def damaged_shards(dataset_url: str, shards: list[int], rehash: bool = False,
                   parts: tuple[str, ...] = PARTS) -> dict[int, str]:
    """{shard: reason} for each of `shards` whose files differ from its stats file."""
    found = {}
    for index in shards:
        reason = shard_damage(dataset_url, index, rehash, parts)
        if reason is not None:
            found[index] = reason
    return found
