"""Prefect tasks of the training flows: each calls one library function with URLs and configs."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mm2latent.models.autoencoders import AutoencoderCfg
from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.presets import get_preset
from mm2latent.training import pipeline
from mm2latent.training.autoencoders import preset_autoencoder
from mm2latent.training.config import AutoencoderTrainCfg
from mm2latent.training.loop import ProgressFn
from mm2latent.training.mapping import mapping_net_cfg
from mm2latent.training.options import AutoencoderOptions, MappingOptions
from mm2latent.training.reports import AutoencoderReport, MappingReport, RetrainPlan, TrainReport
from mm2latent.training.resume import check_something_to_resume
from mm2latent.training.snapshot import ShardSnapshot, snapshot_for, take_snapshot
from storage.dataset_index import complete_shards


# Training writes checkpoints and the registry: the files are the cache, never Prefect's.
@task(name="train-autoencoder", cache_policy=NO_CACHE, task_run_name="{cfg.modality}-autoencoder")
def train_autoencoder(options: AutoencoderOptions, cfg: AutoencoderTrainCfg,
                      on_progress: ProgressFn | None = None,
                      snapshot: ShardSnapshot | None = None) -> AutoencoderReport:
    """Train, register and embed with the autoencoder of `cfg` (one of options.train_cfgs())."""
    report = pipeline.autoencoder_run(options.dataset, options.out, options.registry_url,
                                      _autoencoder_cfg(options, cfg), cfg, options.continues_runs,
                                      on_progress, options.real_dir(cfg.modality), snapshot)
    _log_registered(report.record.tag, report.summary)
    return report


@task(name="train-mapping-net", cache_policy=NO_CACHE, task_run_name="{options.modality}-mapping")
def train_mapping(options: MappingOptions, on_progress: ProgressFn | None = None,
                  snapshot: ShardSnapshot | None = None) -> MappingReport:
    """Train and register the MappingNet `options` describe."""
    report = pipeline.mapping_run(options.dataset, options.out, options.registry_url,
                                  _mapping_net_cfg(options), options.train_cfg(),
                                  options.embeddings, options.continues_runs, on_progress, snapshot,
                                  text=options.text, caption_share=options.caption_share)
    _log_registered(report.record.tag, report.summary)
    return report


def _log_registered(tag: str, summary: TrainReport) -> None:
    get_run_logger().info("registered %s: %s", tag, summary.metrics_dict())


def _autoencoder_cfg(options: AutoencoderOptions, cfg: AutoencoderTrainCfg) -> AutoencoderCfg:
    """The architecture of the autoencoder that `cfg` (one of options.train_cfgs()) trains."""
    return preset_autoencoder(get_preset(options.preset), cfg.modality, cfg.recipe,
                              cfg.modality_registry)


def _mapping_net_cfg(options: MappingOptions) -> MappingNetCfg:
    return mapping_net_cfg(get_preset(options.preset).mapping, options.modality,
                           **options.switches())


@task(name="check-resume", cache_policy=NO_CACHE)
def check_resume(options: AutoencoderOptions | MappingOptions,
                 snapshot: ShardSnapshot | None) -> None:
    """--resume: refuse before any training when none of the command's runs can be resumed."""
    snapshot = snapshot_for(options.dataset, snapshot)
    if isinstance(options, AutoencoderOptions):
        runs = [(pipeline.autoencoder_run_url(options.out, _autoencoder_cfg(options, cfg), cfg,
                                              snapshot, options.real_dir(cfg.modality)),
                 cfg.to_dict()) for cfg in options.train_cfgs()]
    else:
        cfg = options.train_cfg()
        runs = [(pipeline.mapping_run_url(options.out, options.registry_url,
                                          _mapping_net_cfg(options), cfg, options.embeddings,
                                          snapshot, pipeline.text_run_key(
                                              pipeline.text_embeddings_of(options.dataset,
                                                                          options.text),
                                              options.text_input())), cfg.to_dict())]
    check_something_to_resume(runs)


@task(name="snapshot-shards", cache_policy=NO_CACHE)
def snapshot_shards(dataset: str) -> ShardSnapshot | None:
    """List and hash the complete shards once; every step of the run works on exactly these.

    None when the dataset has no complete shard yet: retrain then has nothing to do, and a
    training step takes its own snapshot, which says how to fix it.
    """
    if not complete_shards(dataset):
        return None
    snapshot = take_snapshot(dataset)
    get_run_logger().info("%s: working on %d complete shard(s), hash %s", dataset,
                          len(snapshot.shards), snapshot.dataset_hash[:12])
    return snapshot


@task(name="plan-retrain", cache_policy=NO_CACHE)
def plan_retrain(dataset: str, registry: str, names: list[str],
                 snapshot: ShardSnapshot | None) -> RetrainPlan:
    """Decide whether the registered models are behind the snapshot's complete shards."""
    plan = pipeline.retrain_plan(dataset, registry, names, snapshot)
    get_run_logger().info(plan.reason)
    return plan
