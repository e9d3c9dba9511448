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
import io
import json
import logging
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import webdataset as wds
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_expander

from mm2latent.errors import DatasetError
from storage.dataset_index import complete_shards, shard_url
from storage.fs import open_fs
from storage.manifest import STATUS_OK, read_manifest, read_manifest_schema

logger = logging.getLogger(__name__)

MODALITIES = ("image", "mask", "sketch", "w", "flame", "farl", "json")
_MODALITY_EXTS = {
    "image": ("jpg", "png"),
    "mask": ("mask.png",),
    "sketch": ("sketch.png",),
    "w": ("w.npy",),
    "flame": ("flame.npy",),
    "farl": ("farl.npy",),
    "json": ("json",),
}


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


def _decode_png(data: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode))


def _decode_member(modality: str, data: bytes) -> object:
    """Decode one member's bytes to the tensor (or dict) of that modality."""
    if modality == "image":
        rgb = _decode_png(data, "RGB")  # (H, W, 3) uint8
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
    if modality == "mask":
        with Image.open(io.BytesIO(data)) as im:
            if im.mode not in ("L", "P"):  # converting RGB to L would blend label values
                raise ValueError(f"mask must be a single-channel PNG, found mode {im.mode}")
            labels = np.asarray(im)  # (H, W) uint8 label ids
        return torch.from_numpy(labels.astype(np.int64))  # (H, W)
    if modality == "sketch":
        lines = _decode_png(data, "L") >= 128  # (H, W) bool; stored as 0/255
        return torch.from_numpy(lines).float().unsqueeze(0)  # (1, H, W)
    if modality == "json":
        return json.loads(data)
    return torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32))


def _decode_sample(sample: dict, modalities: Sequence[str]) -> dict:
    """Turn a grouped tar sample into {'key', 'index', <modality>: decoded value}."""
    key = sample["__key__"]
    out: dict = {"key": key, "index": int(key)}
    for modality in modalities:
        ext = next((e for e in _MODALITY_EXTS[modality] if e in sample), None)
        if ext is None:
            raise DatasetError(
                f"{sample.get('__url__')}: sample {key!r} has no {modality!r} member "
                f"(expected one of {_MODALITY_EXTS[modality]}). Fix: rebuild this shard."
            )
        try:
            out[modality] = _decode_member(modality, sample[ext])
        except (ValueError, OSError) as e:
            raise DatasetError(f"{sample.get('__url__')}: sample {key!r} member {ext!r}: {e}") from e
    return out


def _decode_stage(samples: Iterable[dict], modalities: Sequence[str]) -> Iterator[dict]:
    """Pipeline stage: decode each grouped sample (a plain generator, so no '__key__' is re-added)."""
    for sample in samples:
        yield _decode_sample(sample, modalities)


def _selector(modalities: Sequence[str]):
    """A tar member filter keeping only the extensions of the requested modalities."""
    wanted = {e for m in modalities for e in _MODALITY_EXTS[m]}

    def keep(fname: str) -> bool:
        return fname.split("/")[-1].split(".", 1)[-1].lower() in wanted

    return keep


def iter_samples(
    dataset_url: str,
    modalities: Sequence[str] = ("image", "mask", "sketch", "w", "flame", "farl"),
    split_by_node: bool = True,
    split_by_worker: bool = True,
    shuffle: int = 0,
    sample_shuffle: int = 0,
    seed: int = 0,
    shards: Sequence[int] | None = None,
) -> wds.DataPipeline:
    """An iterable of decoded samples from the complete shards (usable in a DataLoader).

    Each sample: key (str), index (int), image float (3,H,W) in [0,1], mask int64 (H,W),
    sketch float (1,H,W) in {0,1}, w/flame/farl float32 1-D, json dict (those requested).

    Args:
        dataset_url: the dataset root.
        modalities: subset of MODALITIES to decode; other members are skipped unread.
        split_by_node: give each distributed rank a disjoint subset of shards.
        split_by_worker: give each DataLoader worker a disjoint subset of its rank's shards.
        shuffle: shard shuffle buffer, in shards; 0 keeps index order.
        sample_shuffle: sample shuffle buffer, in samples; 0 keeps order within shards.
        seed: seed of both shuffles (pass a different one per epoch).
        shards: read only these shards (a run's snapshot); None = every complete shard now.
    """
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"unknown modalities {unknown}; valid: {', '.join(MODALITIES)}")
    stages: list = [wds.SimpleShardList(complete_shard_urls(dataset_url, shards))]
    if split_by_node:
        stages.append(wds.split_by_node)
    if split_by_worker:
        stages.append(wds.split_by_worker)
    if shuffle > 0:
        stages.append(wds.shuffle(shuffle, initial=shuffle, seed=seed))
    stages += [
        _open_shards,
        functools.partial(tar_file_expander, select_files=_selector(modalities)),
        group_by_keys,
        functools.partial(_decode_stage, modalities=tuple(modalities)),
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
