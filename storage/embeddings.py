"""Per-shard embedding parquet files written next to a dataset by autoencoder training.

Layout: `<dataset>/embeddings/<version>/shard-NNNNNN.parquet`, one file per complete shard with
columns key (string), index (int64) and `<name>` (fixed_size_list<float32>[D]). `version` names
the model that produced them (e.g. "mask-ae-v3"), so embeddings of different models never mix.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_write_bytes
from storage.dataset_index import shard_name
from storage.fs import join, open_fs

EMBEDDINGS_DIR = "embeddings"


def embeddings_url(dataset_url: str, version: str, shard: int | None = None) -> str:
    """URL of an embeddings version directory, or of one shard's parquet in it."""
    root = join(dataset_url, EMBEDDINGS_DIR, version)
    return root if shard is None else join(root, shard_name(shard, "parquet"))


def embedding_shard_exists(dataset_url: str, version: str, shard: int) -> bool:
    """True if shard `shard` of embeddings `version` has been written."""
    fs, path = open_fs(embeddings_url(dataset_url, version, shard))
    return fs.exists(path)


def write_embedding_table(url: str, keys: list[str], indices: np.ndarray, name: str,
                          vectors: np.ndarray) -> None:
    """Write one shard's embeddings (vectors (N, D) float32) as parquet, atomically."""
    dim = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))  # (N * D,)
    table = pa.table({"key": pa.array(keys, pa.string()), "index": pa.array(indices, pa.int64()),
                      name: pa.FixedSizeListArray.from_arrays(flat, dim)})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    atomic_write_bytes(url, buffer.getvalue())


def read_embedding_table(url: str) -> pa.Table:
    """One shard's embeddings table; FileNotFoundError if it was never written."""
    fs, path = open_fs(url)
    with fs.open(path, "rb") as f:
        return pq.read_table(f)
