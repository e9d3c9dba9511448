"""Dataset root layout: `dataset.json`, shard names, completion markers and resume checks.

Layout under a dataset URL:
    dataset.json                 DatasetIndex: what produced the dataset (see fingerprint()).
    shard-000000.tar             WebDataset samples (storage.shard_writer).
    shard-000000.parquet         manifest, one row per sample (storage.manifest).
    shard-000000.stats.json      written LAST: the shard's completion marker.
A shard is complete iff its stats file exists and parses; a crash before that leaves at most
a tar/parquet that the next run overwrites, plus dot-prefixed temp files it removes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mm2latent_core.errors import DatasetError
from storage.atomic import (STALE_WRITE_S, abort_unfinished_uploads, atomic_write_bytes,
                            clean_interrupted_writes, remove_temp_files)
from storage.fs import check_writable, join, open_fs
from storage.manifest import STATUS_FAILED, MemberLayout, write_manifest
from storage.shard_writer import ShardResult

logger = logging.getLogger(__name__)

DATASET_FILE = "dataset.json"
SHARD_DIGITS = 6
FORMAT_VERSION = 1
SHARD_SUFFIXES = ("tar", "parquet", "stats.json")
_STATS_RE = re.compile(r"^shard-(\d{6})\.stats\.json$")
_SHARD_FILE_RE = re.compile(r"^shard-\d{6}\.(tar|parquet|stats\.json)$")
# How a reader's user gets a sound dataset.json back without losing shards.
_REWRITE_INDEX = ("re-run the synth-data command that made the dataset: it writes dataset.json "
                  "again and keeps the shards that match it.")
_OVERWRITE_FIX = "Fix: pass --overwrite to replace it, or choose a new --out."


def shard_name(index: int, suffix: str = "tar") -> str:
    """File name of shard `index` with `suffix` in ('tar', 'parquet', 'stats.json')."""
    if suffix not in SHARD_SUFFIXES:
        raise ValueError(f"unknown shard suffix {suffix!r}; valid: {', '.join(SHARD_SUFFIXES)}")
    if not 0 <= index < 10**SHARD_DIGITS:
        raise ValueError(f"shard index {index} is outside [0, {10**SHARD_DIGITS})")
    return f"shard-{index:0{SHARD_DIGITS}d}.{suffix}"


def shard_url(dataset_url: str, index: int, suffix: str = "tar") -> str:
    """URL of shard `index`'s file with `suffix` under the dataset root."""
    return join(dataset_url, shard_name(index, suffix))


