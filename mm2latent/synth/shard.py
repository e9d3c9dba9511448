"""Write one synth-data shard: batches of samples -> tar + parquet manifest + stats marker."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from mm2latent.synth.batch import BatchResult, synthesize_batch
from mm2latent.synth.encode import encode_members
from mm2latent.synth.models import SynthModels
from mm2latent.synth.params import SynthDataParams
from mm2latent.synth.stages import sample_seed
from storage.dataset_index import ShardStats, begin_shard, commit_shard, shard_url
from storage.manifest import failed_row, ok_row
from storage.shard_writer import TarShardWriter, sample_key

ProgressFn = Callable[[int], None]  # called with the number of samples just finished


def _sample_members(result: BatchResult, j: int, params: SynthDataParams, preset_name: str,
                    models: SynthModels) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """Tar members and manifest vectors of row j of a batch."""
    index = result.indices[j]
    row = {name: values[j] for name, values in result.values.items()}
    vectors = {s.name: row[s.name] for s in models.specs if s.vector_dim is not None}
    metadata = {"index": index, "dataset_seed": params.seed, "sample_seed": sample_seed(params.seed, index),
                "truncation_psi": params.truncation_psi, "preset": preset_name,
                "weights": models.weight_digests}
    return encode_members(models.specs, row, params.image_format, metadata), vectors


def write_shard(models: SynthModels, params: SynthDataParams, preset_name: str, store_size: int,
                shard: int, vector_dims: dict[str, int], on_progress: ProgressFn | None = None) -> ShardStats:
    """Generate every sample of `shard` and commit it; returns the shard's stats.

    The tar and parquet appear atomically and the stats file (the completion marker) last, so
    an interrupted call leaves the shard incomplete and a rerun redoes it from scratch.
    """
    begin_shard(params.out, shard)
    durations: dict[str, float] = {}
    rows: list[dict] = []
    written: list[tuple[dict, dict[str, np.ndarray]]] = []  # (identity, vectors) of ok samples
    with TarShardWriter(shard_url(params.out, shard, "tar")) as writer:
        indices = params.shard_indices(shard)
        for start in range(0, len(indices), params.batch_size):
            batch = indices[start:start + params.batch_size]
            result = synthesize_batch(models, params.seed, batch, params.truncation_psi,
                                      store_size, durations)
            t0 = time.perf_counter()
            for j, index in enumerate(batch):
                identity = dict(key=sample_key(index), index=index, shard=shard,
                                seed=sample_seed(params.seed, index))
                if result.errors[j] is not None:
                    rows.append(failed_row(**identity, error=result.errors[j]))
                    continue
                members, vectors = _sample_members(result, j, params, preset_name, models)
                writer.write(members, identity["key"])
                written.append((identity, vectors))
            durations["encode_write"] = durations.get("encode_write", 0.0) + time.perf_counter() - t0
            if on_progress is not None:
                on_progress(len(batch))
        tar = writer.close()
    # Member sizes and digests are known once the tar is closed.
    layout = models.registry.member_exts()
    rows += [ok_row(**identity, members=tar.members[identity["key"]], vectors=vectors, layout=layout)
             for identity, vectors in written]
    rows.sort(key=lambda row: row["index"])
    return commit_shard(params.out, shard, tar, rows, durations, vector_dims,
                        layout=layout)
