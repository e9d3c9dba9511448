"""Per-sample captions stored beside a dataset, one folder per producer.

Layout: `<dataset>/captions/<digest12>/captions.json` (descriptor: template version, seed, the
attributes folders read) and `shard-NNNNNN.parquet` per dataset shard: `index` (int64),
`caption` (string, null for failed samples) and `template_version` (string). Bound to the
dataset shard's tar like every derived file (storage.derived).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from mm2latent_core.errors import DatasetError
from storage.atomic import atomic_write_bytes
from storage.dataset_index import shard_name
from storage.derived import read_derived_table, write_derived_table
from storage.fs import join, list_names, open_fs, read_file

CAPTIONS_DIR = "captions"
DESCRIPTOR_FILE = "captions.json"
FIX = "Fix: rerun `mm2latent dataset captions DATASET` (it rewrites missing and stale shards)."


def captions_url(dataset_url: str, folder: str | None = None, shard: int | None = None) -> str:
    """URL of `<dataset>/captions`, of one producer's folder, or of one shard's parquet in it."""
    root = join(dataset_url, CAPTIONS_DIR)
    if folder is None:
        return root
    root = join(root, folder)
    return root if shard is None else join(root, shard_name(shard, "parquet"))


def write_captions_descriptor(dataset_url: str, folder: str, descriptor: dict[str, Any]) -> None:
    """Write a folder's descriptor once; DatasetError if a different one is already there."""
    url = join(captions_url(dataset_url, folder), DESCRIPTOR_FILE)
    fs, path = open_fs(url)
    if fs.exists(path):
        if json.loads(read_file(url)) != descriptor:
            raise DatasetError(f"{url}: describes other captions than this run. Fix: delete "
                               f"{captions_url(dataset_url, folder)} and rerun.")
        return
    atomic_write_bytes(url, (json.dumps(descriptor, indent=2, sort_keys=True) + "\n").encode())


def caption_dirs(dataset_url: str) -> list[str]:
    """Names of the caption folders (those with a descriptor) of a dataset, sorted."""
    root = captions_url(dataset_url)
    return [n for n in list_names(root) if DESCRIPTOR_FILE in list_names(join(root, n))]


def write_caption_shard(dataset_url: str, folder: str, shard: int, indices: np.ndarray,
                        captions: list[str | None], template_version: str, source_sha256: str) -> str:
    """Write one shard's captions atomically (None for failed samples); return its URL."""
    table = pa.table({"index": pa.array(np.asarray(indices, dtype=np.int64), pa.int64()),
                      "caption": pa.array(captions, pa.string()),
                      "template_version": pa.array([template_version] * len(captions), pa.string())})
    url = captions_url(dataset_url, folder, shard)
    write_derived_table(url, table, source_sha256)
    return url


def read_caption_shard(dataset_url: str, folder: str, shard: int) -> pa.Table:
    """One shard's captions; DatasetError (one line + fix) if missing, damaged or stale."""
    return read_derived_table(captions_url(dataset_url, folder, shard), dataset_url, shard, FIX)
