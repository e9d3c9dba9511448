"""Prefect tasks of the `pipeline` flow: which steps are already done, and their lineage."""

from __future__ import annotations

import dataclasses

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mm2latent.benchmark.chained import ChainedBenchmark, finished_summary, plan_chained
from mm2latent.lineage import AssetSpec, benchmark_asset, dataset_asset
from mm2latent.modalities.registry import default_registry
from mm2latent.presets import get_preset
from mm2latent.synth.params import SynthDataParams
from mm2latent.training import data
from mm2latent.training.autoencoders import preset_autoencoder
from mm2latent.training.freshness import dataset_complete, trained_record
from mm2latent.training.mapping import mapping_net_cfg
from mm2latent.training.options import AutoencoderOptions, MappingOptions
from mm2latent.training.pipeline import ae_name, mapping_name
from mm2latent.training.registry import ModelRecord, ModelRegistry
from storage.benchmark_store import pairs_digest
from storage.dataset_index import DatasetIndex, complete_shards
from storage.fs import join


# Every check reads the files (registry, stats markers): they are the cache, never Prefect's.
@task(name="dataset-complete", cache_policy=NO_CACHE)
def check_dataset(params: SynthDataParams) -> bool:
    """True if the dataset at `params.out` already holds every shard of these parameters."""
    done = dataset_complete(params)
    if done:
        get_run_logger().info("skip synth-data: %s is complete (%d shards)", params.out, params.n_shards)
    return done


@task(name="autoencoders-to-train", cache_policy=NO_CACHE)
def autoencoders_to_train(options: AutoencoderOptions) -> list[str]:
    """options.modalities whose autoencoder is not yet registered for this dataset and config."""
    todo = []
    for cfg in options.train_cfgs():
        modality = cfg.modality
        ae_cfg = preset_autoencoder(get_preset(options.preset), modality, cfg.recipe)
        config = {"train": cfg.to_dict(), "autoencoder": dataclasses.asdict(ae_cfg)}
        record = trained_record(options.registry_url, ae_name(modality), options.dataset, config)
        if record is None:
            todo.append(modality)
        else:
            get_run_logger().info("skip %s: %s-v%d is current", ae_name(modality), record.name,
                                  record.version)
    return todo


@task(name="mapping-is-current", cache_policy=NO_CACHE)
def mapping_is_current(options: MappingOptions) -> bool:
    """True if the MappingNet `options` describe is registered for this dataset, config and
    the latest autoencoder's embeddings."""
    modality, registry = options.modality, options.registry_url
    net_cfg = mapping_net_cfg(get_preset(options.preset).mapping, modality, **options.switches())
    config = {"train": options.train_cfg().to_dict(), "mapping_net": dataclasses.asdict(net_cfg)}
    embeddings = None
    if modality in default_registry().maps:  # a vector condition (flame) has no autoencoder
        latest = ModelRegistry(registry).latest(ae_name(modality))
        embeddings = latest.tag if latest else "none registered"
    record = trained_record(registry, mapping_name(modality), options.dataset, config, embeddings)
    if record is not None:
        get_run_logger().info("skip %s: %s-v%d is current", mapping_name(modality), record.name,
                              record.version)
    return record is not None


@task(name="dataset-lineage", cache_policy=NO_CACHE)
def dataset_lineage(dataset: str) -> AssetSpec:
    """The dataset's asset: its hash, shard count and the weight digests dataset.json records."""
    index, shards = DatasetIndex.read(dataset), complete_shards(dataset)
    return dataset_asset(dataset, index.preset, index.weights, data.dataset_hash(dataset, shards),
                         shards)


@task(name="benchmark-plan-chained", cache_policy=NO_CACHE)
def benchmark_job(dataset: str, runs: str, preset: str, n_pairs: int,
                  seed: int) -> ChainedBenchmark | str:
    """The benchmark run for the latest mask MappingNet, or why there is nothing to benchmark."""
    return plan_chained(dataset, runs, preset, n_pairs, seed)


@task(name="benchmark-is-finished", cache_policy=NO_CACHE)
def benchmark_finished(job: ChainedBenchmark) -> bool:
    """True if the report for these inputs (model version, pairs, seed, data) is finished."""
    done = finished_summary(job) is not None
    if done:
        get_run_logger().info("skip benchmark: %s is finished for %s", job.cfg.out, job.record.tag)
    return done


@task(name="benchmark-lineage", cache_policy=NO_CACHE)
def benchmark_lineage(job: ChainedBenchmark) -> AssetSpec:
    """The report's asset: downstream of the MappingNet, with versions and hashes as metadata."""
    summary = finished_summary(job)
    assert summary is not None  # called after the benchmark step finished the run
    return benchmark_asset(join(job.cfg.out, "report.md"), job.record, summary,
                           pairs_digest(job.cfg.out), job.fixture)


@task(name="registered-record", cache_policy=NO_CACHE)
def registered_record(registry: str, record: ModelRecord) -> ModelRecord:
    """The registry's copy of a record just registered, its checkpoint URL resolved (the
    registry stores it relative to itself; asset keys need the absolute location)."""
    return ModelRegistry(registry).get(record.name, record.version)
