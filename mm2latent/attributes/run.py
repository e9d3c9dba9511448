"""Compute a dataset's attributes shard by shard: plan once, then one call per shard.

Resumable: a shard whose parquet already exists for the same producer (same folder) and was
computed from the shard's current tar is skipped; a rewritten shard is recomputed. Another
producer (preset, weights, prompt table, source version) has another digest, hence its own
folder: nothing of an earlier producer is overwritten or mixed in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mm2latent.attributes.registry import default_attribute_registry
from mm2latent.attributes.spec import (AttributeBatch, AttributeRegistry, AttributeSource,
                                       PrepareInputs, Prepared)
from mm2latent.modalities.registry import default_registry
from mm2latent.presets import get_preset
from mm2latent_core.errors import ConfigError, DatasetError
from mm2latent_core.modalities.spec import ModalityRegistry
from storage.attributes import (AttributeColumnInfo, AttributeDescriptor, attributes_url,
                                write_attribute_shard, write_descriptor)
from storage.dataset_index import DatasetIndex, complete_shards, shard_url
from storage.derived import shard_tar_sha256, shards_to_write
from storage.manifest import STATUS_OK, read_manifest
from storage.readers import iter_samples

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedSource:
    """One chosen source, its run-wide context and the folder it writes."""

    source: AttributeSource
    descriptor: AttributeDescriptor
    context: Any


@dataclass(frozen=True)
class AttributesPlan:
    """Everything a shard call needs; pickles (it is passed to Prefect tasks)."""

    dataset: str
    sources: tuple[PlannedSource, ...]
    shards: tuple[int, ...]                       # the run's snapshot of complete shards
    todo: dict[int, tuple[str, ...]]              # shard -> folders still to write
    batch_size: int                               # samples decoded and computed at once
    makes_faces: bool                             # False on tiny: the values are meaningless
    registry: ModalityRegistry = field(default_factory=default_registry)

    def folders(self) -> tuple[str, ...]:
        """The chosen sources' folder names, in source order."""
        return tuple(p.descriptor.folder for p in self.sources)


@dataclass(frozen=True)
class AttributesSummary:
    """What a run wrote."""

    dataset: str
    folders: tuple[str, ...]       # `<source>-<digest12>` per chosen source
    written: int                   # shard files written by this run
    skipped: int                   # shard files already complete (resumed)
    shards: int                    # dataset shards covered
    makes_faces: bool


def _descriptor(source: AttributeSource, prepared: Prepared) -> AttributeDescriptor:
    digest = source.digest(prepared.producer)
    return AttributeDescriptor(
        source=source.name, version=source.version, digest=digest, description=source.description,
        columns=[AttributeColumnInfo(name=source.column_name(c.name), unit=c.unit,
                                     description=c.description) for c in source.columns],
        producer=prepared.producer)


def _check_inputs(dataset: str, index: DatasetIndex, source: AttributeSource) -> None:
    """DatasetError if the dataset lacks a vector column or member the source reads."""
    stored = index.parameters.get("modalities")
    for name in source.vectors:
        if name not in index.vector_dims:
            raise DatasetError(f"{dataset}: has no {name!r} vectors, which the {source.name!r} "
                               f"attributes read. Fix: drop {source.name} from --sources, or "
                               f"generate the dataset with {name} in --modalities.")
    for name in source.members:
        if stored is not None and name not in stored:
            raise DatasetError(f"{dataset}: stores no {name!r}, which the {source.name!r} "
                               f"attributes read. Fix: drop {source.name} from --sources, or "
                               f"generate the dataset with {name} in --modalities.")


def plan(dataset: str, sources: Sequence[str] | None = None, preset: str | None = None,
         cache_dir: Path | None = None, batch_size: int = 64,
         attribute_registry: AttributeRegistry | None = None,
         registry: ModalityRegistry | None = None) -> AttributesPlan:
    """Validate the run, prepare each source once, write the descriptors; list what is left.

    Args:
        dataset: the dataset root.
        sources: source names; None = every source of `attribute_registry`.
        preset: the preset whose networks (FaRL text tower) score; None = the dataset's own.
        cache_dir: weights cache; None = the default.
        batch_size: samples computed at once (does not change the values).
        attribute_registry: the sources; None = default_attribute_registry().
        registry: the modalities (decoders of the tar members); None = default_registry().
    """
    attribute_registry = attribute_registry or default_attribute_registry()
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}.")
    names = attribute_registry.names if sources is None else tuple(sources)
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"--sources {','.join(names)!r}: give each of "
                          f"{', '.join(attribute_registry.names)} at most once, and at least one.")
    chosen = [attribute_registry.get(n) for n in names]
    index = DatasetIndex.read(dataset)
    for source in chosen:
        _check_inputs(dataset, index, source)
    shards = tuple(complete_shards(dataset))
    if not shards:
        raise DatasetError(f"{dataset}: no complete shards. Fix: run synth-data into it first.")
    resolved = get_preset(preset or index.preset)
    inputs = PrepareInputs(preset=resolved, cache_dir=cache_dir, dataset_preset=index.preset,
                           dataset_weights=index.weights)
    planned = []
    for source in chosen:
        prepared = source.prepare(inputs) if source.prepare else Prepared(None, {})
        descriptor = _descriptor(source, prepared)
        write_descriptor(dataset, descriptor)
        planned.append(PlannedSource(source, descriptor, prepared.context))
    todo: dict[int, list[str]] = {}
    for p in planned:
        folder = p.descriptor.folder
        for shard in shards_to_write(dataset, shards,
                                     lambda s, f=folder: attributes_url(dataset, f, s)):
            todo.setdefault(shard, []).append(folder)
    return AttributesPlan(dataset=dataset, sources=tuple(planned), shards=shards,
                          todo={s: tuple(f) for s, f in sorted(todo.items())},
                          batch_size=batch_size, makes_faces=resolved.makes_faces,
                          registry=registry or default_registry())


