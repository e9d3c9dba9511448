"""Whole training runs as the flows use them: train, save curves, register, write embeddings.

Run directories are named by what determines the result,
`<out>/<model name>/run-<data hash 12>-<config hash 12>`, so re-running the same command
after an interruption finds its checkpoints (with resume) and a changed dataset or config
always starts a fresh directory; nothing is ever overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

from mm2latent_core.errors import TrainingError
from mm2latent.captions.embeddings import captions_version
from mm2latent.models.autoencoders import AutoencoderCfg
from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.training.autoencoders import train_autoencoder
from mm2latent.training.config import AutoencoderTrainCfg, MappingTrainCfg, TextInput, TrainCfg
from mm2latent.training.embeddings import write_embeddings
from mm2latent.training.loop import ProgressFn
from mm2latent.training.mapping import mapping_data_hash, train_mapping
from mm2latent.training.plots import loss_curves_png
from mm2latent.training.registry import ModelRecord, ModelRegistry
from mm2latent.training.reports import (AutoencoderReport, MappingReport, RetrainPlan,
                                        TrainReport)
from mm2latent.training.resume import SUMMARY_FILE, check_resume_settings
from mm2latent.training.snapshot import ShardSnapshot, snapshot_for
from storage.atomic import atomic_write_bytes
from storage.checkpoints import checkpoint_sha256
from storage.dataset_index import complete_shards
from storage.fs import join
from storage.locations import relative_location, resolve_location

logger = logging.getLogger(__name__)


def ae_name(modality: str) -> str:
    """Registry name of a modality's autoencoder, e.g. "mask-ae"."""
    return f"{modality}-ae"


def mapping_name(modality: str) -> str:
    """Registry name of a modality's MappingNet, e.g. "mapping-mask"."""
    return f"mapping-{modality}"


def run_url_for(out_url: str, name: str, data_hash: str, cfg: TrainCfg, arch: object) -> str:
    """`<out>/<name>/run-<data hash>-<config+architecture hash>` (12 hex digits each)."""
    text = json.dumps([cfg.to_dict(), dataclasses.asdict(arch)], sort_keys=True)
    return join(out_url, name, f"run-{data_hash[:12]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}")


def _finish_run(summary: TrainReport, name: str, dataset_url: str, registry_url: str,
                config: dict, extra: dict) -> ModelRecord:
    """Write curves.png and summary.json into the run directory, then register the best epoch."""
    atomic_write_bytes(join(summary.run_url, "curves.png"), loss_curves_png(summary.history, name))
    atomic_write_bytes(join(summary.run_url, SUMMARY_FILE), summary.to_json().encode())
    registry = ModelRegistry(registry_url)
    # Compared as the registry resolves locations: records hold them relative to the registry.
    checkpoint = resolve_location(registry_url, relative_location(registry_url,
                                                                  summary.checkpoint_url))
    for record in registry.records(name):  # a re-run of a finished, registered run
        if record.checkpoint_url == checkpoint:
            return record
    return registry.register(name, summary.checkpoint_url, dataset_url, summary.dataset_hash,
                             metrics=summary.metrics_dict(), config=config, extra=extra)


def autoencoder_run(dataset_url: str, out_url: str, registry_url: str, ae_cfg: AutoencoderCfg,
                    cfg: AutoencoderTrainCfg, resume: bool = False,
                    on_progress: ProgressFn | None = None, real_dir: str | None = None,
                    snapshot: ShardSnapshot | None = None) -> AutoencoderReport:
    """Train one autoencoder, register it and write its embeddings.

    Args:
        dataset_url: dataset root.
        out_url: root of run directories.
        registry_url: model registry directory.
        ae_cfg: architecture (the preset's mask_ae or sketch_ae).
        cfg: training settings; cfg.modality picks mask or sketch.
        resume: continue an interrupted run of the same data and config.
        on_progress: called with 1 per finished epoch.
        real_dir: optional directory of real `*.png` masks / sketches to train on as well.
        snapshot: the shards this run works on (one for every step of a run); None = take one.

    Returns:
        AutoencoderReport: the registry record, the training report and the embeddings written.
    """
    name = ae_name(cfg.modality)
    snapshot = snapshot_for(dataset_url, snapshot)
    shards, digest = list(snapshot.shards), snapshot.dataset_hash
    run_url = autoencoder_run_url(out_url, ae_cfg, cfg, snapshot, real_dir)
    if resume:
        check_resume_settings(run_url, cfg.to_dict())
    summary = train_autoencoder(dataset_url, run_url, ae_cfg, cfg, resume, on_progress,
                                real_dir=real_dir, snapshot=snapshot)
    if not summary.finished:
        raise TrainingError(f"{run_url}: training stopped before the end; resume it.")
    # Named after the weights, not the registry's version: two registries on one dataset (or
    # two models with the same version number) never share or overwrite each other's vectors.
    embeddings_dir = f"{name}-{checkpoint_sha256(summary.checkpoint_url)[:12]}"
    record = _finish_run(summary, name, dataset_url, registry_url,
                         {"train": cfg.to_dict(), "autoencoder": dataclasses.asdict(ae_cfg)},
                         {"shards": shards, "raw_dataset_hash": digest, "real_dir": real_dir,
                          "embeddings": embeddings_dir})
    embeddings = write_embeddings(dataset_url, cfg.modality, record.checkpoint_url,
                                  record.extra.get("embeddings", embeddings_dir), shards=shards,
                                  registry=cfg.modality_registry)
    return AutoencoderReport(record=record, summary=summary, embeddings=embeddings)


