"""Is a step's output already complete for the same inputs? The pipeline skips it if so.

A dataset is complete when every planned shard has its stats marker. A model is complete when
the registry holds a version trained on the same dataset hash, with the same training and
architecture config (and, for a MappingNet, the same embeddings version).
"""

from __future__ import annotations

import json

from mm2latent.synth.params import SynthDataParams
from mm2latent.synth.run import done_shards, validate
from mm2latent.training import data
from mm2latent.training.registry import ModelRecord, ModelRegistry
from storage.dataset_index import DatasetIndex, complete_shards


def dataset_complete(params: SynthDataParams) -> bool:
    """True if `params.out` holds every shard of `params` (DatasetError if made otherwise)."""
    if not DatasetIndex.exists(params.out):
        return False
    validate(params)  # a dataset made with other settings is refused here, before any work
    return len(done_shards(params)) == params.n_shards


def _as_json(value: object) -> object:
    """The value as the registry stores it (tuples become lists)."""
    return json.loads(json.dumps(value, sort_keys=True))


def trained_record(registry_url: str, name: str, dataset_url: str, config: dict,
                   embeddings_version: str | None = None) -> ModelRecord | None:
    """The newest registered `name` trained on the dataset's current complete shards with
    exactly `config` ({"train": ..., "<architecture>": ...}), or None if it must be trained.

    Args:
        registry_url: model registry directory.
        name: registry name, e.g. "mask-ae" or "mapping-flame".
        dataset_url: dataset root; its complete shards' hash must match the record's.
        config: the record's `config` as the training run would write it.
        embeddings_version: for mask/sketch MappingNets, the autoencoder tag they must use.
    """
    shards = complete_shards(dataset_url)
    if not shards:
        return None
    digest = data.dataset_hash(dataset_url, shards)
    wanted = _as_json(config)
    for record in reversed(ModelRegistry(registry_url).records(name)):
        if record.extra.get("raw_dataset_hash", record.dataset_hash) != digest:
            continue
        if _as_json({k: record.config.get(k) for k in wanted}) != wanted:
            continue
        if embeddings_version is not None and record.extra.get("embeddings_version") != embeddings_version:
            continue
        return record
    return None
