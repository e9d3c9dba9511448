"""Training data: the hold-out split, the dataset hash, and batches from in-memory tensors.

Hold-out rule: sample `index` is in validation iff hash(split_seed, index) / 2**63 <
val_fraction. It depends on the index alone, so growing a dataset never moves an old sample
between the splits (a random permutation of 0..N-1 would reshuffle everything when N changes).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from mm2latent_core.dims import NUM_MASK_CLASSES
from mm2latent_core.errors import DatasetError, TrainingError
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.seeding import derive_seed
from storage.dataset_index import complete_shards, read_shard_stats
from storage.fs import join, list_names, read_file
from storage.readers import iter_samples, read_vectors

logger = logging.getLogger(__name__)

_HASH_RANGE = float(1 << 63)  # derive_seed returns 63-bit values


def is_validation(indices: np.ndarray, val_fraction: float, split_seed: int = 0) -> np.ndarray:
    """Boolean (N,) array: True where the sample index belongs to the validation split.

    Args:
        indices: (N,) global sample indices.
        val_fraction: expected share of validation samples; 0 = none.
        split_seed: seed of the split rule.
    """
    if val_fraction <= 0:
        return np.zeros(len(indices), dtype=bool)
    return sample_draws(indices, split_seed, "holdout") < val_fraction


def sample_draws(indices: np.ndarray, *parts: object) -> np.ndarray:
    """(N,) floats in [0, 1): a hash of (parts, index) per sample index.

    A draw depends on the parts and the sample's index alone, never on its batch, its position
    or how many samples there are, so batch size and data order cannot change it.
    """
    return np.array([derive_seed(*parts, int(i)) / _HASH_RANGE for i in indices], dtype=np.float64)


def split_positions(indices: np.ndarray, val_fraction: float, split_seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, val positions) into `indices`, each ascending; TrainingError if train is empty."""
    val = is_validation(np.asarray(indices), val_fraction, split_seed)
    train_pos, val_pos = np.flatnonzero(~val), np.flatnonzero(val)
    if len(train_pos) == 0:
        raise TrainingError(
            f"no training samples: {len(indices)} sample(s) in the dataset, {len(val_pos)} held "
            "out. Fix: generate more samples or lower val_fraction.")
    return train_pos, val_pos


def dataset_hash(dataset_url: str, shards: list[int] | None = None) -> str:
    """sha256 over the complete shards' (index, tar sha256, parquet sha256), from their stats files.

    Args:
        dataset_url: the dataset root.
        shards: shard indices to cover; None = every complete shard.
    """
    shards = complete_shards(dataset_url) if shards is None else shards
    if not shards:
        raise TrainingError(f"{dataset_url}: empty dataset (no complete shards). Fix: run "
                            "`mm2latent synth-data` into it first, or finish its shards.")
    parts = []
    for index in shards:
        stats = read_shard_stats(dataset_url, index)
        if stats is None:
            raise TrainingError(f"{dataset_url}: shard {index} is not complete.")
        parts.append([index, stats.tar.sha256, stats.parquet.sha256])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def shuffled_batches(positions: np.ndarray, batch_size: int, seed: int | None, min_size: int = 1
                     ) -> Iterator[torch.Tensor]:
    """Batches of positions (LongTensor), shuffled by a generator seeded with `seed` (None = in order).

    Args:
        positions: (N,) row positions to cover once.
        batch_size: rows per batch; the last batch may be shorter.
        seed: shuffle seed (e.g. derive_seed(seed, "shuffle", epoch)); None keeps the order.
        min_size: drop a last batch smaller than this (BatchNorm cannot train on one row).
    """
    order = torch.as_tensor(positions, dtype=torch.long)
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
        order = order[torch.randperm(len(order), generator=generator)]
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        if len(batch) >= min_size:
            yield batch