def mapping_run(dataset_url: str, out_url: str, registry_url: str, net_cfg: MappingNetCfg,
                cfg: MappingTrainCfg, embeddings_version: str | None = None, resume: bool = False,
                on_progress: ProgressFn | None = None,
                snapshot: ShardSnapshot | None = None, text: str = "pteg",
                caption_share: float | None = None) -> MappingReport:
    """Train and register one MappingNet; its registry record and training report.

    Args:
        dataset_url: dataset root.
        out_url: root of run directories.
        registry_url: model registry directory.
        net_cfg: architecture with the ablation switches applied (see mapping_net_cfg).
        cfg: training settings; cfg.modality picks the spatial input.
        embeddings_version: the autoencoder whose embeddings to read, e.g. "mask-ae-v2" (or an
            embeddings directory name); None = the latest registered autoencoder.
        resume: continue an interrupted run of the same data and config.
        on_progress: called with 1 per finished epoch.
        snapshot: the shards this run works on (one for every step of a run); None = take one.
        text: the text input, one of TEXT_KINDS: "pteg" (the paper), "captions" or "mixed".
        caption_share: "mixed" only: each sample's chance per epoch of reading its caption's
            embedding (None = 0.5); refused with the other kinds.
    """
    text_input = TextInput(text, caption_share)
    ae_tag, version = _mapping_embeddings(registry_url, cfg, embeddings_version)
    text_version = text_embeddings_of(dataset_url, text)
    name = mapping_name(cfg.modality)
    snapshot = snapshot_for(dataset_url, snapshot)
    run_url = _mapping_run_url(out_url, net_cfg, cfg, version, snapshot,
                               text_run_key(text_version, text_input))
    if resume:
        check_resume_settings(run_url, cfg.to_dict())
    summary = train_mapping(dataset_url, run_url, net_cfg, cfg, version, resume, on_progress,
                            snapshot=snapshot, text_embeddings=text_version,
                            caption_share=text_input.share)
    if not summary.finished:
        raise TrainingError(f"{run_url}: training stopped before the end; resume it.")
    record = _finish_run(summary, name, dataset_url, registry_url,
                         {"train": cfg.to_dict(), "mapping_net": dataclasses.asdict(net_cfg)},
                         {"shards": list(snapshot.shards), "embeddings_version": ae_tag,
                          "embeddings": version, "raw_dataset_hash": snapshot.dataset_hash,
                          "text": text, "text_embeddings": text_version,
                          **({"caption_share": text_input.share}
                             if text_input.share is not None else {})})
    return MappingReport(record=record, summary=summary)


def text_embeddings_of(dataset_url: str, text: str) -> str | None:
    """The text embeddings version a MappingNet with text input `text` reads; None = PTEG."""
    return captions_version(dataset_url) if TextInput(text).reads_captions else None


def text_run_key(text_embeddings: str | None, text_input: TextInput) -> str | None:
    """What a run's text input adds to its data hash: the caption embeddings it reads
    (`text_embeddings_of`) and, for a mix, the captions' share (another share is another run);
    None = PTEG."""
    if text_input.share is None:
        return text_embeddings
    return f"{text_embeddings}@mixed-{text_input.share!r}"


def autoencoder_run_url(out_url: str, ae_cfg: AutoencoderCfg, cfg: AutoencoderTrainCfg,
                        snapshot: ShardSnapshot, real_dir: str | None = None) -> str:
    """The run directory `autoencoder_run` trains in for these data and settings."""
    digest = snapshot.dataset_hash
    # The real directory's content joins the data hash inside `fit`, which refuses to resume
    # a run whose files changed; its URL is enough to keep runs apart here.
    run_hash = digest if real_dir is None else hashlib.sha256(f"{digest}:{real_dir}".encode()).hexdigest()
    return run_url_for(out_url, ae_name(cfg.modality), run_hash, cfg, ae_cfg)


