"""Train the autoencoder of a map modality (mask: MSE, sketch: binary cross-entropy, others: their spec's loss)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np
import torch

from mm2latent_core.errors import TrainingError
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.models.autoencoders import AutoencoderCfg, SpatialAutoencoder, official_variant
from mm2latent.presets import PresetCfg
from mm2latent.seeding import derive_seed, seeded_init
from mm2latent.training import data
from mm2latent.training.augment import random_affine_flip
from mm2latent.training.config import AutoencoderTrainCfg
from mm2latent.training.input_checks import check_input_files
from mm2latent.training.loop import ProgressFn, TrainJob, fit, load_trained_model
from mm2latent.training.reports import TrainReport
from mm2latent.training.snapshot import ShardSnapshot, snapshot_for

logger = logging.getLogger(__name__)


def to_network_input(maps: torch.Tensor, ae_cfg: AutoencoderCfg,
                     registry: ModalityRegistry | None = None) -> torch.Tensor:
    """(B, C, R, R) float input of the autoencoder from stored uint8 maps (B, R, R).

    The conversion is the MapInput.to_input of the modality the autoencoder is for (ae_cfg.kind),
    looked up in `registry` (None = default_registry()).
    """
    return (registry or default_registry()).map_input(ae_cfg.kind).to_input(maps, ae_cfg)


def reconstruction_loss(model: SpatialAutoencoder, maps: torch.Tensor,
                        registry: ModalityRegistry | None = None) -> torch.Tensor:
    """The modality's MapInput.ae_loss of a batch: MSE (mask), BCE-with-logits (sketch), ..."""
    map_input = (registry or default_registry()).map_input(model.cfg.kind)
    x = map_input.to_input(maps, model.cfg)  # (B, C, R, R)
    return map_input.ae_loss(model(x), x)


def preset_autoencoder(preset: PresetCfg, modality: str, recipe: str = "ours",
                       registry: ModalityRegistry | None = None) -> AutoencoderCfg:
    """The architecture a training run of `modality`'s autoencoder builds.

    Args:
        preset: the resolved preset; the modality's MapInput.autoencoder picks its config.
        modality: a map modality of `registry`.
        recipe: "ours", or "official" for the authors' network (mask and sketch only).
        registry: where `modality` is looked up; None = default_registry().
    """
    ae_cfg = (registry or default_registry()).map_input(modality).autoencoder(preset)
    return official_variant(ae_cfg) if recipe == "official" else ae_cfg


def build_autoencoder(ae_cfg: AutoencoderCfg, seed: int) -> SpatialAutoencoder:
    """A freshly initialised autoencoder; its weights depend only on (ae_cfg, seed)."""
    with seeded_init(derive_seed(seed, "init", ae_cfg.kind)):
        return SpatialAutoencoder(ae_cfg)


def autoencoder_job(indices: np.ndarray, maps: torch.Tensor, ae_cfg: AutoencoderCfg,
                    cfg: AutoencoderTrainCfg) -> TrainJob:
    """A TrainJob over in-memory maps (N, R, R) with the index-based hold-out split."""
    if ae_cfg.kind != cfg.modality:
        raise TrainingError(f"autoencoder config is for {ae_cfg.kind!r} but training data is "
                            f"{cfg.modality!r}.")
    if maps.shape[1:] != (ae_cfg.resolution, ae_cfg.resolution):
        raise TrainingError(f"maps are {tuple(maps.shape[1:])} px, the autoencoder expects "
                            f"{ae_cfg.resolution} px.")
    train_pos, val_pos = data.split_positions(indices, cfg.val_fraction, cfg.split_seed)
    model = build_autoencoder(ae_cfg, cfg.seed)
    device = torch.device(cfg.device)

    def batches(positions: np.ndarray, seed: int | None):
        for i, pos in enumerate(data.shuffled_batches(positions, cfg.batch_size, seed)):
            batch = maps.index_select(0, pos)  # (B, R, R)
            if cfg.augment and seed is not None:  # training batches only
                batch = random_affine_flip(batch, derive_seed(seed, "augment", i))
            yield {"maps": batch.to(device)}

    return TrainJob(
        model=model,
        loss_fn=lambda batch, _noise: (reconstruction_loss(model, batch["maps"], cfg.modalities), {}),
        train_batches=lambda epoch: batches(train_pos, derive_seed(cfg.seed, "shuffle", epoch)),
        val_batches=(lambda: batches(val_pos, None)) if len(val_pos) else None,
        extra_config={"autoencoder": dataclasses.asdict(ae_cfg)},
    )


def train_autoencoder(dataset_url: str, run_url: str, ae_cfg: AutoencoderCfg,
                      cfg: AutoencoderTrainCfg, resume: bool = False,
                      on_progress: ProgressFn | None = None,
                      stop_after_epoch: int | None = None, real_dir: str | None = None,
                      snapshot: ShardSnapshot | None = None) -> TrainReport:
    """Train one autoencoder on a dataset's complete shards (+ real PNGs); fit's report with
    num_samples filled in.

    Args:
        dataset_url: synth-data dataset root.
        run_url: checkpoint directory of this run.
        ae_cfg: architecture (e.g. get_preset("tiny").mask_ae).
        cfg: optimiser / loop settings; cfg.modality must match ae_cfg.kind.
        resume: continue from run_url's latest checkpoint.
        on_progress: called with 1 per finished epoch.
        stop_after_epoch: stop this call after that many epochs (resume later).
        real_dir: optional directory of real `*.png` masks / sketches trained on as well
            (see data.load_png_dir); they are split by the same hold-out rule.
        snapshot: the run's shards (see training/snapshot.py); None = take one now.
    """
    snapshot = snapshot_for(dataset_url, snapshot)
    digest = snapshot.dataset_hash
    # The maps below come from the tars (and the modality check from the parquets): hashed once here.
    check_input_files(dataset_url, ("tar", "parquet"), snapshot.shards)
    indices, maps = data.load_spatial(dataset_url, cfg.modality, ae_cfg.resolution, snapshot.shards,
                                      cfg.modality_registry, check=False)
    if real_dir is not None:
        real_ids, real_maps, real_digest = data.load_png_dir(
            real_dir, cfg.modality, ae_cfg.resolution, ae_cfg.num_classes, cfg.modality_registry)
        indices = np.concatenate([indices, real_ids])
        maps = torch.cat([maps, real_maps])  # (N + M, R, R)
        digest = hashlib.sha256(f"{digest}:{real_digest}".encode()).hexdigest()
    job = autoencoder_job(indices, maps, ae_cfg, cfg)
    report = fit(job, cfg, run_url, digest, resume, on_progress, stop_after_epoch)
    return dataclasses.replace(report, num_samples=int(len(indices)))


def _autoencoder_from_extra(extra: dict) -> SpatialAutoencoder:
    spec = dict(extra["autoencoder"])
    spec["widths"] = tuple(spec["widths"])
    return SpatialAutoencoder(AutoencoderCfg(**spec))


def load_autoencoder(checkpoint_url: str) -> SpatialAutoencoder:
    """The autoencoder stored in a training checkpoint, in eval mode (architecture from the file)."""
    model, _ = load_trained_model(checkpoint_url, _autoencoder_from_extra)
    return model