class DatasetIndex(BaseModel):
    """Contents of `dataset.json`: what produced the dataset, and its planned shards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION  # layout version of this file and the shards
    preset: str  # name of the synth-data preset, e.g. 'tiny' or 'ffhq1024'
    parameters: dict[str, Any]  # resolved generation parameters (JSON values)
    weights: dict[str, str]  # weights name -> sha256 of the file used
    software_version: str  # mm2latent.__version__ that wrote the data
    vector_dims: dict[str, int]  # manifest vector widths (written by every version)
    samples_per_shard: int  # samples per shard (the last shard may hold fewer)
    num_samples: int  # total planned samples
    shards: list[str] = []  # planned shard tar names, in index order

    def fingerprint(self) -> dict[str, Any]:
        """The fields that must match for a re-run to resume into this dataset.

        num_samples and shards are left out so that a re-run may extend the dataset: with the
        same samples_per_shard, existing shards stay valid.
        """
        return self.model_dump(exclude={"num_samples", "shards"})

    def fingerprint_sha256(self) -> str:
        """sha256 of the fingerprint: what each shard's stats file records of its dataset.json."""
        text = json.dumps(self.fingerprint(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def planned_shards(self) -> list[str]:
        """The shard tar names num_samples and samples_per_shard call for, in index order."""
        count = -(-self.num_samples // self.samples_per_shard) if self.samples_per_shard > 0 else 0
        return [shard_name(i) for i in range(count)]

    def write(self, dataset_url: str) -> None:
        """Write `dataset.json` atomically under the dataset root."""
        text = json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(join(dataset_url, DATASET_FILE), text.encode())

    @classmethod
    def read(cls, dataset_url: str) -> DatasetIndex:
        """Read `dataset.json`; DatasetError if it is missing or malformed."""
        url = join(dataset_url, DATASET_FILE)
        fs, path = open_fs(url)
        try:
            with fs.open(path, "rb") as f:
                return cls.model_validate_json(f.read())
        except FileNotFoundError as e:
            raise DatasetError(f"{url}: not found, so {dataset_url} is not a dataset (or its "
                               f"{DATASET_FILE} was deleted). Fix: pass a dataset root made by "
                               f"synth-data; if {DATASET_FILE} was deleted, {_REWRITE_INDEX}") from e
        except (ValidationError, UnicodeDecodeError) as e:
            first = str(e).splitlines()[:3]
            raise DatasetError(f"{url}: malformed dataset index ({' '.join(first)}). Fix: delete "
                               f"it and {_REWRITE_INDEX}") from e

    @classmethod
    def exists(cls, dataset_url: str) -> bool:
        """True if the dataset root holds a `dataset.json`."""
        fs, path = open_fs(join(dataset_url, DATASET_FILE))
        return fs.exists(path)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {'a.b.c': leaf}; lists and scalars are leaves."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k in value:
            out.update(_flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def check_compatible(existing: Mapping[str, Any], requested: Mapping[str, Any], url: str = "") -> None:
    """Raise DatasetError listing every field where two fingerprints differ.

    Args:
        existing: fingerprint of the dataset on disk (DatasetIndex.fingerprint()).
        requested: fingerprint of the run being started.
        url: the dataset URL, named in the message.
    """
    old, new = _flatten(existing), _flatten(requested)
    missing = object()
    diffs = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name, missing), new.get(name, missing)
        if a != b:
            a_text = "(absent)" if a is missing else json.dumps(a, sort_keys=True)
            b_text = "(absent)" if b is missing else json.dumps(b, sort_keys=True)
            diffs.append(f"  {name}: existing {a_text} vs requested {b_text}")
    if diffs:
        where = f"{url}: " if url else ""
        raise DatasetError(
            f"{where}the existing dataset was made with different settings:\n"
            + "\n".join(diffs)
            + f"\n{_OVERWRITE_FIX}"
        )


class FileRecord(BaseModel):
    """Name, size and digest of one committed shard file."""

    model_config = ConfigDict(frozen=True)

    name: str  # file name under the dataset root
    bytes: int  # file size
    sha256: str  # hex digest of the whole file


class ShardStats(BaseModel):
    """Contents of `shard-NNNNNN.stats.json`, the completion marker of a shard."""

    model_config = ConfigDict(frozen=True)

    shard: int  # shard index
    count: int  # manifest rows (samples), failed ones included
    ok: int  # samples written to the tar
    failures: int  # rows with status 'failed'
    durations_s: dict[str, float]  # seconds per stage for this shard, e.g. {'generate': 12.5}
    tar: FileRecord
    parquet: FileRecord
    # DatasetIndex.fingerprint_sha256() of the dataset.json in place when the shard was
    # committed, so readers notice a dataset.json edited or replaced since. None: the shard
    # predates this record (or was written without a dataset.json).
    index_sha256: str | None = None

    def to_json_bytes(self) -> bytes:
        """The file's bytes: indented, sorted-key JSON."""
        return (json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n").encode()


def _parse_stats(data: bytes | Exception) -> ShardStats | None:
    """The stats if `data` is a well-formed stats file, else None."""
    if isinstance(data, Exception):
        return None
    try:
        return ShardStats.model_validate_json(data)
    except (ValidationError, ValueError):
        return None


def read_shard_stats(dataset_url: str, index: int) -> ShardStats | None:
    """The stats of shard `index`, or None if the shard is not complete."""
    fs, path = open_fs(shard_url(dataset_url, index, "stats.json"))
    try:
        return _parse_stats(fs.cat_file(path))
    except FileNotFoundError:
        return None


def is_shard_complete(dataset_url: str, index: int) -> bool:
    """True iff shard `index`'s stats file exists and parses."""
    return read_shard_stats(dataset_url, index) is not None


def complete_shards(dataset_url: str) -> list[int]:
    """Indices of complete shards under the dataset root, ascending."""
    fs, root = open_fs(dataset_url)
    fs.invalidate_cache(root)  # other processes (workers) may have written since the last listing
    if not fs.exists(root):
        return []
    paths = sorted(p for p in fs.ls(root, detail=False) if _STATS_RE.match(p.rsplit("/", 1)[-1]))
    if not paths:
        return []
    # One batched call: object stores fetch the small stats files concurrently. Results are
    # matched by base name, since filesystems may normalise the returned paths.
    fetched = fs.cat(paths, on_error="return")
    contents = {p.rstrip("/").rsplit("/", 1)[-1]: v for p, v in fetched.items()}
    done = []
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if _parse_stats(contents.get(name, FileNotFoundError(path))) is not None:
            done.append(int(_STATS_RE.match(name).group(1)))
        else:
            logger.warning("ignoring unreadable stats file %s; the shard will be rebuilt", path)
    return done


def begin_shard(dataset_url: str, index: int) -> None:
    """Mark shard `index` incomplete before rewriting it: remove its stats file if present.

    Without this, a rerun that redoes a shard (e.g. a short last shard after n_samples grew)
    would leave the old completion marker in place while the new tar is committed, and a crash
    in between would leave a shard that looks complete but whose files disagree.
    """
    fs, path = open_fs(shard_url(dataset_url, index, "stats.json"))
    if fs.exists(path):
        fs.rm(path)


def commit_shard(
    dataset_url: str,
    index: int,
    shard: ShardResult,
    rows: Sequence[Mapping],
    durations_s: Mapping[str, float],
    vector_dims: Mapping[str, int],
    layout: MemberLayout,
) -> ShardStats:
    """Write shard `index`'s manifest, then its stats file (the completion marker); return stats.

    Call after the TarShardWriter for this shard has been closed (its tar is committed).

    Args:
        dataset_url: the dataset root.
        index: shard index.
        shard: the closed writer's result.
        rows: manifest rows for every sample of the shard, failed ones included.
        durations_s: seconds spent per stage for this shard (e.g. {'generate': 12.5}).
        vector_dims: manifest vector widths.
        layout: member name -> tar extensions (the manifest's member columns).
    """
    tar_url = shard_url(dataset_url, index, "tar")
    if shard.url != tar_url:
        raise ValueError(f"shard result is for {shard.url}, expected {tar_url}")
    ok_keys = sorted(r["key"] for r in rows if r["status"] != STATUS_FAILED)
    if ok_keys != sorted(shard.members):
        raise ValueError(
            f"{tar_url}: manifest 'ok' rows ({len(ok_keys)}) do not match the samples in the tar "
            f"({shard.count})"
        )
    parquet = write_manifest(shard_url(dataset_url, index, "parquet"), rows, vector_dims, layout)
    index_sha256 = (DatasetIndex.read(dataset_url).fingerprint_sha256()
                    if DatasetIndex.exists(dataset_url) else None)
    stats = ShardStats(
        shard=index, count=len(rows), ok=shard.count, failures=len(rows) - shard.count,
        durations_s=dict(durations_s),
        tar=FileRecord(name=shard_name(index, "tar"), bytes=shard.size, sha256=shard.sha256),
        parquet=FileRecord(name=shard_name(index, "parquet"), bytes=parquet.size, sha256=parquet.sha256),
        index_sha256=index_sha256)
    atomic_write_bytes(shard_url(dataset_url, index, "stats.json"), stats.to_json_bytes())
    return stats


def prepare_output(dataset_url: str, requested: DatasetIndex, overwrite: bool = False) -> list[int]:
    """Make `dataset_url` ready for a run; return the complete shard indices to skip.

    Checks writability, removes temp files and unfinished uploads of crashed runs, and either deletes the old
    dataset's files (overwrite) or checks that it was made with the same fingerprint.
    Then writes `requested` as dataset.json. Run it once, before any shard writer starts.

    Args:
        dataset_url: the dataset root (created if missing).
        requested: the index describing this run.
        overwrite: delete an existing dataset's files instead of resuming.
    """
    check_writable(dataset_url)
    # The root's shard files are this run's alone: clean what any crashed writer left there.
    # Subdirectories (embeddings/) may have writers of their own: only old leftovers go.
    remove_temp_files(dataset_url)
    abort_unfinished_uploads(dataset_url, recursive=False)
    clean_interrupted_writes(dataset_url, older_than_s=STALE_WRITE_S)
    if overwrite:
        _delete_dataset_files(dataset_url)
    elif DatasetIndex.exists(dataset_url):
        existing = DatasetIndex.read(dataset_url)
        check_compatible(existing.fingerprint(), requested.fingerprint(), dataset_url)
    requested.write(dataset_url)
    return complete_shards(dataset_url)


def _delete_dataset_files(dataset_url: str) -> None:
    """Delete dataset.json and shard files, stats first (other files are left alone)."""
    fs, root = open_fs(dataset_url)
    names = [p for p in fs.ls(root, detail=False)]
    ours = [p for p in names if _SHARD_FILE_RE.match(p.rsplit("/", 1)[-1])]
    # Stats first: if deletion is interrupted, no shard still looks complete.
    ours.sort(key=lambda p: (not p.endswith(".stats.json"), p))
    for path in ours:
        fs.rm(path)
    index_path = join(root, DATASET_FILE)
    if fs.exists(index_path):
        fs.rm(index_path)
    logger.info("overwrite: removed %d shard file(s) under %s", len(ours), dataset_url)
