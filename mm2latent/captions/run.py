"""Caption every sample of a dataset from its stored attributes, shard by shard (resumable)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mm2latent.attributes.registry import default_attribute_registry
from mm2latent.captions.embeddings import TEXT_COLUMN, encode_captions, text_embeddings_version
from mm2latent.captions.templates import TEMPLATE_VERSION, caption
from mm2latent_core.errors import DatasetError
from storage.attributes import iter_attribute_shards, read_descriptor, resolve_folders
from storage.captions import (captions_url, write_caption_shard, write_captions_descriptor)
from storage.dataset_index import complete_shards
from storage.derived import shard_tar_sha256, shards_to_write
from storage.embeddings import embeddings_url, write_embedding_table
from storage.shard_writer import sample_key


@dataclass(frozen=True)
class CaptionsPlan:
    """What a captions run reads and writes."""

    dataset: str
    folder: str                        # captions folder name (digest12)
    attributes: tuple[str, ...]        # attributes folders read
    seed: int                          # phrasing seed
    shards: tuple[int, ...]            # the run's snapshot of complete shards
    todo: tuple[int, ...]              # shards still to write


@dataclass(frozen=True)
class CaptionsSummary:
    """What a run wrote."""

    dataset: str
    folder: str
    written: int
    skipped: int
    example: str | None                # the first sample's caption


def plan(dataset: str, sources: Sequence[str] | None = None, seed: int = 0) -> CaptionsPlan:
    """Pick the attributes folders, write the descriptor, list the shards left to write.

    Args:
        dataset: the dataset root (with attributes: run `dataset attributes` first).
        sources: attribute sources or folders to read; None = every attributes folder.
        seed: seed of the phrasing choice (a sample's caption depends on (seed, index)).
    """
    folders = tuple(resolve_folders(dataset, sources, default_attribute_registry()))
    record = {"template_version": TEMPLATE_VERSION, "seed": seed,
              "attributes": {f: read_descriptor(dataset, f).digest for f in folders}}
    folder = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    shards = tuple(complete_shards(dataset))
    if not shards:
        raise DatasetError(f"{dataset}: no complete shards. Fix: run synth-data into it first.")
    write_captions_descriptor(dataset, folder, record)
    text = text_embeddings_version(folder)
    todo = sorted(set(shards_to_write(dataset, shards, lambda s: captions_url(dataset, folder, s)))
                  | set(shards_to_write(dataset, shards, lambda s: embeddings_url(dataset, text, s))))
    return CaptionsPlan(dataset, folder, folders, seed, shards, tuple(todo))


def run_shards(plan_: CaptionsPlan, shards: Sequence[int], tower: torch.nn.Module) -> int:
    """Caption `shards` (one shard at a time) and write each shard's FaRL text embeddings of its
    captions, then its captions (the completion marker of both); return the samples covered.

    Args:
        plan_: the run's plan.
        shards: dataset shards to write.
        tower: the dataset preset's FaRL embedder (embeddings.build_text_tower).
    """
    count = 0
    for shard, table in iter_attribute_shards(plan_.dataset, plan_.attributes, shards=shards):
        tar_sha256 = shard_tar_sha256(plan_.dataset, shard)
        rows = table.to_pylist()
        # A failed sample has every attribute null: it gets no caption.
        texts = [None if all(v is None for k, v in r.items() if k != "index")
                 else caption(r, plan_.seed, r["index"]) for r in rows]
        ok = [i for i, t in enumerate(texts) if t is not None]
        indices = table["index"].to_numpy()
        write_embedding_table(embeddings_url(plan_.dataset, text_embeddings_version(plan_.folder), shard),
                              [sample_key(int(indices[i])) for i in ok], indices[ok], TEXT_COLUMN,
                              encode_captions(tower, [texts[i] for i in ok]), tar_sha256)
        write_caption_shard(plan_.dataset, plan_.folder, shard, table["index"].to_numpy(), texts,
                            TEMPLATE_VERSION, tar_sha256)
        count += len(rows)
    return count


def summarize(plan_: CaptionsPlan, example: str | None = None) -> CaptionsSummary:
    """The run's summary."""
    return CaptionsSummary(plan_.dataset, plan_.folder, len(plan_.todo),
                           len(plan_.shards) - len(plan_.todo), example)
