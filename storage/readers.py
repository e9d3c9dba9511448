"""Read a dataset: decoded samples from the tars, or vectors from the parquet manifests only.

Why `webdataset.DataPipeline` and not `webdataset.WebDataset`: WebDataset (1.x) hard-wires
its URL opener to `webdataset.gopen`, whose scheme table is a module-level dict; supporting
`memory://`/`s3://` would mean mutating that global (or using `pipe:` subprocesses, which
cannot see an in-process `memory://` filesystem). So we build the same stages WebDataset uses
(shard list -> node split -> worker split -> shard shuffle -> open -> tar expander -> group by
key) and open each shard with fsspec instead. Only complete shards (stats file present) are read.

Every reader here runs storage/shard_check.py first: `readable_shards` (dataset.json, stats
files, sizes; no shard bytes) when it starts, and `check_shard_files` (sha256) on each tar or
parquet right before reading it, so a partial read (the first 8 samples of a grid) hashes
only the shards it opens. A caller that has just hashed the files itself passes check=False.
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

from mm2latent_core.errors import DatasetError
from mm2latent_core.modalities.spec import METADATA_EXT, ModalityRegistry
from storage.dataset_index import shard_url
from storage.fs import open_fs
from storage.manifest import STATUS_OK, read_manifest, read_manifest_schema
from storage.shard_check import REPAIR_FIX, check_shard_files, readable_shards

logger = logging.getLogger(__name__)

METADATA = METADATA_EXT  # the per-sample metadata member, readable like a modality


def _no_shards(dataset_url: str) -> DatasetError:
    return DatasetError(
        f"{dataset_url}: no complete shards (no shard-*.stats.json). "
        "Fix: run synth-data into this directory, or re-run it to finish the shards.")


def complete_shard_urls(dataset_url: str, shards: Sequence[int] | None = None) -> list[str]:
    """Tar URLs of the complete shards (or of `shards`), in index order, after
    `readable_shards`' checks; DatasetError if there are none."""
    indices = readable_shards(dataset_url, shards)
    if not indices:
        raise _no_shards(dataset_url)
    return [shard_url(dataset_url, i, "tar") for i in indices]


def _shard_index(url: str) -> int:
    """5 for '.../shard-000005.tar'."""
    return int(url.rsplit("/", 1)[-1][len("shard-"):].split(".", 1)[0])


class _ShardOpener:
    """Pipeline stage: open each shard URL with fsspec (sha256-checked first), yield {'url', 'stream'}.

    A module-level class, not a closure, so that spawned DataLoader workers can unpickle it.
    """

    def __init__(self, dataset_url: str, check: bool) -> None:
        self.dataset_url = dataset_url
        self.check = check

    def __call__(self, urls: Iterable[dict | str]) -> Iterator[dict]:
        for item in urls:
            url = item["url"] if isinstance(item, dict) else item
            if self.check:  # here, not up front: a partial read hashes only what it opens
                check_shard_files(self.dataset_url, [_shard_index(url)], ("tar",))
            fs, path = open_fs(url)
            # The tar expander consumes the whole stream before asking for the next shard.
            with fs.open(path, "rb") as stream:
                yield {"url": url, "stream": stream}


