"""Which source samples a spec selects: filters in order, then the balance target and `n`.

Streams the source one shard at a time: each shard's manifest (index, shard, status) and
attribute table are read, reduced to a few numbers per sample, and dropped before the next
shard is read. What stays in memory: per source sample its index, shard, the filter that
removed it and the spec's few attribute values (tens of bytes), plus, when near-duplicates are
filtered, the surviving samples' N x D vectors (read again per shard) for the index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mm2latent.curation.balance import NO_CELL, choose, joint_cells, quotas
from mm2latent.curation.dedupe import near_duplicate_keep
from mm2latent.curation.spec import FACE_SHARE_COLUMN, CurationSpec
from mm2latent_core.errors import DatasetError
from storage.dataset_index import complete_shards, shard_url
from storage.manifest import STATUS_FAILED, read_manifest
from storage.readers import read_vectors

# What each filter stage is called in the report, in the order they apply; 0 = kept.
STAGES = ("failed", "face_share", "ranges", "near_duplicates")
KEPT = 0
# (dataset URL, attribute columns or None = all) -> (shard index, table with 'index' + those
# columns) per shard, ascending; storage.attributes in production, fabricated tables in tests.
AttributeReader = Callable[[str, list[str] | None], Iterator[tuple[int, pa.Table]]]


@dataclass(frozen=True)
class CellCount:
    """One joint cell of the balance target."""

    key: str  # 'name=label,name=label'
    share: float  # target share (0..1)
    available: int  # samples in the cell after the filters
    selected: int  # samples chosen from it


@dataclass(frozen=True)
class Selection:
    """The outcome of a spec on a source: the chosen samples and what removed the others."""

    source_indices: np.ndarray  # (n,) int64 chosen source indices, ascending
    source_shards: np.ndarray  # (n,) int32 the source shard of each chosen sample
    rows: int  # manifest rows of the source (failed ones included)
    removed: dict[str, int]  # filter stage -> samples it removed (STAGES order)
    cells: tuple[CellCount, ...]  # the balance target's cells; () without one
    outside_cells: int  # samples that passed the filters but fall in no balance cell
    not_drawn: int  # samples that passed everything but were not drawn (n smaller)


@dataclass
class _Columns:
    """Per-sample arrays of the whole source, appended shard by shard."""

    index: list[np.ndarray]
    shard: list[np.ndarray]
    stage: list[np.ndarray]
    values: dict[str, list[np.ndarray]]


def _align(attributes: pa.Table | None, indices: np.ndarray, column: str, shard: int,
           dataset_url: str) -> np.ndarray:
    """(N,) float64 values of `column` for manifest `indices`; NaN where a sample has none."""
    if attributes is None:
        raise DatasetError(f"{dataset_url}: shard {shard} has no attributes. Fix: run "
                           f"`mm2latent dataset attributes {dataset_url}` first.")
    if column not in attributes.column_names:
        raise DatasetError(f"{dataset_url}: shard {shard}'s attributes have no column {column!r}; "
                           f"available: {', '.join(attributes.column_names[1:])}. Fix: name one "
                           "of those in the spec, or compute that attribute source.")
    lookup = {i: p for p, i in enumerate(attributes["index"].to_pylist())}
    values = attributes[column].to_numpy(zero_copy_only=False).astype(np.float64)
    out = np.full(len(indices), np.nan)
    for p, i in enumerate(indices.tolist()):
        if i in lookup:
            out[p] = values[lookup[i]]
    return out


def _stages(spec: CurationSpec, failed: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) int8: 0 kept, else 1 + the first filter stage (STAGES) that removes the sample."""
    stage = np.zeros(len(failed), dtype=np.int8)
    filters = spec.filters
    tests = [failed if filters.drop_failed else np.zeros(len(failed), bool)]
    if filters.min_face_share is not None:  # NaN (no mask attribute) compares False: removed
        tests.append(~(values[FACE_SHARE_COLUMN] >= filters.min_face_share))
    else:
        tests.append(np.zeros(len(failed), bool))
    outside = np.zeros(len(failed), bool)
    for column, (low, high) in filters.ranges.items():
        outside |= ~((values[column] >= low) & (values[column] <= high))
    tests.append(outside)
    for number, removed in enumerate(tests, start=1):
        stage[(stage == KEPT) & removed] = number
    return stage


