"""CMMD reference embeddings: computed once per (file list, model), then read from the cache."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from mm2latent.benchmark.cmmd import kernel_sum
from mm2latent.benchmark.records import ReferenceMeta
from mm2latent.modalities.registry import default_registry
from mm2latent.models.clip_towers import ClipEmbedder
from storage.reference_images import (ReferenceSet, embedding_cache_url, iter_reference_images,
                                      read_cached_embeddings, write_cached_embeddings)

logger = logging.getLogger(__name__)

BATCH = 32  # reference images per forward pass


def _same_size_batches(images: Iterable[np.ndarray], size: int) -> Iterator[torch.Tensor]:
    """(B, 3, H, W) float batches of consecutive images that share a size."""
    batch: list[np.ndarray] = []
    for image in images:
        if batch and (image.shape != batch[0].shape or len(batch) == size):
            yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div(255.0)
            batch = []
        batch.append(image)
    if batch:
        yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div(255.0)


@torch.no_grad()
def embed_reference(clip: ClipEmbedder, ref: ReferenceSet, limit: int | None) -> np.ndarray:
    """(N, E) float32 unit-norm embeddings of the reference images, in listed order."""
    parts = [clip.encode_image(batch).float().cpu().numpy()
             for batch in _same_size_batches(iter_reference_images(ref, default_registry(), limit),
                                                  BATCH)]
    return np.concatenate(parts)


def read_reference(url: str) -> tuple[np.ndarray, ReferenceMeta] | None:
    """(N, E) cached embeddings and their metadata, or None when nothing is cached at `url`."""
    cached = read_cached_embeddings(url)
    return None if cached is None else (cached[0], ReferenceMeta.from_json(cached[1]))


def reference_embeddings(clip: ClipEmbedder, model_id: str, ref: ReferenceSet, cache_url: str,
                         sigma: float, limit: int | None = None) -> tuple[np.ndarray, ReferenceMeta]:
    """(N, E) embeddings and their metadata (kernel sum, count, sigma, model), cached under cache_url.

    The reference's own kernel sum (the costly N x N part of CMMD) is cached with it.
    """
    url = embedding_cache_url(cache_url, ref, model_id)
    cached = read_reference(url)
    if cached is not None and cached[1].sigma == sigma:
        logger.info("reference embeddings from cache %s", url)
        return cached
    embeddings = embed_reference(clip, ref, limit)
    total = kernel_sum(embeddings, None, sigma)
    meta = ReferenceMeta(model=model_id, sigma=sigma, kernel_total=total.total, count=total.count,
                         images=int(embeddings.shape[0]), source=ref.url)
    write_cached_embeddings(url, embeddings, meta.to_json())
    return embeddings, meta
