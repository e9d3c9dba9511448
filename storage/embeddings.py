"""Per-shard embedding parquet files written next to a dataset by autoencoder training.

Layout: `<dataset>/embeddings/<version>/shard-NNNNNN.parquet`, one file per complete shard with
columns key (string), index (int64) and `<name>` (fixed_size_list<float32>[D]). `version` names
the model that produced them after its checkpoint's digest (e.g. "mask-ae-3f2a9c01b4de"), so
embeddings of different models never mix, even between registries on one dataset. Each file
records the sha256 of the shard tar it was computed from (parquet schema metadata), so
embeddings of a shard that was since rewritten are recognised as stale.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_write_bytes
from storage.dataset_index import shard_name
from storage.derived import recorded_source, table_source, with_source
from storage.fs import join, open_fs

EMBEDDINGS_DIR = "embeddings"
__all__ = ["embedding_source", "table_source"]  # re-exported: the shared staleness record


def embeddings_url(dataset_url: str, version: str, shard: int | None = None) -> str:
    """URL of an embeddings version directory, or of one shard's parquet in it."""
    root = join(dataset_url, EMBEDDINGS_DIR, version)
    return root if shard is None else join(root, shard_name(shard, "parquet"))


def embedding_shard_exists(dataset_url: str, version: str, shard: int) -> bool:
    """True if shard `shard` of embeddings `version` has been written."""
    fs, path = open_fs(embeddings_url(dataset_url, version, shard))
    return fs.exists(path)


def write_embedding_table(url: str, keys: list[str], indices: np.ndarray, name: str,
                          vectors: np.ndarray, source_sha256: str) -> None:
    """Write one shard's embeddings (vectors (N, D) float32) as parquet, atomically.

    `source_sha256` is the digest of the shard tar the vectors were computed from.
    """
    dim = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))  # (N * D,)
    table = pa.table({"key": pa.array(keys, pa.string()), "index": pa.array(indices, pa.int64()),
                      name: pa.FixedSizeListArray.from_arrays(flat, dim)})
    table = with_source(table, source_sha256)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    atomic_write_bytes(url, buffer.getvalue())


def read_embedding_table(url: str) -> pa.Table:
    """One shard's embeddings table; FileNotFoundError if it was never written."""
    fs, path = open_fs(url)
    with fs.open(path, "rb") as f:
        return pq.read_table(f)


def embedding_source(url: str) -> str | None:
    """sha256 of the shard tar that one shard's embeddings came from; None if the file is
    missing or predates the record (treat as stale)."""
    return recorded_source(url)