def _vectors(table: pa.Table, name: str) -> np.ndarray:
    """(N, D) float32 of a fixed-size-list manifest column (rows without nulls)."""
    column = table[name].combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), -1)


def _batches(plan_: AttributesPlan, shard: int, sources: Sequence[PlannedSource],
             ok_rows: pa.Table) -> Iterator[AttributeBatch]:
    """The shard's ok samples in index order, `batch_size` at a time, with what `sources` read."""
    vectors = {n: _vectors(ok_rows, n) for p in sources for n in p.source.vectors}
    indices = ok_rows["index"].to_numpy()
    members = sorted({m for p in sources for m in p.source.members})
    size = plan_.batch_size
    if not members:
        for start in range(0, len(indices), size):
            yield AttributeBatch(indices[start:start + size],
                                 {n: v[start:start + size] for n, v in vectors.items()})
        return
    samples = iter_samples(plan_.dataset, members, split_by_node=False, split_by_worker=False,
                           registry=plan_.registry, shards=[shard])
    pending: list[dict] = []
    for sample in samples:
        pending.append(sample)
        if len(pending) == size:
            yield _member_batch(plan_, shard, pending, indices, vectors, members)
            pending = []
    if pending:
        yield _member_batch(plan_, shard, pending, indices, vectors, members)


def _member_batch(plan_: AttributesPlan, shard: int, samples: list[dict], indices: np.ndarray,
                  vectors: dict[str, np.ndarray], members: Sequence[str]) -> AttributeBatch:
    """A batch of decoded tar samples, checked against the manifest's ok rows."""
    import torch

    batch_index = np.array([s["index"] for s in samples], dtype=np.int64)
    rows = np.searchsorted(indices, batch_index)
    if (rows >= len(indices)).any() or not np.array_equal(indices[np.minimum(rows, len(indices) - 1)],
                                                          batch_index):
        raise DatasetError(f"{shard_url(plan_.dataset, shard)}: the tar and the manifest list "
                           "different samples. Fix: rebuild the shard (synth-data --verify).")
    values: dict[str, Any] = {m: torch.stack([s[m] for s in samples]) for m in members}
    values.update({n: v[rows] for n, v in vectors.items()})
    return AttributeBatch(batch_index, values)


def run_shard(plan_: AttributesPlan, shard: int) -> int:
    """Compute and write the planned sources of one shard; return the samples it covers."""
    folders = plan_.todo.get(shard, ())
    sources = [p for p in plan_.sources if p.descriptor.folder in folders]
    if not sources:
        return 0
    tar_sha256 = shard_tar_sha256(plan_.dataset, shard)  # before reading: a rewrite makes it stale
    names = sorted({n for p in sources for n in p.source.vectors})
    manifest = read_manifest(shard_url(plan_.dataset, shard, "parquet"), ["index", "status", *names])
    manifest = manifest.sort_by("index")
    ok = np.array([s == STATUS_OK for s in manifest["status"].to_pylist()], dtype=bool)
    ok_rows = manifest.filter(pa.array(ok))
    parts: dict[str, list[dict[str, np.ndarray]]] = {p.descriptor.folder: [] for p in sources}
    covered = 0
    for batch in _batches(plan_, shard, sources, ok_rows):
        for p in sources:
            parts[p.descriptor.folder].append(dict(p.source.compute(p.context, batch)))
        covered += len(batch.index)
    if covered != int(ok.sum()):
        raise DatasetError(f"{shard_url(plan_.dataset, shard)}: holds {covered} samples, its "
                           f"manifest {int(ok.sum())} ok rows. Fix: rebuild the shard.")
    indices = manifest["index"].to_numpy()
    for p in sources:
        values = {}
        for column in p.source.columns:
            full = np.full(len(indices), np.nan, dtype=np.float32)
            full[ok] = np.concatenate([b[column.name] for b in parts[p.descriptor.folder]]
                                      or [np.zeros(0, np.float32)])
            values[p.source.column_name(column.name)] = full
        write_attribute_shard(plan_.dataset, p.descriptor, shard, indices, values, ok, tar_sha256)
    return len(indices)


def summarize(plan_: AttributesPlan) -> AttributesSummary:
    """The run's summary (call after every shard of the plan ran)."""
    written = sum(len(f) for f in plan_.todo.values())
    return AttributesSummary(dataset=plan_.dataset, folders=plan_.folders(), written=written,
                             skipped=len(plan_.shards) * len(plan_.sources) - written,
                             shards=len(plan_.shards), makes_faces=plan_.makes_faces)


def source_names(text: str | None, registry: AttributeRegistry | None = None) -> tuple[str, ...] | None:
    """'mask,deca' -> ('mask', 'deca'); None or '' = every source."""
    if not text:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        (registry or default_attribute_registry()).get(name)
    return names
