"""Reading per-shard parquet files derived from a dataset (embeddings, attributes) safely.

Derived files have no stats file of their own: they are rewritten from the dataset's shards by
the command that made them. A file that no longer parses (a flipped byte in a zstd page gives
`OSError: ZSTD decompression failed`) is refused here by name, with that command as the fix;
the writers treat such a file as missing, so rerunning the command repairs it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from mm2latent_core.errors import DatasetError
from storage.fs import open_fs


def read_derived_table(url: str, what: str, fix: str) -> pa.Table:
    """The whole table at `url`; FileNotFoundError if absent, DatasetError if unreadable.

    Args:
        url: one derived parquet file.
        what: what it holds, for the message (e.g. "mask embeddings").
        fix: the sentence that says how to rewrite it (e.g. "Fix: re-run `mm2latent train
            autoencoders` on this dataset; it rewrites unreadable embeddings.").
    """
    fs, path = open_fs(url)
    try:
        with fs.open(path, "rb") as f:
            return pq.read_table(f)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{url}: unreadable {what} file ({str(e).splitlines()[0]}). {fix}") from e


def derived_table_or_none(url: str) -> pa.Table | None:
    """The table at `url`, or None if it is missing or unreadable (a writer then rewrites it)."""
    try:
        return read_derived_table(url, "derived", "")
    except (FileNotFoundError, DatasetError):
        return None
