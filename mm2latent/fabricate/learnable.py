"""Fabricate small datasets the training code can learn: shape masks, their outlines, and w
vectors that are a fixed smooth function of the FaRL-like and FLAME-like vectors (tests and
benchmarks)."""

from __future__ import annotations

import numpy as np

from mm2latent.fabricate.datasets import LAYOUT, make_index, png_bytes
from storage.dataset_index import ShardStats, commit_shard, prepare_output, shard_url
from storage.manifest import ok_row
from storage.shard_writer import TarShardWriter, encode_npy, sample_key

DIMS = {"w": 16, "flame": 159, "farl": 16}  # small vectors; flame keeps the dataset's width
SIZE = 64  # mask / sketch side, as the tiny preset's store_size


def shape_maps(index: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(mask ids (H, W) uint8, sketch 0/255 (H, W)): a class-1 square holding a class-2 square."""
    rng = np.random.default_rng(1000 + index)
    mask = np.zeros((size, size), np.uint8)
    side = int(rng.integers(size // 3, size // 2))
    y, x = rng.integers(0, size - side, 2)
    mask[y:y + side, x:x + side] = 1
    mask[y + side // 4:y + side // 2, x + side // 4:x + side // 2] = 2
    sketch = np.zeros((size, size), np.uint8)
    sketch[y:y + side, x:x + side] = 255
    sketch[y + 4:y + side - 4, x + 4:x + side - 4] = 0  # keep a 4-px outline
    return mask, sketch


def learnable_vectors(index: int, dims: dict[str, int] = DIMS) -> dict[str, np.ndarray]:
    """farl (unit), flame = z P (an 8-d latent z spread over every flame column) and
    w = 2 tanh(farl M_f + z M_z / 2) with fixed matrices: a smooth map a small MLP can fit."""
    rng = np.random.default_rng(index)
    fixed = np.random.default_rng(12345)
    m_f = fixed.standard_normal((dims["farl"], dims["w"]))
    m_z = fixed.standard_normal((8, dims["w"])) * 0.5
    farl = rng.standard_normal(dims["farl"])
    farl /= np.linalg.norm(farl)
    z = rng.standard_normal(8) if "flame" in dims else np.zeros(8)
    out = {"farl": farl.astype(np.float32),
           "w": (2.0 * np.tanh(farl @ m_f + z @ m_z)).astype(np.float32)}
    if "flame" in dims:
        spread = fixed.standard_normal((8, dims["flame"])) / np.sqrt(8)
        out["flame"] = (z @ spread).astype(np.float32)
    return out


def write_learnable_shard(url: str, shard: int, indices: list[int], dims: dict[str, int] = DIMS,
                          members: tuple[str, ...] = ("mask", "sketch")) -> ShardStats:
    """One complete shard (tar, parquet, stats) of learnable samples."""
    written = []
    with TarShardWriter(shard_url(url, shard, "tar")) as writer:
        for index in indices:
            mask, sketch = shape_maps(index)
            vectors = learnable_vectors(index, dims)
            sample = {"png": png_bytes(np.zeros((8, 8, 3), np.uint8))}
            if "mask" in members:
                sample["mask.png"] = png_bytes(mask)
            if "sketch" in members:
                sample["sketch.png"] = png_bytes(sketch)
            sample.update({f"{k}.npy": encode_npy(v) for k, v in vectors.items()})
            writer.write(sample, sample_key(index))
            written.append((sample_key(index), index, vectors))
    result = writer.close()
    rows = [ok_row(key=k, index=i, shard=shard, seed=i, members=result.members[k], vectors=v,
                   layout=LAYOUT) for k, i, v in written]
    return commit_shard(url, shard, result, rows, {"generate": 0.1}, dims, LAYOUT)


def write_learnable_dataset(url: str, n_shards: int = 2, per_shard: int = 16,
                            dims: dict[str, int] = DIMS, members: tuple[str, ...] = ("mask", "sketch"),
                            planned_shards: int | None = None) -> None:
    """A dataset of n_shards complete shards (of planned_shards, default n_shards)."""
    planned = planned_shards or n_shards
    prepare_output(url, make_index(planned * per_shard, per_shard, dims))
    for shard in range(n_shards):
        write_learnable_shard(url, shard, list(range(shard * per_shard, (shard + 1) * per_shard)),
                              dims, members)
