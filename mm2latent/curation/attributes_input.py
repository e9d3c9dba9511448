"""The attribute tables curation reads: storage.attributes' per-shard joined tables, narrowed
to the columns a spec names."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from mm2latent_core.errors import DatasetError
from storage.attributes import iter_attribute_shards


def read_attribute_shards(dataset_url: str, columns: list[str] | None) -> Iterator[tuple[int, pa.Table]]:
    """(shard, table of 'index' + `columns`) per shard with attributes, ascending; None = all columns.

    Only the attribute sources the columns name (the part before the first dot) are read.
    """
    sources = None if columns is None else sorted({c.split(".", 1)[0] for c in columns})
    for shard, table in iter_attribute_shards(dataset_url, sources=sources):
        if columns is None:
            yield shard, table
            continue
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise DatasetError(
                f"{dataset_url}: no attribute column(s) {missing}; available: "
                f"{', '.join(table.column_names[1:])}. Fix: name those in the spec, or run "
                f"`mm2latent dataset attributes {dataset_url}` for that source.")
        yield shard, table.select(["index", *columns])
