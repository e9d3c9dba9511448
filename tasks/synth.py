"""Prefect tasks of the synth-data flow: each calls one library function with params, not tensors."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mm2latent.presets import PresetCfg, get_preset
from mm2latent.synth import run
from mm2latent.synth.models import SynthModels, build_synth_models, weight_digests
from mm2latent.synth.params import SynthDataParams
from mm2latent.synth.shard import ProgressFn
from mm2latent.weights import resolve_cache_dir
from storage.dataset_index import ShardStats


# Planning and shard writing touch storage, so they are never cached: the files are the cache
# (a shard with a stats marker is skipped by `plan`).
@task(name="plan-dataset", cache_policy=NO_CACHE)
def plan_dataset(params: SynthDataParams, overwrite: bool = False, verify: bool = False) -> list[int]:
    """Validate the run and write dataset.json; return the shards still to write (damaged ones too)."""
    todo = run.plan(params, overwrite=overwrite, verify=verify)
    get_run_logger().info("%d of %d shards to write into %s", len(todo), params.n_shards, params.out)
    return todo


@functools.lru_cache(maxsize=1)
def _models(preset: PresetCfg, modalities: tuple[str, ...], device: str, cache_dir: Path,
            digests: tuple[tuple[str, str], ...]) -> SynthModels:
    """The networks of the last (preset config, modalities, device, weights) used in this process.

    Shard tasks of one run share them instead of rebuilding per shard (for small shards the
    build costs as much as the samples). One entry only, so a long-lived worker holds at most
    one preset's networks; they are read-only in inference, so concurrent shard threads can
    share them. The weight digests are part of the key, so a replaced weights file is reloaded
    (the dataset records the digests `plan` saw, which must be the weights actually used).
    """
    return build_synth_models(preset, modalities, device, cache_dir)


_MODELS_LOCK = threading.Lock()  # lru_cache alone lets concurrent first calls all build


def _shared_models(params: SynthDataParams) -> SynthModels:
    """The cached networks for `params`, keyed by the full preset config and weight digests."""
    preset, cache_dir = get_preset(params.preset), resolve_cache_dir(None)
    digests = weight_digests(preset, params.modalities, cache_dir)
    with _MODELS_LOCK:
        return _models(preset, params.modalities, params.device, cache_dir,
                       tuple(sorted(digests.items())))


@task(name="synthesize-shard", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2,
      task_run_name="shard-{shard:06d}")
def synthesize_shard(params: SynthDataParams, shard: int, on_progress: ProgressFn | None = None) -> ShardStats:
    """Generate, annotate and commit one shard; returns its stats (small, JSON-able)."""
    stats = run.run_shard(params, shard, on_progress, models=_shared_models(params))
    get_run_logger().info("shard %06d: %d ok, %d failed", shard, stats.ok, stats.failures)
    return stats


@task(name="summarize-dataset", cache_policy=NO_CACHE)
def summarize_dataset(params: SynthDataParams) -> run.SynthSummary:
    """Totals over every shard; fails if any shard is missing or every sample failed."""
    return run.summarize(params)
