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
from storage.derived_tables import derived_table_or_none, read_derived_table
from storage.fs import join, open_fs

EMBEDDINGS_DIR = "embeddings"
SOURCE_KEY = b"mm2latent.shard_tar_sha256"  # schema metadata: the tar the vectors came from


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
    table = table.replace_schema_metadata({SOURCE_KEY: source_sha256.encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    atomic_write_bytes(url, buffer.getvalue())


REPAIR_FIX = ("Fix: re-run `mm2latent train autoencoders` on this dataset; it rewrites "
              "missing, stale or unreadable embeddings.")


def read_embedding_table(url: str) -> pa.Table:
    """One shard's embeddings table; FileNotFoundError if it was never written, DatasetError
    naming the file and the fix if it no longer parses."""
    return read_derived_table(url, "embeddings", REPAIR_FIX)


def embedding_source(url: str) -> str | None:
    """sha256 of the shard tar that one shard's embeddings came from; None if the file is
    missing, unreadable (read in full: a damaged page is found here) or predates the record:
    all three count as stale and are written again."""
    table = derived_table_or_none(url)
    return None if table is None else table_source(table)


def table_source(table: pa.Table) -> str | None:
    """The tar digest recorded in a table read by read_embedding_table (None if absent)."""
    source = (table.schema.metadata or {}).get(SOURCE_KEY)
    return None if source is None else source.decode()