def gather(tensors: Mapping[str, torch.Tensor], positions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows `positions` of every tensor in `tensors` (a batch)."""
    return {name: t.index_select(0, positions) for name, t in tensors.items()}


def resize_map(x: torch.Tensor, modality: str, resolution: int,
               registry: ModalityRegistry | None = None) -> torch.Tensor:
    """(H, W) map of a MapInput modality (label ids, {0,1} strokes) -> (resolution, resolution) uint8.

    Args:
        x: the map.
        modality: its modality; the spec's MapInput.resize says how (nearest for masks, area
            average + re-binarise for sketches).
        resolution: the side to resize to.
        registry: where `modality` is looked up; None = default_registry().
    """
    return (registry or default_registry()).map_input(modality).resize(x, resolution)


def check_modality(dataset_url: str, modality: str, shards: Sequence[int] | None = None,
                   check: bool = True) -> int:
    """Number of 'ok' samples; TrainingError if any of them lacks `modality` (manifest only;
    `check`: sha256-check the parquets first, False when the caller just did)."""
    try:
        table = read_vectors(dataset_url, (f"{modality}_bytes",), shards, check)
    except DatasetError as e:
        raise TrainingError(f"{dataset_url}: cannot check the {modality!r} modality: {e}") from e
    present = table[f"{modality}_bytes"]
    if len(present) == 0:
        raise TrainingError(f"{dataset_url}: empty dataset (no 'ok' samples in complete shards).")
    missing = int(sum(v is None or v != v for v in present))  # None or NaN: member absent
    if missing:
        raise TrainingError(
            f"{dataset_url}: {missing} of {len(present)} samples have no {modality!r}; the "
            f"dataset was made without it. Fix: run synth-data with --modalities including "
            f"{modality}, or train another modality.")
    return len(present)


def load_spatial(dataset_url: str, modality: str, resolution: int,
                 shards: Sequence[int] | None = None, registry: ModalityRegistry | None = None,
                 check: bool = True) -> tuple[np.ndarray, torch.Tensor]:
    """(indices (N,), uint8 (N, R, R)) of every sample's mask ids or {0,1} sketch, in index order.

    Held in memory at the autoencoder's resolution: N * R * R bytes (30k samples at 256 px:
    1.9 GiB), decoded once instead of once per epoch.

    Args:
        dataset_url: the dataset root (complete shards only).
        modality: a MapInput modality of `registry` ("mask" or "sketch" by default).
        resolution: the autoencoder's input side; stored maps are resized to it.
        shards: the run's shard snapshot; None = every complete shard now.
        registry: the modalities; None = default_registry().
        check: sha256-check each parquet and tar before reading it; False when the caller has
            just hashed them (training/input_checks.check_input_files).
    """
    registry = registry or default_registry()
    map_input = registry.map_input(modality)
    check_modality(dataset_url, modality, shards, check)
    indices, maps = [], []
    samples = iter_samples(dataset_url, modalities=(modality,), split_by_node=False,
                           split_by_worker=False, shards=shards, registry=registry, check=check)
    for sample in samples:
        indices.append(sample["index"])
        maps.append(map_input.resize(map_input.to_map(sample[modality]), resolution))
    if not maps:
        raise TrainingError(f"{dataset_url}: empty dataset (no {modality} samples in the "
                            "complete shards).")
    stacked = torch.stack(maps)  # (N, R, R)
    maps.clear()  # drop the per-sample tensors before any reorder copy
    order = np.argsort(indices, kind="stable")
    if np.array_equal(order, np.arange(len(order))):  # shards arrive in index order: no copy
        return np.asarray(indices), stacked
    return np.asarray(indices)[order], stacked[torch.as_tensor(order)]


def load_png_dir(dir_url: str, modality: str, resolution: int, num_classes: int = NUM_MASK_CLASSES,
                 registry: ModalityRegistry | None = None) -> tuple[np.ndarray, torch.Tensor, str]:
    """(ids (N,), uint8 (N, R, R), sha256) of every `*.png` directly under `dir_url`, by name.

    For training autoencoders on real masks/sketches besides the synthetic ones. ids are
    negative hashes of the file names, so the hold-out rule keeps each file on one side as the
    directory grows and they never collide with dataset indices (>= 0). The digest covers every
    file's name and bytes (it joins the dataset hash of the run).

    Args:
        dir_url: directory URL (local, memory://, s3://).
        modality: a MapInput modality: "mask" (label-id PNGs) or "sketch" (white strokes on
            black) by default; its MapInput.read_png reads each file.
        resolution: the autoencoder's input side.
        num_classes: mask classes; larger ids are an error.
        registry: the modalities; None = default_registry().
    """
    registry = registry or default_registry()
    map_input = registry.map_input(modality)
    names = [n for n in list_names(dir_url) if n.endswith(".png")]
    if not names:
        raise TrainingError(f"{dir_url}: no *.png files; expected one {modality} per file.")
    digest = hashlib.sha256()
    ids, maps = [], []
    for name in names:
        payload = read_file(join(dir_url, name))
        digest.update(name.encode() + b"\0" + hashlib.sha256(payload).digest())
        ids.append(-1 - derive_seed("real", name))
        try:
            raw = torch.from_numpy(map_input.read_png(payload, num_classes))  # (H, W) uint8
        except (OSError, ValueError) as e:  # OSError: Pillow cannot read it at all
            raise TrainingError(f"{dir_url}/{name}: {e}") from e
        maps.append(map_input.resize(raw, resolution))
    return np.asarray(ids, dtype=np.int64), torch.stack(maps), digest.hexdigest()  # (N, R, R)
