"""FaRL text embeddings of a dataset's captions, cached beside it like autoencoder embeddings.

Layout: `<dataset>/embeddings/captions-<captions folder>/shard-NNNNNN.parquet` (storage/embeddings.py
layout, vector column `text`), one row per captioned (ok) sample. They are written by
`dataset captions` with the FaRL text tower of the dataset's own preset (the tower whose image
embeddings the paper's PTEG perturbs), so `train mapping --text captions` needs no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mm2latent_core.errors import TrainingError
from storage.captions import caption_dirs
from storage.dataset_index import DatasetIndex
from storage.derived import read_derived_table
from storage.embeddings import embeddings_url

TEXT_COLUMN = "text"
FIX = "Fix: rerun `mm2latent dataset captions DATASET` (it writes the captions' text embeddings)."


def text_embeddings_version(captions_folder: str) -> str:
    """The embeddings directory of one captions folder's text embeddings."""
    return f"captions-{captions_folder}"


def build_text_tower(dataset_url: str, cache_dir: Path | None = None) -> torch.nn.Module:
    """The FaRL embedder of the dataset's preset (its text tower encodes the captions)."""
    from mm2latent.modalities import farl  # network code loads only when captions are encoded
    from mm2latent.presets import get_preset

    return farl.SPEC.build(get_preset(DatasetIndex.read(dataset_url).preset), cache_dir)


@torch.no_grad()
def encode_captions(tower: torch.nn.Module, captions: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """(N, E) float32 unit-norm FaRL text embeddings of `captions`."""
    out = [tower.encode_text(list(captions[i:i + batch_size])).float().cpu()
           for i in range(0, len(captions), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, tower.cfg.embed_dim), np.float32)


def captions_version(dataset_url: str) -> str:
    """The text embeddings version of the dataset's one captions folder.

    Raises:
        TrainingError: no captions, or several folders (other seeds or attributes).
    """
    folders = caption_dirs(dataset_url)
    if not folders:
        raise TrainingError(f"{dataset_url}: no captions, so `--text captions` or `--text mixed` "
                            f"has nothing to read. Fix: run `mm2latent dataset attributes "
                            f"{dataset_url}` then `mm2latent dataset captions {dataset_url}`, or "
                            "train with --text pteg.")
    if len(folders) > 1:
        raise TrainingError(f"{dataset_url}: several captions folders ({', '.join(folders)}); "
                            "`--text captions` and `--text mixed` need exactly one. Fix: delete "
                            "the ones not to train on (under captions/ and embeddings/captions-*).")
    return text_embeddings_version(folders[0])


def read_text_embeddings(dataset_url: str, version: str, shards: Sequence[int]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(indices (N,), vectors (N, E) float32) of the captioned samples of `shards`, in index order.

    Raises:
        DatasetError: a shard's file is missing, damaged or stale (one line with the fix).
    """
    indices, vectors = [], []
    for shard in shards:
        table = read_derived_table(embeddings_url(dataset_url, version, shard), dataset_url, shard,
                                   FIX, columns=("index", TEXT_COLUMN))
        column = table[TEXT_COLUMN].combine_chunks()
        indices.append(table["index"].to_numpy())
        vectors.append(column.flatten().to_numpy().reshape(len(column), column.type.list_size))
    idx = np.concatenate(indices)
    order = np.argsort(idx, kind="stable")
    return idx[order], np.concatenate(vectors)[order].astype(np.float32, copy=False)
