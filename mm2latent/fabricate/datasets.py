"""Fabricated synth-data datasets (random samples, the current on-disk layout), for tests and benchmarks."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mm2latent.modalities.registry import default_registry
from storage.dataset_index import DatasetIndex, ShardStats, commit_shard, prepare_output, shard_url
from storage.manifest import failed_row, ok_row
from storage.shard_writer import TarShardWriter, encode_json, encode_npy, sample_key

TINY_DIMS = {"w": 16, "flame": 159, "farl": 8}
LAYOUT = default_registry().member_exts()  # manifest member columns of the project's modalities


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) or (H, W, 3) array (PIL, as the fabricated datasets always were)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def make_sample(index: int, size: int = 8, dims: dict[str, int] = TINY_DIMS) -> tuple[dict, dict]:
    """(tar members ext -> bytes, vectors name -> float32 array) for sample `index`."""
    rng = np.random.default_rng(index)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)  # (H, W, 3)
    mask = rng.integers(0, 19, (size, size), dtype=np.uint8)  # (H, W) label ids
    sketch = (rng.random((size, size)) > 0.5).astype(np.uint8) * 255  # (H, W) 0/255
    vectors = {name: rng.standard_normal(dim).astype(np.float32) for name, dim in dims.items()}
    members = {
        "png": png_bytes(image),
        "mask.png": png_bytes(mask),
        "sketch.png": png_bytes(sketch),
        "json": encode_json({"index": index, "caption": f"face {index}"}),
    }
    members.update({f"{name}.npy": encode_npy(v) for name, v in vectors.items()})
    return members, vectors


def make_index(num_samples: int, per_shard: int, dims: dict[str, int] = TINY_DIMS, **kw) -> DatasetIndex:
    """A DatasetIndex for a fake 'tiny' dataset; keyword arguments override fields."""
    n_shards = -(-num_samples // per_shard)
    fields = dict(
        preset="tiny",
        parameters={"truncation": 0.7, "image_size": 8, "model": {"w_dim": dims["w"]}},
        weights={"stylegan2.tiny": "0" * 64},
        software_version="0.1.0",
        vector_dims=dims,
        samples_per_shard=per_shard,
        num_samples=num_samples,
        shards=[f"shard-{i:06d}.tar" for i in range(n_shards)],
    )
    fields.update(kw)
    return DatasetIndex(**fields)


def write_shard(url: str, shard: int, indices: list[int], failed: set[int] = frozenset(),
                dims: dict[str, int] = TINY_DIMS) -> ShardStats:
    """Write one complete shard (tar, parquet, stats) holding `indices`; return its stats."""
    rows, written = [], []
    with TarShardWriter(shard_url(url, shard, "tar")) as writer:
        for index in indices:
            key = sample_key(index)
            if index in failed:
                rows.append(failed_row(key=key, index=index, shard=shard, seed=index, error="Boom: x"))
                continue
            members, vectors = make_sample(index, dims=dims)
            writer.write(members, key)
            written.append((key, index, vectors))
    result = writer.close()  # already committed by the with block; close() returns the result
    for key, index, vectors in written:
        rows.append(ok_row(key=key, index=index, shard=shard, seed=index,
                           members=result.members[key], vectors=vectors, layout=LAYOUT))
    return commit_shard(url, shard, result, rows, {"generate": 0.5}, dims, LAYOUT)


def write_dataset(url: str, n_shards: int = 2, per_shard: int = 3, failed: set[int] = frozenset(),
                  dims: dict[str, int] = TINY_DIMS) -> None:
    """Write a complete fake dataset of n_shards x per_shard samples under `url`."""
    prepare_output(url, make_index(n_shards * per_shard, per_shard, dims))
    for shard in range(n_shards):
        indices = list(range(shard * per_shard, (shard + 1) * per_shard))
        write_shard(url, shard, indices, failed, dims)
