"""Encode every sample with a trained autoencoder and store the 512-d embeddings beside the dataset.

The files (layout in storage/embeddings.py) let MappingNet training read vectors, not images.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from mm2latent.batching import invariant_forward
from mm2latent_core.errors import TrainingError
from mm2latent_core.modalities.network_input import MapInput
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.training import data
from mm2latent.training.autoencoders import load_autoencoder
from mm2latent.training.reports import EmbeddingsReport
from storage.dataset_index import complete_shards
from storage.derived import shard_tar_sha256
from storage.embeddings import (embedding_source, embeddings_url, read_embedding_table,
                                table_source, write_embedding_table)
from storage.readers import read_vectors

logger = logging.getLogger(__name__)

def write_embedding_shard(dataset_url: str, version: str, shard: int, keys: list[str],
                          indices: np.ndarray, modality: str, vectors: np.ndarray) -> str:
    """Write one shard's embeddings parquet atomically; return its URL.

    Args:
        dataset_url: the dataset root.
        version: embeddings directory name.
        shard: shard index (names the file).
        keys, indices: the samples' tar keys and global indices, (N,) each.
        modality: vector column name ("mask" or "sketch").
        vectors: (N, D) float32 embeddings.
    """
    url = embeddings_url(dataset_url, version, shard)
    write_embedding_table(url, keys, indices, modality, vectors, shard_tar_sha256(dataset_url, shard))
    return url


@torch.no_grad()
def _encode_all(checkpoint_url: str, maps: torch.Tensor, batch_size: int, map_input: MapInput
                ) -> np.ndarray:
    """(N, D) embeddings of uint8 maps (N, R, R) by the checkpoint's autoencoder."""
    model = load_autoencoder(checkpoint_url)
    # Batch-invariant like synth-data's stages: a short last batch encodes as in a full one.
    out = [invariant_forward(model.encode, map_input.to_input(maps[i:i + batch_size], model.cfg))
           for i in range(0, len(maps), batch_size)]
    return torch.cat(out).numpy()  # (N, D)


def write_embeddings(dataset_url: str, modality: str, checkpoint_url: str, version: str,
                     batch_size: int = 64, on_progress: Callable[[int], None] | None = None,
                     shards: Sequence[int] | None = None, registry: ModalityRegistry | None = None
                     ) -> EmbeddingsReport:
    """Encode every sample of each complete shard; write one parquet per shard (atomically).

    Shards whose parquet already exists for this version and was computed from the shard's
    current tar are left as they are, so a re-run after an interruption only writes what is
    missing; a shard rewritten since (e.g. by `synth-data --overwrite`) is encoded again.

    Args:
        dataset_url: the dataset root.
        modality: a MapInput modality ("mask" or "sketch" by default); also the vector column's name.
        checkpoint_url: the trained autoencoder (a `fit` checkpoint).
        version: embeddings directory name, e.g. "mask-ae-v1".
        batch_size: samples per forward pass (does not change the values).
        on_progress: called with the number of samples of each shard written.
        shards: the run's shard snapshot; None = every complete shard now.
        registry: the modalities; None = default_registry().

    Returns:
        EmbeddingsReport: the version directory, shards written and skipped, the width D.
    """
    shards = complete_shards(dataset_url) if shards is None else list(shards)
    todo = [s for s in shards if embedding_source(embeddings_url(dataset_url, version, s))
            != shard_tar_sha256(dataset_url, s)]
    result = EmbeddingsReport(url=embeddings_url(dataset_url, version), written=tuple(todo),
                              skipped=tuple(s for s in shards if s not in todo))
    if not todo:
        return result
    map_input = (registry or default_registry()).map_input(modality)
    model_res = load_autoencoder(checkpoint_url).cfg.resolution
    indices, maps = data.load_spatial(dataset_url, modality, model_res, shards, registry)
    vectors = _encode_all(checkpoint_url, maps, batch_size, map_input)  # (N, D)
    manifest = read_vectors(dataset_url, ("key", "shard"), shards)
    if not np.array_equal(manifest["index"], indices):
        raise TrainingError(f"{dataset_url}: the tars and manifests list different samples; "
                            "rebuild the dataset's shards.")
    for shard in todo:
        rows = np.flatnonzero(manifest["shard"] == shard)
        write_embedding_shard(dataset_url, version, shard, [str(k) for k in manifest["key"][rows]],
                              indices[rows], modality, vectors[rows])
        if on_progress is not None:
            on_progress(len(rows))
    logger.info("wrote %s embeddings of %d shard(s) to %s", modality, len(todo), result.url)
    return dataclasses.replace(result, dim=int(vectors.shape[1]))


def read_embeddings(dataset_url: str, version: str, modality: str,
                    shards: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices (N,), vectors (N, D) float32) of every complete shard (or of `shards`), in index order.

    Raises:
        TrainingError: the version directory or a shard's file is missing, or lacks the column.
    """
    shards = complete_shards(dataset_url) if shards is None else list(shards)
    indices, vectors = [], []
    for shard in shards:
        url = embeddings_url(dataset_url, version, shard)
        try:
            table = read_embedding_table(url)
        except FileNotFoundError as e:
            raise TrainingError(
                f"{url}: no {modality} embeddings for shard {shard}. Fix: run `mm2latent train "
                "autoencoders` on this dataset (it writes embeddings for every complete shard).") from e
        if table_source(table) != shard_tar_sha256(dataset_url, shard):
            raise TrainingError(
                f"{url}: stale {modality} embeddings: shard {shard} was rewritten after they were "
                "computed (its tar digest differs). Fix: run `mm2latent train autoencoders` on "
                "this dataset again, which re-encodes changed shards.")
        if modality not in table.column_names:
            raise TrainingError(f"{url}: no column {modality!r} (has {table.column_names}); this "
                                f"embeddings version is for another modality.")
        column = table[modality].combine_chunks()
        dim = column.type.list_size
        indices.append(table["index"].to_numpy())
        vectors.append(column.flatten().to_numpy().reshape(len(column), dim))  # (n, D)
    if not indices:
        raise TrainingError(f"{dataset_url}: empty dataset (no complete shards).")
    idx = np.concatenate(indices)
    order = np.argsort(idx, kind="stable")
    return idx[order], np.concatenate(vectors)[order].astype(np.float32, copy=False)