def mapping_run_url(out_url: str, registry_url: str, net_cfg: MappingNetCfg, cfg: MappingTrainCfg,
                    embeddings_version: str | None, snapshot: ShardSnapshot,
                    text_embeddings: str | None = None) -> str:
    """The run directory `mapping_run` trains in for these data, embeddings and settings
    (text_embeddings: text_run_key(text_embeddings_of(dataset, text), text input))."""
    _, version = _mapping_embeddings(registry_url, cfg, embeddings_version)
    return _mapping_run_url(out_url, net_cfg, cfg, version, snapshot, text_embeddings)


def _mapping_run_url(out_url: str, net_cfg: MappingNetCfg, cfg: MappingTrainCfg,
                     embeddings: str | None, snapshot: ShardSnapshot,
                     text_embeddings: str | None = None) -> str:
    # Caption text embeddings are training data too: such a run gets its own directory.
    data = embeddings if text_embeddings is None else f"{embeddings}+{text_embeddings}"
    data_hash = mapping_data_hash(snapshot.dataset_hash, data)
    return run_url_for(out_url, mapping_name(cfg.modality), data_hash, cfg, net_cfg)


def _mapping_embeddings(registry_url: str, cfg: MappingTrainCfg,
                        requested: str | None) -> tuple[str | None, str | None]:
    """(autoencoder tag, embeddings directory) a MappingNet reads; (None, None) for a vector
    condition (flame), which needs no autoencoder."""
    if cfg.modality not in cfg.modalities.maps:
        return None, None
    return _embeddings_of(registry_url, cfg.modality, requested)


def _embeddings_of(registry_url: str, modality: str, requested: str | None) -> tuple[str, str]:
    """(autoencoder tag, embeddings directory) for a MappingNet of `modality`.

    `requested` is an autoencoder tag ("mask-ae-v2") or an embeddings directory name;
    None = the latest registered autoencoder.
    """
    registry = ModelRegistry(registry_url)
    records = registry.records(ae_name(modality))
    if requested is None:
        if not records:
            raise TrainingError(f"{registry_url}: no {ae_name(modality)} registered, so there "
                                f"are no {modality} embeddings. Fix: run `mm2latent train "
                                "autoencoders` first, or pass --embeddings.")
        record = records[-1]
    else:
        record = next((r for r in records if requested in (r.tag, r.extra.get("embeddings"))), None)
        if record is None:  # a directory made outside this registry
            return requested, requested
    return record.tag, record.extra.get("embeddings", record.tag)


def retrain_plan(dataset_url: str, registry_url: str, names: list[str],
                 snapshot: ShardSnapshot | None = None) -> RetrainPlan:
    """Whether models `names` are out of date: the dataset has shards the last models did not see.

    Args:
        dataset_url, registry_url: the dataset and the model registry.
        names: registry names of the models to keep current.
        snapshot: the retrain run's shards; None = take one now.

    Returns:
        RetrainPlan: whether to retrain, why, the shards not yet seen and the snapshot's hash.
    """
    if snapshot is None and not complete_shards(dataset_url):
        # A scheduled run before the first synth-data is not a failure.
        return RetrainPlan(needed=False,
                           reason=f"nothing to do: {dataset_url} has no complete shards yet "
                                  "(missing, or synth-data has not finished a shard); run "
                                  "synth-data into it first.")
    snapshot = snapshot_for(dataset_url, snapshot)
    shards, digest = list(snapshot.shards), snapshot.dataset_hash
    registry = ModelRegistry(registry_url)
    stale = []
    for name in names:
        record = registry.latest(name)
        seen = set(record.extra.get("shards", [])) if record else set()
        raw = record and record.extra.get("raw_dataset_hash", record.dataset_hash)
        if record is None or raw != digest:
            stale.append((name, sorted(set(shards) - seen), record is None))
    if not stale:
        return RetrainPlan(needed=False, dataset_hash=digest,
                           reason=f"nothing to do: {', '.join(names)} are up to date with the "
                                  f"{len(shards)} complete shard(s) of {dataset_url}.")
    new = sorted({s for _, shard_list, _ in stale for s in shard_list})
    parts = [f"{n} ({'never trained' if missing else f'{len(s)} new shard(s)' if s else 'shards changed'})"
             for n, s, missing in stale]
    return RetrainPlan(needed=True, reason="retraining: " + "; ".join(parts) + ".",
                       new_shards=tuple(new), dataset_hash=digest)
