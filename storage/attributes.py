"""Per-sample attributes stored beside a dataset, one folder per producer.

Layout:
    <dataset>/attributes/<source>-<digest12>/attributes.json          descriptor (written first)
    <dataset>/attributes/<source>-<digest12>/shard-NNNNNN.parquet     one per dataset shard
Each parquet holds one row per sample of the dataset shard with the same number (failed
samples included, their values null), sorted by `index`: column `index` (int64) then one
float32 column per attribute named `<source>.<attribute>` (e.g. `mask.eyeglasses`). The file's
atomic rename is the shard's completion marker; its schema metadata records the digest of the
shard tar it came from (storage.derived), so a rewritten shard's attributes are recognised as
stale. `<digest12>` names what produced the values (source, version, weights, prompts...), so
two producers never share a folder: a rerun with the same producer resumes, another producer
gets its own folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from mm2latent_core.errors import ConfigError, DatasetError
from storage.atomic import atomic_write_bytes
from storage.dataset_index import complete_shards, shard_name
from storage.derived import read_derived_table, write_derived_table
from storage.fs import join, list_names, open_fs, read_file

ATTRIBUTES_DIR = "attributes"
DESCRIPTOR_FILE = "attributes.json"
INDEX = "index"
PRODUCER_KEY = b"mm2latent.attributes_folder"  # schema metadata: the folder that wrote the file
FIX = "Fix: rerun `mm2latent dataset attributes DATASET` (it recomputes missing and stale shards)."


class AttributeColumnInfo(BaseModel):
    """One stored attribute: its column name, unit and meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str         # column name, `<source>.<attribute>`
    unit: str         # e.g. "share of image pixels", "degrees", "probability"
    description: str  # what the number measures and how


