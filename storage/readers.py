"""Read a dataset: decoded samples from the tars, or vectors from the parquet manifests only.

Why `webdataset.DataPipeline` and not `webdataset.WebDataset`: WebDataset (1.x) hard-wires
its URL opener to `webdataset.gopen`, whose scheme table is a module-level dict; supporting
`memory://`/`s3://` would mean mutating that global (or using `pipe:` subprocesses, which
cannot see an in-process `memory://` filesystem). So we build the same stages WebDataset uses
(shard list -> node split -> worker split -> shard shuffle -> open -> tar expander -> group by
key) and open each shard with fsspec instead. Only complete shards (stats file present) are read.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander

from mm2latent.errors import DatasetError
from mm2latent.modalities.registry import default_registry
from mm2latent.modalities.spec import METADATA_EXT, ModalityRegistry
from storage.dataset_index import complete_shards, shard_url
from storage.fs import open_fs
from storage.manifest import STATUS_OK, read_manifest, read_manifest_schema

logger = logging.getLogger(__name__)

METADATA = METADATA_EXT  # the per-sample metadata member, readable like a modality
MODALITIES = (*default_registry().names, METADATA)  # what the default registry can decode


def complete_shard_urls(dataset_url: str, shards: Sequence[int] | None = None) -> list[str]:
    """Tar URLs of the complete shards (or of `shards`), in index order; DatasetError if none."""
    indices = complete_shards(dataset_url) if shards is None else sorted(shards)
    if not indices:
        raise DatasetError(
            f"{dataset_url}: no complete shards (no readable shard-*.stats.json). "
            "Fix: run synth-data into this directory, or re-run it to finish the shards."
        )
    return [shard_url(dataset_url, i, "tar") for i in indices]


def _open_shards(urls: Iterable[dict | str]) -> Iterator[dict]:
    """Pipeline stage: open each shard URL with fsspec, yield {'url', 'stream'}."""
    for item in urls:
        url = item["url"] if isinstance(item, dict) else item
        fs, path = open_fs(url)
        # The tar expander consumes the whole stream before asking for the next shard.
        with fs.open(path, "rb") as stream:
            yield {"url": url, "stream": stream}


def _decode_sample(sample: dict, modalities: Sequence[str], registry: ModalityRegistry) -> dict:
    """Turn a grouped tar sample into {'key', 'index', <modality>: decoded value}."""
    key = sample["__key__"]
    out: dict = {"key": key, "index": int(key)}
    layout = registry.member_exts()
    for modality in modalities:
        ext = next((e for e in layout[modality] if e in sample), None)
        if ext is None:
            raise DatasetError(
                f"{sample.get('__url__')}: sample {key!r} has no {modality!r} member "
                f"(expected one of {layout[modality]}). Fix: rebuild this shard."
            )
        try:
            decode = json.loads if modality == METADATA else registry.get(modality).decode
            out[modality] = decode(sample[ext])
        except (ValueError, OSError) as e:
            raise DatasetError(f"{sample.get('__url__')}: sample {key!r} member {ext!r}: {e}") from e
    return out


def _decode_stage(samples: Iterable[dict], modalities: Sequence[str],
                  registry: ModalityRegistry) -> Iterator[dict]:
    """Pipeline stage: decode each grouped sample (a plain generator, so no '__key__' is re-added)."""
    for sample in samples:
        yield _decode_sample(sample, modalities, registry)


class _DecodeStage:
    """Pipeline stage: decode grouped samples with `registry`.

    A module-level class holding the registry: DataLoader workers started with `spawn` receive
    the pipeline by pickling, and modality specs are written to pickle (no lambdas).
    """

    def __init__(self, modalities: Sequence[str], registry: ModalityRegistry) -> None:
        self.modalities = tuple(modalities)
        self.registry = registry

    def __call__(self, samples: Iterable[dict]) -> Iterator[dict]:
        return _decode_stage(samples, self.modalities, self.registry)


class _MemberSelector:
    """Tar member filter keeping only the extensions of the requested modalities.

    A module-level class, not a closure: DataLoader workers started with `spawn` (the default
    on macOS and Windows) receive the pipeline by pickling, and local functions do not pickle.
    """

    def __init__(self, modalities: Sequence[str], registry: ModalityRegistry) -> None:
        layout = registry.member_exts()
        self.wanted = frozenset(e for m in modalities for e in layout[m])

    def __call__(self, fname: str) -> bool:
        return fname.split("/")[-1].split(".", 1)[-1].lower() in self.wanted


def iter_samples(
    dataset_url: str,
    modalities: Sequence[str] = ("image", "mask", "sketch", "w", "flame", "farl"),
    split_by_node: bool = True,
    split_by_worker: bool = True,
    shuffle: int = 0,
    sample_shuffle: int = 0,
    seed: int = 0,
    registry: ModalityRegistry | None = None,
    shards: Sequence[int] | None = None,
) -> wds.DataPipeline:
    """An iterable of decoded samples from the complete shards (usable in a DataLoader).

    Each sample: key (str), index (int), image float (3,H,W) in [0,1], mask int64 (H,W),
    sketch float (1,H,W) in {0,1}, w/flame/farl float32 1-D, json dict (those requested).

    Args:
        dataset_url: the dataset root.
        modalities: names of `registry` (or 'json') to decode; other members are skipped unread.
        split_by_node: give each distributed rank a disjoint subset of shards.
        split_by_worker: give each DataLoader worker a disjoint subset of its rank's shards.
        shuffle: shard shuffle buffer, in shards; 0 keeps index order.
        sample_shuffle: sample shuffle buffer, in samples; 0 keeps order within shards.
        seed: seed of both shuffles (pass a different one per epoch).
        registry: the modalities and their decoders; None = default_registry().
        shards: read only these shards (a run's snapshot); None = every complete shard now.
    """
    registry = registry or default_registry()
    valid = registry.member_exts()
    unknown = [m for m in modalities if m not in valid]
    if unknown or not modalities:
        raise ValueError(f"unknown modalities {unknown}; valid: {', '.join(valid)}")
    stages: list = [wds.SimpleShardList(complete_shard_urls(dataset_url, shards))]
    if split_by_node:
        stages.append(wds.split_by_node)
    if split_by_worker:
        stages.append(wds.split_by_worker)
    if shuffle > 0:
        stages.append(wds.shuffle(shuffle, initial=shuffle, seed=seed))
    stages += [
        _open_shards,
        functools.partial(tar_file_expander, select_files=_MemberSelector(modalities, registry)),
        group_by_keys,
        _DecodeStage(modalities, registry),
    ]
    if sample_shuffle > 0:
        stages.append(wds.shuffle(sample_shuffle, initial=sample_shuffle, seed=seed + 1))
    return wds.DataPipeline(*stages)


def read_vectors_table(dataset_url: str, columns: Sequence[str] = ("w", "farl"),
                       shards: Sequence[int] | None = None) -> pa.Table:
    """Manifest rows with status 'ok' of all complete shards, in index order.

    Args:
        dataset_url: the dataset root.
        columns: manifest columns to return besides 'index' and 'key'.
        shards: read only these shards (a run's snapshot); None = every complete shard now.
    """
    indices = complete_shards(dataset_url) if shards is None else sorted(shards)
    if not indices:
        complete_shard_urls(dataset_url)  # raises the "no complete shards" DatasetError
    wanted = ["index", "key", *[c for c in columns if c not in ("index", "key")]]
    first = read_manifest_schema(shard_url(dataset_url, indices[0], "parquet"))
    missing = [c for c in wanted if c not in first.names]
    if missing:
        raise DatasetError(f"{dataset_url}: manifest has no column(s) {missing}; available: {first.names}")
    tables = []
    for i in indices:
        table = read_manifest(shard_url(dataset_url, i, "parquet"), columns=[*wanted, "status"])
        tables.append(table.filter(pc.equal(table["status"], STATUS_OK)).select(wanted))
    return pa.concat_tables(tables).sort_by("index")


def read_vectors(dataset_url: str, columns: Sequence[str] = ("w", "farl"),
                 shards: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Columns of the 'ok' manifest rows as numpy: vectors (N, D) float32, scalars (N,).

    Reads parquet only; the tars are never opened. Always includes 'index' (N,) int64.

    Args:
        dataset_url: the dataset root.
        columns: manifest columns, e.g. ('w', 'farl') or ('w', 'flame', 'seed').
        shards: read only these shards (a run's snapshot); None = every complete shard now.
    """
    table = read_vectors_table(dataset_url, columns, shards)
    out: dict[str, np.ndarray] = {}
    for name in ["index", *columns]:
        column = table[name].combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            dim = column.type.list_size
            values = column.flatten().to_numpy(zero_copy_only=False)  # (N * D,)
            out[name] = values.astype(np.float32, copy=False).reshape(len(column), dim)  # (N, D)
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out
