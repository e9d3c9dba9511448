"""The three steps of a synth-data run that the Prefect flow composes: plan, shard, summarise."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from mm2latent import __version__
from mm2latent_core.errors import DatasetError
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.presets import PresetCfg, get_preset
from mm2latent.synth.models import (SynthModels, build_synth_models, check_weights_available, vector_dims,
                                     weight_digests)
from mm2latent.synth.params import SynthDataParams
from mm2latent.synth.shard import ProgressFn, write_shard
from storage.dataset_index import (DatasetIndex, ShardStats, begin_shard, check_compatible,
                                   prepare_output, read_shard_stats, shard_name)
from storage.shard_check import damaged_shards

logger = logging.getLogger(__name__)


def store_size(params: SynthDataParams, preset: PresetCfg) -> int:
    """Side of stored images in pixels: the parameter, else the preset's default."""
    return params.image_size or preset.store_size


def dataset_index(params: SynthDataParams, preset: PresetCfg, cache_dir: Path | None = None,
                  registry: ModalityRegistry | None = None) -> DatasetIndex:
    """The dataset.json content a run with `params` writes."""
    return DatasetIndex(
        preset=params.preset,
        parameters=params.fingerprint() | {"store_size": store_size(params, preset)},
        weights=weight_digests(preset, params.modalities, cache_dir, registry),
        software_version=__version__, samples_per_shard=params.samples_per_shard,
        vector_dims=vector_dims(preset, params.modalities, registry),
        num_samples=params.n_samples, shards=[shard_name(i) for i in range(params.n_shards)])


def done_shards(params: SynthDataParams) -> set[int]:
    """Shards of `params.out` whose stats marker holds the expected number of samples."""
    done = set()
    for shard in range(params.n_shards):
        stats = read_shard_stats(params.out, shard)
        if stats is not None and stats.count == len(params.shard_indices(shard)):
            done.add(shard)
    return done


def validate(params: SynthDataParams, overwrite: bool = False, cache_dir: Path | None = None,
             registry: ModalityRegistry | None = None) -> DatasetIndex:
    """Every check of a run that writes nothing; returns the dataset.json the run will write.

    Checks the preset, the weights files and, unless `overwrite`, that an existing dataset at
    `params.out` was made with the same settings (DatasetError naming each differing field) and
    holds no more samples than requested (shrinking would leave its extra shards readable).
    """
    preset = get_preset(params.preset)
    check_weights_available(preset, params.modalities, cache_dir, registry)
    index = dataset_index(params, preset, cache_dir, registry)
    if not overwrite and DatasetIndex.exists(params.out):
        existing = DatasetIndex.read(params.out)
        check_compatible(existing.fingerprint(), index.fingerprint(), params.out)
        if existing.num_samples > params.n_samples:
            raise DatasetError(
                f"{params.out} holds {existing.num_samples} samples; a run with n_samples="
                f"{params.n_samples} would leave the extra shards readable. Fix: pass the same or "
                "a larger n, --overwrite to replace the dataset, or a new --out.")
    return index


def plan(params: SynthDataParams, overwrite: bool = False, cache_dir: Path | None = None,
         registry: ModalityRegistry | None = None, verify: bool = False) -> list[int]:
    """Validate everything before work starts, write dataset.json; return the shards to write.

    A shard counts as done only if its stats marker holds the expected number of samples, so
    growing n_samples redoes a previously short last shard, and only if its tar and parquet
    still have the sizes (with `verify`: the sha256 digests) its stats file records; a
    damaged shard loses its marker and is written again, byte-identical to the original.
    `registry` (None = the default) must be the one `params` was parsed with.
    """
    index = validate(params, overwrite, cache_dir, registry)
    prepare_output(params.out, index, overwrite=overwrite)
    done = done_shards(params)
    for shard, reason in damaged_shards(params.out, sorted(done), rehash=verify).items():
        logger.warning("%s: shard %d is damaged (%s); writing it again", params.out, shard, reason)
        begin_shard(params.out, shard)
        done.discard(shard)
    todo = [shard for shard in range(params.n_shards) if shard not in done]
    logger.info("%s: %d of %d shards already complete", params.out, len(done), params.n_shards)
    return todo


def run_shard(params: SynthDataParams, shard: int, on_progress: ProgressFn | None = None,
              cache_dir: Path | None = None, models: SynthModels | None = None,
              registry: ModalityRegistry | None = None) -> ShardStats:
    """Write one shard with the preset's networks (built here unless `models` is given)."""
    preset = get_preset(params.preset)
    if models is None:
        models = build_synth_models(preset, params.modalities, params.device, cache_dir, registry)
    with torch.inference_mode():
        return write_shard(models, params, preset.name, store_size(params, preset), shard,
                           models.registry.vector_dims(preset, params.modalities), on_progress)


class SynthSummary(BaseModel):
    """Totals of a finished synth-data run (what the flow returns and the CLI prints)."""

    model_config = ConfigDict(frozen=True)

    out: str  # dataset root
    preset: str  # preset name
    makes_faces: bool  # False for seeded presets: their images are not faces
    shards: int  # shards in the dataset
    samples: int  # manifest rows over every shard
    ok: int  # samples written
    failures: int  # samples recorded as failed
    durations_s: dict[str, float]  # seconds per stage, summed over shards


def summarize(params: SynthDataParams) -> SynthSummary:
    """Counts over all shards of the dataset; DatasetError if a shard is incomplete or all failed."""
    samples = ok = failures = 0
    durations: dict[str, float] = {}
    for shard in range(params.n_shards):
        stats = read_shard_stats(params.out, shard)
        if stats is None:
            raise DatasetError(f"{params.out}: shard {shard} is incomplete. Fix: re-run the same "
                               "command; complete shards are skipped.")
        samples, ok, failures = samples + stats.count, ok + stats.ok, failures + stats.failures
        for stage, seconds in stats.durations_s.items():
            durations[stage] = durations.get(stage, 0.0) + seconds
    if samples and ok == 0:
        raise DatasetError(f"{params.out}: every sample failed; see the 'error' column of the "
                           "shard parquet files.")
    return SynthSummary(out=params.out, preset=params.preset,
                        makes_faces=get_preset(params.preset).makes_faces, shards=params.n_shards,
                        samples=samples, ok=ok, failures=failures, durations_s=durations)