class AttributeDescriptor(BaseModel):
    """Contents of `attributes.json`: what produced a folder of attributes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str                          # attribute source name, e.g. "mask"
    version: str                         # the source's version string
    digest: str                          # full sha256 of `producer` (first 12 hex name the folder)
    description: str                     # what the source computes
    columns: list[AttributeColumnInfo]   # in column order
    producer: dict[str, Any]             # everything the values depend on (hashed into digest)

    @property
    def folder(self) -> str:
        """The folder name `<source>-<digest12>`."""
        return folder_name(self.source, self.digest)


def folder_name(source: str, digest: str) -> str:
    """`<source>-<first 12 hex of digest>`."""
    return f"{source}-{digest[:12]}"


def attributes_url(dataset_url: str, folder: str | None = None, shard: int | None = None) -> str:
    """URL of `<dataset>/attributes`, of one producer's folder, or of one shard's parquet in it."""
    root = join(dataset_url, ATTRIBUTES_DIR)
    if folder is None:
        return root
    root = join(root, folder)
    return root if shard is None else join(root, shard_name(shard, "parquet"))


def write_descriptor(dataset_url: str, descriptor: AttributeDescriptor) -> None:
    """Write a folder's descriptor atomically; DatasetError if a different one is already there."""
    url = join(attributes_url(dataset_url, descriptor.folder), DESCRIPTOR_FILE)
    fs, path = open_fs(url)
    if fs.exists(path):
        existing = read_descriptor(dataset_url, descriptor.folder)
        # Compared as stored: JSON turns the producer's tuples into lists.
        if json.loads(existing.model_dump_json()) != json.loads(descriptor.model_dump_json()):
            raise DatasetError(f"{url}: describes another producer than this run (its digest "
                               f"{existing.digest[:12]} vs {descriptor.digest[:12]}). Fix: delete "
                               f"{attributes_url(dataset_url, descriptor.folder)} and rerun "
                               "`mm2latent dataset attributes`.")
        return
    text = json.dumps(descriptor.model_dump(), indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(url, text.encode())


def read_descriptor(dataset_url: str, folder: str) -> AttributeDescriptor:
    """The descriptor of one attributes folder; DatasetError if missing or malformed."""
    url = join(attributes_url(dataset_url, folder), DESCRIPTOR_FILE)
    try:
        text = read_file(url)
    except FileNotFoundError as e:
        raise DatasetError(f"{url}: missing; {folder} is not an attributes folder. {FIX}") from e
    try:
        return AttributeDescriptor.model_validate_json(text)
    except (ValidationError, ValueError) as e:
        raise DatasetError(f"{url}: malformed attributes descriptor ({e}). {FIX}") from e


def attribute_dirs(dataset_url: str) -> list[str]:
    """Names of the attributes folders (those with a descriptor) of a dataset, sorted."""
    root = attributes_url(dataset_url)
    return [name for name in list_names(root)
            if DESCRIPTOR_FILE in list_names(join(root, name))]


def write_attribute_shard(dataset_url: str, descriptor: AttributeDescriptor, shard: int,
                          indices: np.ndarray, values: Mapping[str, np.ndarray], ok: np.ndarray,
                          source_sha256: str) -> str:
    """Write one shard's attributes parquet atomically; return its URL.

    Args:
        dataset_url: the dataset root.
        descriptor: the producer (names the folder and fixes the column order).
        shard: dataset shard index (names the file).
        indices: (N,) int64 sample indices of every row of the shard's manifest, ascending.
        values: column name -> (N,) float values (rows where `ok` is False are ignored).
        ok: (N,) bool, False for failed samples: their values are stored as nulls.
        source_sha256: digest of the shard tar the values were computed from.
    """
    names = [c.name for c in descriptor.columns]
    if sorted(values) != sorted(names):
        raise ValueError(f"attribute columns {sorted(values)} differ from the descriptor's {names}")
    missing = ~np.asarray(ok, dtype=bool)
    arrays = {INDEX: pa.array(np.asarray(indices, dtype=np.int64), pa.int64())}
    for name in names:
        arrays[name] = pa.array(np.asarray(values[name], dtype=np.float32), pa.float32(), mask=missing)
    url = attributes_url(dataset_url, descriptor.folder, shard)
    write_derived_table(url, pa.table(arrays), source_sha256,
                        {PRODUCER_KEY: descriptor.folder.encode()})
    return url


def read_attribute_shard(dataset_url: str, folder: str, shard: int) -> pa.Table:
    """One shard's attributes of one folder; DatasetError (one line + fix) if missing, damaged,
    stale or written by another folder's producer."""
    url = attributes_url(dataset_url, folder, shard)
    table = read_derived_table(url, dataset_url, shard, FIX)
    producer = (table.schema.metadata or {}).get(PRODUCER_KEY, b"").decode()
    if producer != folder or INDEX not in table.column_names:
        raise DatasetError(f"{url}: damaged (written for {producer or 'no'} folder, expected "
                           f"{folder}). {FIX}")
    return table


class SourceNames(Protocol):
    """What the reader needs of an attribute registry: the names of its sources."""

    @property
    def names(self) -> tuple[str, ...]: ...


def resolve_folders(dataset_url: str, sources: Sequence[str] | None = None,
                    registry: SourceNames | None = None) -> list[str]:
    """The attributes folders to read: every one (None), or one per source name or folder name.

    Raises:
        ConfigError: a name that is not a source of `registry`, or a source with no folder or
            with several (then the folder must be named).
    """
    folders = attribute_dirs(dataset_url)
    wanted = list(folders) if sources is None else list(sources)
    chosen = []
    for name in wanted:
        if name in folders:
            chosen.append(name)
            continue
        if registry is not None and name not in registry.names:
            raise ConfigError(f"unknown attribute source {name!r}; known: "
                              f"{', '.join(registry.names)} (or a folder: {', '.join(folders) or 'none'}).")
        matches = [f for f in folders if read_descriptor(dataset_url, f).source == name]
        if not matches:
            raise DatasetError(f"{attributes_url(dataset_url)}: no {name!r} attributes. Fix: run "
                               f"`mm2latent dataset attributes {dataset_url} --sources {name}`.")
        if len(matches) > 1:
            raise ConfigError(f"{name!r} has several attributes folders ({', '.join(matches)}); "
                              "name the folder instead of the source.")
        chosen.append(matches[0])
    if not chosen:
        raise DatasetError(f"{attributes_url(dataset_url)}: no attributes. Fix: run "
                           f"`mm2latent dataset attributes {dataset_url}`.")
    return chosen


def _joined(dataset_url: str, folders: Sequence[str], shard: int) -> pa.Table:
    """One shard's `index` plus every folder's columns (all folders list the same rows)."""
    table = None
    for folder in folders:
        part = read_attribute_shard(dataset_url, folder, shard)
        if table is None:
            table = part.select([INDEX, *[c for c in part.column_names if c != INDEX]])
            continue
        if not part[INDEX].equals(table[INDEX]):
            raise DatasetError(f"{attributes_url(dataset_url, folder, shard)}: lists other samples "
                               f"than {folders[0]} for shard {shard}. {FIX}")
        for name in part.column_names:
            if name == INDEX:
                continue
            if name in table.column_names:
                raise ConfigError(f"column {name!r} is in two chosen attributes folders; choose "
                                  "one folder per source.")
            table = table.append_column(part.schema.field(name), part[name])
    return table.replace_schema_metadata(None)


def iter_attribute_shards(dataset_url: str, sources: Sequence[str] | None = None,
                          registry: SourceNames | None = None,
                          shards: Sequence[int] | None = None) -> Iterator[tuple[int, pa.Table]]:
    """(shard, table) per complete dataset shard, in shard order: `index` plus the columns of
    every chosen source, joined on `index`. Reads one shard at a time (memory bounded by a shard).

    Args:
        dataset_url: the dataset root.
        sources: source names (e.g. "mask") or folder names; None = every attributes folder.
        registry: the attribute sources, to name the valid ones in errors; None = no check.
        shards: these dataset shards only; None = every complete shard.

    Raises:
        DatasetError: a shard's file is missing, damaged or stale (one line with the fix).
        ConfigError: an unknown or ambiguous source name.
    """
    folders = resolve_folders(dataset_url, sources, registry)
    for shard in complete_shards(dataset_url) if shards is None else shards:
        yield shard, _joined(dataset_url, folders, shard)