def _scan(dataset_url: str, spec: CurationSpec, read_attributes: AttributeReader) -> _Columns:
    """Pass 1: manifests and attributes, one shard at a time."""
    columns = spec.attribute_columns()
    acc = _Columns([], [], [], {c: [] for c in columns})
    attribute_shards = read_attributes(dataset_url, columns) if columns else iter(())
    current: tuple[int, pa.Table] | None = None
    exhausted = not columns
    for shard in complete_shards(dataset_url):
        manifest = read_manifest(shard_url(dataset_url, shard, "parquet"), ["index", "status"])
        indices = manifest["index"].to_numpy()
        failed = np.asarray(manifest["status"].to_pylist(), dtype=object) == STATUS_FAILED
        # Fetch the next attribute table only now, so one shard's table is held at a time
        # (tables of shards that are no longer complete are skipped).
        while not exhausted and (current is None or current[0] < shard):
            current = next(attribute_shards, None)
            exhausted = current is None
        table = None
        if current is not None and current[0] == shard:
            table, current = current[1], None
        values = {c: _align(table, indices, c, shard, dataset_url) for c in columns}
        del table  # one shard's attributes at a time
        acc.index.append(indices.astype(np.int64))
        acc.shard.append(np.full(len(indices), shard, dtype=np.int32))
        acc.stage.append(_stages(spec, failed, values))
        for c in columns:
            acc.values[c].append(values[c].astype(np.float32))
    if not acc.index:
        raise DatasetError(f"{dataset_url}: no complete shards to curate. Fix: run synth-data "
                           "into it first, or finish its shards.")
    return acc


def _survivor_vectors(dataset_url: str, vector: str, index: np.ndarray, shards: np.ndarray,
                      keep: np.ndarray) -> np.ndarray:
    """(M, D) float32 vectors of the kept samples, in `index` order, read one shard at a time
    (a kept failed sample has no vector: zeros, similar to nothing)."""
    rows = np.flatnonzero(keep)
    out: np.ndarray | None = None
    for shard in np.unique(shards[rows]).tolist():
        mine = rows[shards[rows] == shard]
        table = read_vectors(dataset_url, (vector,), shards=[shard])
        if out is None:
            out = np.zeros((len(rows), table[vector].shape[1]), dtype=np.float32)
        lookup = {i: p for p, i in enumerate(table["index"].tolist())}
        for row in mine.tolist():
            if int(index[row]) in lookup:
                out[np.searchsorted(rows, row)] = table[vector][lookup[int(index[row])]]
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def select(dataset_url: str, spec: CurationSpec, read_attributes: AttributeReader) -> Selection:
    """Apply `spec` to the source at `dataset_url`; the same spec and source give the same result.

    Args:
        dataset_url: the source dataset root (its complete shards are curated).
        spec: the validated spec.
        read_attributes: yields each shard's attribute table (storage.attributes).
    """
    acc = _scan(dataset_url, spec, read_attributes)
    index, shards = np.concatenate(acc.index), np.concatenate(acc.shard)
    stage = np.concatenate(acc.stage)
    values = {c: np.concatenate(v) for c, v in acc.values.items()}
    order = np.argsort(index, kind="stable")  # ascending source index: the dedupe keep rule
    index, shards, stage = index[order], shards[order], stage[order]
    values = {c: v[order] for c, v in values.items()}
    dedupe = spec.filters.near_duplicates
    if dedupe is not None:
        alive = stage == KEPT
        vectors = _survivor_vectors(dataset_url, dedupe.vector, index, shards, alive)
        duplicate = np.zeros(len(index), bool)
        duplicate[np.flatnonzero(alive)] = ~near_duplicate_keep(vectors, dedupe.max_cosine)
        del vectors
        stage[duplicate] = 1 + STAGES.index("near_duplicates")
    removed = {name: int(np.sum(stage == number)) for number, name in enumerate(STAGES, start=1)}
    alive = np.flatnonzero(stage == KEPT)
    cells, weights, keys = np.zeros(len(alive), np.int64), [1.0], [""]
    if spec.balance is not None:
        cells = joint_cells(spec.balance, {c: v[alive] for c, v in values.items()})
        weights, keys = spec.balance.weights(), spec.balance.cell_keys()
    available = [int(np.sum(cells == c)) for c in range(len(keys))]
    counts = quotas(available, weights, spec.n) if spec.balance is not None else \
        [min(spec.n, len(alive)) if spec.n is not None else len(alive)]
    if spec.balance is None and spec.n is not None and len(alive) < spec.n:
        raise DatasetError(f"{dataset_url}: only {len(alive)} sample(s) pass the filters, fewer "
                           f"than --n {spec.n}. Fix: lower --n or relax the filters.")
    chosen = choose(index[alive], cells, counts, spec.seed)
    positions = np.searchsorted(index, chosen)
    cell_counts = tuple(CellCount(k, w, a, c) for k, w, a, c in zip(keys, weights, available, counts)) \
        if spec.balance is not None else ()
    outside = int(np.sum(cells == NO_CELL))
    return Selection(source_indices=chosen.astype(np.int64), source_shards=shards[positions],
                     rows=len(index), removed=removed, cells=cell_counts, outside_cells=outside,
                     not_drawn=len(alive) - outside - len(chosen))
