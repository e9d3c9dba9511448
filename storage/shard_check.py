"""The one check every reader of a dataset runs: dataset.json, stats files, sizes and sha256.

A shard counts as complete once its stats file exists (storage/dataset_index.py). Later damage
(a truncated copy, a flipped bit, a deleted or garbled file, an edited dataset.json) leaves the
marker in place, so readers would trust bad bytes. Two steps, both refusing with a
DatasetError that names the file and the fix:

- `readable_shards` (every reader, before it reads anything): dataset.json parses and agrees
  with itself and with the fingerprint each stats file recorded; every stats file parses; no
  tar or parquet lacks its stats file (unless a synth-data run holds the dataset's lease and is
  writing it); every complete shard's tar and parquet have the sizes their stats file records.
  Cost: dataset.json, the stats files (one batched read) and one listing of the root; no shard
  bytes.
- `check_shard_files` (before reading a shard's tar or parquet): the sha256 of exactly the
  files the reader is about to read. Cost: one extra read of those files, nothing else.
- `checked_shard` (a reader of one shard, e.g. a `DATASET#INDEX` reference): both steps limited
  to that shard: dataset.json, its stats file, its size and sha256. Cost: no listing, one hash.

synth-data's own rerun uses `damaged_shards` instead: it rewrites what is damaged rather than
refusing it (complete_shards skips a garbled stats file there, so the shard is rebuilt).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from pydantic import ValidationError

from mm2latent_core.errors import DatasetError
from storage.dataset_index import (DATASET_FILE, DatasetIndex, ShardStats, read_shard_stats,
                                   shard_name)
from storage.digests import file_sha256
from storage.fs import join, open_fs
from storage.lease import read_lease

logger = logging.getLogger(__name__)

PARTS = ("tar", "parquet")
# The fix of every damaged-shard message: synth-data redoes what no longer matches its stats.
REPAIR_FIX = ("Fix: re-run the command that made the dataset with the same options (e.g. "
              "`mm2latent synth-data ... --verify`); it rewrites damaged or unmarked shards "
              "byte-identical and keeps the intact ones.")


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
    return _file_damage(dataset_url, stats, parts, rehash)


def _file_damage(dataset_url: str, stats: ShardStats, parts: Sequence[str], rehash: bool,
                 sizes: dict[str, int] | None = None) -> str | None:
    """Why `parts` of a shard differ from `stats` (sizes, or from `sizes` if listed), or None."""
    for part in parts:
        recorded = getattr(stats, part)  # FileRecord: name, bytes, sha256
        name = recorded.name
        url = join(dataset_url, name)
        if sizes is not None:
            size = sizes.get(name)
        else:
            fs, path = open_fs(url)
            try:
                size = fs.size(path)
            except FileNotFoundError:
                size = None
        if size is None:
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


def _damage_error(dataset_url: str, damaged: dict[int, str]) -> DatasetError:
    lines = "; ".join(f"shard {s}: {why}" for s, why in sorted(damaged.items()))
    return DatasetError(f"{dataset_url}: damaged dataset ({lines}). {REPAIR_FIX}")


def checked_index(dataset_url: str) -> DatasetIndex:
    """dataset.json, refused when missing, garbled, or planning other shards than it counts."""
    index = DatasetIndex.read(dataset_url)  # DatasetError naming the file and the fix
    if index.samples_per_shard < 1 or index.shards != index.planned_shards():
        raise DatasetError(
            f"{join(dataset_url, DATASET_FILE)}: edited or damaged: it lists {len(index.shards)} "
            f"shard(s) but num_samples {index.num_samples} and samples_per_shard "
            f"{index.samples_per_shard} call for {len(index.planned_shards())}. Fix: delete it and "
            "re-run the synth-data command that made the dataset: it writes dataset.json again "
            "and keeps the shards that match it.")
    return index


def _writer_active(dataset_url: str) -> bool:
    """True while a live synth-data run holds the dataset's lease (shards may be mid-commit)."""
    lease = read_lease(dataset_url)
    return lease is not None and not lease.is_stale(time.time())


def _listing(dataset_url: str) -> dict[str, int]:
    """{name: size} of the files directly under the dataset root (one listing call)."""
    fs, root = open_fs(dataset_url)
    fs.invalidate_cache(root)  # a writer elsewhere may have committed shards since
    entries = fs.ls(root, detail=True)
    return {e["name"].rstrip("/").rsplit("/", 1)[-1]: e.get("size") for e in entries
            if e.get("type") != "directory"}


def _parse_stats(dataset_url: str, name: str, data: bytes | Exception) -> ShardStats | None:
    """The stats in `data` (None if the file is gone); DatasetError naming a garbled file."""
    if isinstance(data, FileNotFoundError):
        return None  # removed since the listing (a rerun redoing the shard): not complete
    try:
        if isinstance(data, Exception):
            raise data
        return ShardStats.model_validate_json(data)
    except (ValidationError, ValueError, OSError) as e:
        raise DatasetError(
            f"{join(dataset_url, name)}: unreadable stats file ({str(e).splitlines()[0]}), so "
            f"its shard cannot be checked. {REPAIR_FIX}") from e


