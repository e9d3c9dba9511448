"""Per-shard files derived from a dataset shard (embeddings, attributes, captions) and what binds
them to it.

Each derived parquet records, in its schema metadata, the sha256 of the shard tar it was
computed from (the tar's digest is in the shard's stats file, the completion marker). A
derived file whose recorded digest differs from the shard's current one was computed from an
older version of the shard (e.g. before `synth-data --overwrite`): it is stale, and writers
recompute it while readers refuse it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from mm2latent_core.errors import DatasetError
from storage.atomic import atomic_write_bytes
from storage.dataset_index import read_shard_stats
from storage.fs import open_fs

SOURCE_KEY = b"mm2latent.shard_tar_sha256"  # schema metadata: the tar the values came from


def shard_tar_sha256(dataset_url: str, shard: int) -> str:
    """The sha256 of a complete shard's tar, from its stats file (what derived files are bound to)."""
    stats = read_shard_stats(dataset_url, shard)
    if stats is None:
        raise DatasetError(f"{dataset_url}: shard {shard} is not complete. Fix: re-run synth-data "
                           "on this dataset to finish it.")
    return stats.tar.sha256


def with_source(table: pa.Table, source_sha256: str, extra: dict[bytes, bytes] | None = None
                ) -> pa.Table:
    """`table` with the shard tar digest (and `extra` entries) in its schema metadata."""
    return table.replace_schema_metadata({**(extra or {}), SOURCE_KEY: source_sha256.encode()})


def read_parquet(url: str, what: str, fix: str, columns: Sequence[str] | None = None) -> pa.Table:
    """The table at `url`, read in full; FileNotFoundError if absent, DatasetError if damaged.

    A flipped byte in a zstd page gives `OSError: ZSTD decompression failed` only when that page
    is read, so the whole file is read here and refused by name with `fix`.

    Args:
        url: one derived parquet file.
        what: what it holds, for the message (e.g. "embeddings").
        fix: the sentence that says how to rewrite it.
        columns: columns to read; None = all.
    """
    fs, path = open_fs(url)
    try:
        with fs.open(path, "rb") as f:
            return pq.read_table(f, columns=None if columns is None else list(columns))
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{url}: damaged, unreadable {what} file ({str(e).splitlines()[0]}). {fix}") from e


def recorded_source(url: str) -> str | None:
    """sha256 of the shard tar that a derived parquet came from; None if the file is missing,
    damaged (read in full: a damaged page is found here) or predates the record: all three
    count as stale, so writers compute the file again."""
    try:
        return table_source(read_parquet(url, "derived", ""))
    except (FileNotFoundError, DatasetError):
        return None


def table_source(table: pa.Table) -> str | None:
    """The tar digest recorded in a table read from a derived parquet (None if absent)."""
    source = (table.schema.metadata or {}).get(SOURCE_KEY)
    return None if source is None else source.decode()


def shards_to_write(dataset_url: str, shards: Sequence[int], url_of: Callable[[int], str]
                    ) -> list[int]:
    """The shards whose derived file `url_of(shard)` is missing, damaged or stale (resume plan)."""
    return [s for s in shards if recorded_source(url_of(s)) != shard_tar_sha256(dataset_url, s)]


def write_derived_table(url: str, table: pa.Table, source_sha256: str,
                        extra: dict[bytes, bytes] | None = None) -> None:
    """Write one shard's derived table as parquet at `url`, atomically (its completion marker).

    Args:
        url: the shard's parquet, e.g. `<dataset>/attributes/<folder>/shard-000000.parquet`.
        table: the rows, one per sample of the shard.
        source_sha256: the digest of the shard tar they were computed from.
        extra: further schema metadata (e.g. the producer's digest).
    """
    buffer = io.BytesIO()
    pq.write_table(with_source(table, source_sha256, extra), buffer, compression="zstd")
    atomic_write_bytes(url, buffer.getvalue())


def read_derived_table(url: str, dataset_url: str, shard: int, fix: str,
                       columns: Sequence[str] | None = None) -> pa.Table:
    """One shard's derived table, refusing a missing, damaged or stale file.

    Args:
        url: the shard's parquet.
        dataset_url: the dataset root (its stats give the shard's current tar digest).
        shard: the shard index.
        fix: the sentence telling how to (re)compute the file, e.g. "Fix: run `mm2latent ...`".
        columns: columns to read; None = all.

    Raises:
        DatasetError: one line naming the file, the problem and `fix`.
    """
    try:
        table = read_parquet(url, "derived", fix, columns)
    except FileNotFoundError as e:
        raise DatasetError(f"{url}: missing (shard {shard} has none). {fix}") from e
    if table_source(table) != shard_tar_sha256(dataset_url, shard):
        raise DatasetError(f"{url}: stale: shard {shard} was rewritten after it was computed (its "
                           f"tar digest differs). {fix}")
    return table