def _tar_error(error: Exception) -> bool:
    """Tar expander handler: a tar that cannot be parsed becomes a DatasetError naming it.

    webdataset appends (stream, url) to the exception's args before calling the handler.
    """
    url = error.args[-1] if len(error.args) >= 2 and isinstance(error.args[-1], str) else "a shard"
    raise DatasetError(f"{url}: unreadable tar ({error.args[0] if error.args else error}). "
                       f"{REPAIR_FIX}") from error


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
    modalities: Sequence[str] | None = None,
    split_by_node: bool = True,
    split_by_worker: bool = True,
    shuffle: int = 0,
    sample_shuffle: int = 0,
    seed: int = 0,
    *,
    registry: ModalityRegistry,
    shards: Sequence[int] | None = None,
    check: bool = True,
) -> wds.DataPipeline:
    """An iterable of decoded samples from the complete shards (usable in a DataLoader).

    Each sample: key (str), index (int), image float (3,H,W) in [0,1], mask int64 (H,W),
    sketch float (1,H,W) in {0,1}, w/flame/farl float32 1-D, json dict (those requested).

    Args:
        dataset_url: the dataset root.
        modalities: names of `registry` (or 'json') to decode; other members are skipped unread.
            None = every modality of `registry`.
        split_by_node: give each distributed rank a disjoint subset of shards.
        split_by_worker: give each DataLoader worker a disjoint subset of its rank's shards.
        shuffle: shard shuffle buffer, in shards; 0 keeps index order.
        sample_shuffle: sample shuffle buffer, in samples; 0 keeps order within shards.
        seed: seed of both shuffles (pass a different one per epoch).
        registry: the modalities and their decoders (the library's default_registry(), or a
            caller's own); storage names no modality itself.
        shards: read only these shards (a run's snapshot); None = every complete shard now.
        check: sha256-check each tar right before opening it; False only when the caller has
            just hashed them itself (training's up-front check).
    """
    modalities = registry.names if modalities is None else modalities
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
        _ShardOpener(dataset_url, check),
        functools.partial(tar_file_expander, handler=_tar_error,
                          select_files=_MemberSelector(modalities, registry)),
        group_by_keys,
        _DecodeStage(modalities, registry),
    ]
    if sample_shuffle > 0:
        stages.append(wds.shuffle(sample_shuffle, initial=sample_shuffle, seed=seed + 1))
    return wds.DataPipeline(*stages)


def read_shard_manifest(dataset_url: str, shard: int, columns: Sequence[str] | None = None,
                        check: bool = True) -> pa.Table:
    """One complete shard's manifest (optionally only `columns`), sha256-checked first unless
    `check` is False (the caller hashed it already). Call readable_shards before."""
    if check:
        check_shard_files(dataset_url, [shard], ("parquet",))
    return read_manifest(shard_url(dataset_url, shard, "parquet"), columns=columns)


def read_vectors_table(dataset_url: str, columns: Sequence[str] = ("w", "farl"),
                       shards: Sequence[int] | None = None, check: bool = True) -> pa.Table:
    """Manifest rows with status 'ok' of all complete shards, in index order.

    Args:
        dataset_url: the dataset root.
        columns: manifest columns to return besides 'index' and 'key'.
        shards: read only these shards (a run's snapshot); None = every complete shard now.
        check: sha256-check each parquet before reading it (False: the caller just did).
    """
    indices = readable_shards(dataset_url, shards)
    if not indices:
        raise _no_shards(dataset_url)
    wanted = ["index", "key", *[c for c in columns if c not in ("index", "key")]]
    if check:  # before its footer is read below; the loop then skips re-hashing it
        check_shard_files(dataset_url, indices[:1], ("parquet",))
    first = read_manifest_schema(shard_url(dataset_url, indices[0], "parquet"))
    missing = [c for c in wanted if c not in first.names]
    if missing:
        raise DatasetError(f"{dataset_url}: manifest has no column(s) {missing}; available: {first.names}")
    tables = []
    for i in indices:
        table = read_shard_manifest(dataset_url, i, [*wanted, "status"], check and i != indices[0])
        tables.append(table.filter(pc.equal(table["status"], STATUS_OK)).select(wanted))
    return pa.concat_tables(tables).sort_by("index")


def read_vectors(dataset_url: str, columns: Sequence[str] = ("w", "farl"),
                 shards: Sequence[int] | None = None, check: bool = True) -> dict[str, np.ndarray]:
    """Columns of the 'ok' manifest rows as numpy: vectors (N, D) float32, scalars (N,).

    Reads parquet only; the tars are never opened. Always includes 'index' (N,) int64.

    Args:
        dataset_url: the dataset root.
        columns: manifest columns, e.g. ('w', 'farl') or ('w', 'flame', 'seed').
        shards: read only these shards (a run's snapshot); None = every complete shard now.
        check: sha256-check each parquet before reading it (False: the caller just did).
    """
    table = read_vectors_table(dataset_url, columns, shards, check)
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