def _read_all_stats(dataset_url: str, names: list[str]) -> dict[int, ShardStats]:
    """{shard: stats} of the listed stats files; DatasetError naming a garbled one."""
    fs, root = open_fs(dataset_url)
    paths = [join(root, n) for n in names]
    fetched = fs.cat(paths, on_error="return") if paths else {}
    contents = {p.rstrip("/").rsplit("/", 1)[-1]: v for p, v in fetched.items()}
    found = {}
    for name in names:
        stats = _parse_stats(dataset_url, name, contents.get(name, FileNotFoundError(name)))
        if stats is not None:
            found[int(name[len("shard-"):].split(".", 1)[0])] = stats
    return found


def _check_describes(dataset_url: str, index: DatasetIndex, shard: int, stats: ShardStats) -> None:
    """DatasetError unless dataset.json plans `shard` and has the fingerprint it was written under."""
    if shard >= len(index.shards) or stats.index_sha256 not in (None, index.fingerprint_sha256()):
        raise DatasetError(
            f"{join(dataset_url, DATASET_FILE)} does not describe "
            f"{shard_name(shard, 'stats.json')}: dataset.json was edited or replaced after the "
            "shard was written. Fix: restore it, or delete it and re-run the synth-data "
            "command that made the dataset (it writes dataset.json again and keeps the "
            "shards that match it).")


def checked_shard(dataset_url: str, index: DatasetIndex, shard: int,
                  parts: tuple[str, ...] = PARTS) -> bool:
    """For a read of one shard (a `DATASET#INDEX` reference): False if it is not complete, else
    True once its stats file, dataset.json's fingerprint, and the sizes and sha256 of `parts`
    check out (DatasetError otherwise). Cost: one stats file and a hash of `parts`, no listing.

    Args:
        dataset_url: the dataset root.
        index: its dataset.json, from checked_index.
        shard: the shard about to be read.
        parts: the files about to be read, of "tar" and "parquet".
    """
    name = shard_name(shard, "stats.json")
    fs, path = open_fs(join(dataset_url, name))
    try:
        data: bytes | Exception = fs.cat_file(path)
    except FileNotFoundError as e:
        data = e
    stats = _parse_stats(dataset_url, name, data)
    if stats is None:
        return False
    _check_describes(dataset_url, index, shard, stats)
    why = _file_damage(dataset_url, stats, parts, rehash=True)
    if why is not None:
        raise _damage_error(dataset_url, {shard: why})
    return True


def readable_shards(dataset_url: str, shards: Sequence[int] | None = None) -> list[int]:
    """The complete shards a reader may read (`shards`, or all), after the cheap checks.

    Refuses (DatasetError naming the file and the fix): a missing, garbled or edited
    dataset.json; a garbled stats file; a tar or parquet without its stats file (unless a
    synth-data run holding the dataset's lease is writing it); a complete shard whose tar or
    parquet is missing or has another size than its stats file records; a requested shard
    that is not complete. Reads no shard bytes (see the module docstring for the cost).

    Args:
        dataset_url: the dataset root.
        shards: the shards the reader will read (a run's snapshot); None = every complete one.
    """
    index = checked_index(dataset_url)
    sizes = _listing(dataset_url)
    stats_names = sorted(n for n in sizes if n.startswith("shard-") and n.endswith(".stats.json"))
    stats = _read_all_stats(dataset_url, stats_names)
    unmarked = sorted(n for n in sizes if n.startswith("shard-") and n.endswith((".tar", ".parquet"))
                      and int(n[len("shard-"):].split(".", 1)[0]) not in stats)
    if unmarked and not _writer_active(dataset_url):
        raise DatasetError(
            f"{join(dataset_url, unmarked[0])}: no stats file beside it (deleted, or the run "
            f"writing the shard was interrupted), so it cannot be checked. {REPAIR_FIX}")
    for shard, record in sorted(stats.items()):
        _check_describes(dataset_url, index, shard, record)
    wanted = sorted(stats) if shards is None else sorted(shards)
    absent = [s for s in wanted if s not in stats]
    if absent:
        raise DatasetError(f"{dataset_url}: shard {absent[0]} is no longer complete (its stats "
                           f"file is gone). {REPAIR_FIX}")
    damaged = {s: why for s in wanted
               if (why := _file_damage(dataset_url, stats[s], PARTS, False, sizes)) is not None}
    if damaged:
        raise _damage_error(dataset_url, damaged)
    return wanted


def check_shard_files(dataset_url: str, shards: Sequence[int],
                      parts: tuple[str, ...] = PARTS) -> None:
    """Recompute the sha256 of `parts` of each complete shard in `shards`; DatasetError naming
    every file that differs from its stats file. Call it on the files about to be read."""
    damaged = damaged_shards(dataset_url, list(shards), rehash=True, parts=parts)
    if damaged:
        raise _damage_error(dataset_url, damaged)
