"""Prefect tasks of the training flows: each calls one library function with URLs and configs."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mm2latent.models.autoencoders import official_variant
from mm2latent.presets import get_preset
from mm2latent.training import pipeline
from mm2latent.training.config import AutoencoderTrainCfg, MappingTrainCfg
from mm2latent.training.loop import ProgressFn
from mm2latent.training.mapping import mapping_net_cfg
from mm2latent.training.snapshot import ShardSnapshot, take_snapshot
from storage.dataset_index import complete_shards


# Training writes checkpoints and the registry: the files are the cache, never Prefect's.
@task(name="train-autoencoder", cache_policy=NO_CACHE, task_run_name="{cfg.modality}-autoencoder")
def train_autoencoder(dataset: str, out: str, registry: str, preset: str, cfg: AutoencoderTrainCfg,
                      resume: bool = False, on_progress: ProgressFn | None = None,
                      real_dir: str | None = None, snapshot: ShardSnapshot | None = None) -> dict:
    """Train, register and embed with one autoencoder; returns the run report (small dict)."""
    ae_cfg = getattr(get_preset(preset), f"{cfg.modality}_ae")
    if cfg.recipe == "official":
        ae_cfg = official_variant(ae_cfg)
    report = pipeline.autoencoder_run(dataset, out, registry, ae_cfg, cfg, resume, on_progress,
                                      real_dir, snapshot)
    get_run_logger().info("registered %s-v%d: %s", report["record"]["name"],
                          report["record"]["version"], report["summary"]["metrics"])
    return report


@task(name="train-mapping-net", cache_policy=NO_CACHE, task_run_name="{cfg.modality}-mapping")
def train_mapping(dataset: str, out: str, registry: str, preset: str, cfg: MappingTrainCfg,
                  switches: dict, embeddings: str | None = None, resume: bool = False,
                  on_progress: ProgressFn | None = None, snapshot: ShardSnapshot | None = None) -> dict:
    """Train and register one MappingNet; `switches` holds use_batchnorm / dropout / depth (None = preset)."""
    net_cfg = mapping_net_cfg(get_preset(preset).mapping, cfg.modality, **switches)
    report = pipeline.mapping_run(dataset, out, registry, net_cfg, cfg, embeddings, resume, on_progress,
                                  snapshot)
    get_run_logger().info("registered %s-v%d: %s", report["record"]["name"],
                          report["record"]["version"], report["summary"]["metrics"])
    return report


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
def plan_retrain(dataset: str, registry: str, names: list[str], snapshot: ShardSnapshot) -> dict:
    """Decide whether the registered models are behind the snapshot's complete shards."""
    plan = pipeline.retrain_plan(dataset, registry, names, snapshot)
    get_run_logger().info(plan["reason"])
    return plan
