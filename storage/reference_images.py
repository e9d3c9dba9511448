"""The CMMD reference image set (a folder / fsspec URL of images, or a synth-data dataset) and
its cached embeddings.

Embeddings are cached as parquet named by a digest of the file list (names, sizes, mtimes; for
a dataset, its complete shards' stats) and the embedding model, so a second run over the same
70 000 FFHQ images reads one file instead of re-embedding them.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mm2latent_core.errors import DatasetError
from mm2latent_core.modalities.spec import ModalityRegistry
from storage.atomic import atomic_write_bytes
from storage.dataset_index import read_shard_stats
from storage.fs import join, open_fs
from storage.readers import iter_samples
from storage.shard_check import readable_shards

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
DATASET_FILE = "dataset.json"  # marks a synth-data dataset root


@dataclass(frozen=True)
class ReferenceSet:
    """What a reference URL holds: a sorted image list, or a synth-data dataset."""

    url: str
    kind: str  # "folder" or "dataset"
    names: tuple[str, ...]  # folder: paths inside the filesystem; dataset: complete shard ids
    digest: str  # sha256 of the file list (or shard stats): the content part of the cache key

    def __len__(self) -> int:
        return len(self.names)


def _mtime(info: dict) -> str:
    return str(info.get("mtime") or info.get("LastModified") or info.get("created") or "")


def scan_reference(url: str, limit: int | None = None) -> ReferenceSet:
    """List a reference folder (its images, sorted; the first `limit`) or a synth-data dataset.

    A dataset gets every reader's checks (storage/shard_check.py): dataset.json, stats files and
    sizes here, the sha256 of each tar when iter_reference_images opens it.
    """
    fs, root = open_fs(url)
    if fs.isfile(posixpath.join(root, DATASET_FILE)):
        shards = readable_shards(url)
        stats = [read_shard_stats(url, i).model_dump_json() for i in shards]  # digests inside
        digest = hashlib.sha256("\n".join(stats).encode()).hexdigest()
        if not shards:
            raise DatasetError(f"{url}: a synth-data dataset without complete shards; finish it "
                               "with `mm2latent synth-data` or pass another --reference.")
        return ReferenceSet(url, "dataset", tuple(map(str, shards)), digest)
    if not fs.isdir(root):
        raise DatasetError(f"{url}: no such folder. Fix: --reference takes a folder (or fsspec "
                           "URL) of images, e.g. FFHQ's images1024x1024, or a synth-data dataset.")
    found = {p: i for p, i in fs.find(root, detail=True).items()
             if p.lower().endswith(IMAGE_EXTENSIONS)}
    names = sorted(found)[:limit] if limit else sorted(found)
    if not names:
        raise DatasetError(f"{url}: holds no {'/'.join(IMAGE_EXTENSIONS)} images to compare "
                           "against. Fix: point --reference at a folder of images.")
    lines = [f"{posixpath.relpath(p, root)}\t{found[p].get('size')}\t{_mtime(found[p])}"
             for p in names]
    return ReferenceSet(url, "folder", tuple(names),
                        hashlib.sha256("\n".join(lines).encode()).hexdigest())


def iter_reference_images(ref: ReferenceSet, registry: ModalityRegistry,
                          limit: int | None = None) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB images of the set, in its listed order (at most `limit`).

    `registry` decodes a dataset's image member (the library's default_registry()).
    """
    if ref.kind == "dataset":
        samples = iter_samples(ref.url, ("image",), split_by_node=False, split_by_worker=False,
                               registry=registry)
        for count, sample in enumerate(samples):
            if limit and count >= limit:
                return
            yield (sample["image"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        return
    fs, _ = open_fs(ref.url)
    for path in ref.names:
        try:
            with Image.open(io.BytesIO(fs.cat_file(path))) as image:
                yield np.asarray(image.convert("RGB"))
        except OSError as e:
            raise DatasetError(f"{path}: not a readable image ({e}); remove it from the "
                               "reference folder.") from e


def embedding_cache_url(cache_url: str, ref: ReferenceSet, model_id: str) -> str:
    """Where the embeddings of `ref` by model `model_id` are cached."""
    key = hashlib.sha256(f"{ref.digest}\n{model_id}".encode()).hexdigest()[:24]
    return join(cache_url, f"{key}.parquet")


def read_cached_embeddings(url: str) -> tuple[np.ndarray, dict] | None:
    """(N, D) float32 embeddings and the metadata dict, or None when not cached."""
    fs, path = open_fs(url)
    if not fs.exists(path):
        return None
    table = pq.read_table(io.BytesIO(fs.cat_file(path)))
    meta = json.loads(table.schema.metadata[b"mm2latent"])
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, dim), meta


def write_cached_embeddings(url: str, embeddings: np.ndarray, meta: dict) -> None:
    """Write the (N, D) embeddings with `meta` (model, sigma, kernel sum) atomically."""
    n, dim = embeddings.shape
    values = pa.array(np.ascontiguousarray(embeddings, np.float32).reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(values, dim)
    table = pa.table({"row": pa.array(np.arange(n)), "embedding": column})
    table = table.replace_schema_metadata({"mm2latent": json.dumps(meta, sort_keys=True)})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    atomic_write_bytes(url, buffer.getvalue())
