"""Train a MappingNet for one spatial modality: [pseudo text ; spatial embedding] -> w.

Inputs come from parquet only: w and the FaRL image embedding f from the dataset manifests,
the spatial embedding from `embeddings/<version>/` (mask, sketch) or the manifests' `flame`
column. Each step draws a fresh pseudo text embedding y = norm(f + e/|e|) (PTEG) and
minimises mean((w - w_hat)^2) + lambda * mean(1 - cos(w, w_hat)).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from mm2latent_core.errors import DatasetError, TrainingError
from mm2latent.losses import mapping_loss
from mm2latent_core.modalities.network_input import VectorInput
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.models.mapping_net import (MappingNet, MappingNetCfg, PseudoTextCfg,
                                          pseudo_text_embedding)
from mm2latent.seeding import derive_seed, seeded_init
from mm2latent.training import data
from mm2latent.training.config import MappingTrainCfg
from mm2latent.captions.embeddings import read_text_embeddings
from mm2latent.training.embeddings import read_embeddings
from mm2latent.training.input_checks import check_input_files, check_vectors
from mm2latent.training.loop import ProgressFn, TrainJob, fit, load_trained_model
from mm2latent.training.reports import MappingTrainReport
from mm2latent.training.snapshot import ShardSnapshot, snapshot_for
from storage.readers import read_vectors

logger = logging.getLogger(__name__)


def mapping_net_cfg(base: MappingNetCfg, modality: str, use_batchnorm: bool | None = None,
                    dropout: float | None = None, depth: int | None = None,
                    registry: ModalityRegistry | None = None) -> MappingNetCfg:
    """The preset's MappingNet config for `modality` with the ablation switches applied.

    Args:
        base: the preset's MappingNetCfg (e.g. get_preset("tiny").mapping).
        modality: a map ("mask", "sketch": spatial_dim kept) or a vector condition ("flame":
            spatial_dim = its VectorInput.dim, 159).
        use_batchnorm: BatchNorm1d on the input (paper Table 3); None = the preset's.
        dropout: input Dropout probability, 0 = none; None = the preset's.
        depth: number of Linear layers (paper Table 2); None = the preset's.
        registry: where `modality` is looked up; None = default_registry().
    """
    switches = {"use_batchnorm": use_batchnorm, "dropout": dropout, "depth": depth}
    cfg = dataclasses.replace(base, **{k: v for k, v in switches.items() if v is not None})
    condition = (registry or default_registry()).condition(modality)
    if isinstance(condition, VectorInput):
        return dataclasses.replace(cfg, spatial_dim=condition.dim)
    return cfg


def load_mapping_arrays(dataset_url: str, modality: str, embeddings_version: str | None,
                        shards: Sequence[int] | None = None,
                        registry: ModalityRegistry | None = None) -> dict[str, np.ndarray]:
    """{index (N,), farl (N, Dt) unit rows, spatial (N, Ds), w (N, Dw)} aligned by sample index.

    Args:
        dataset_url: dataset root.
        modality: a condition of `registry`: "mask", "sketch" or "flame" by default.
        embeddings_version: embeddings directory for a map condition (e.g. "mask-ae-v1");
            unused for a vector condition (flame), whose manifest column is read instead.
        registry: the modalities; None = default_registry().
    """
    vector = isinstance((registry or default_registry()).condition(modality), VectorInput)
    columns = ("w", "farl", modality) if vector else ("w", "farl")
    check_input_files(dataset_url, ("parquet",), shards)  # the vectors below come from the parquets
    try:
        arrays = read_vectors(dataset_url, ("shard", *columns), shards, check=False)  # hashed above
    except DatasetError as e:
        raise TrainingError(f"cannot train a {modality} MappingNet on {dataset_url}: {e}") from e
    if len(arrays["index"]) == 0:
        raise TrainingError(f"{dataset_url}: empty dataset (no 'ok' samples in complete shards).")
    check_vectors(dataset_url, arrays, columns)
    if vector:
        arrays["spatial"] = arrays.pop(modality)
    else:
        if embeddings_version is None:
            raise TrainingError(f"a {modality} MappingNet needs autoencoder embeddings; pass the "
                                "embeddings version (run `mm2latent train autoencoders` first).")
        index, spatial = read_embeddings(dataset_url, embeddings_version, modality, shards)
        if not np.array_equal(index, arrays["index"]):
            raise TrainingError(f"{dataset_url}: embeddings {embeddings_version!r} cover "
                                f"{len(index)} samples, the manifests {len(arrays['index'])}. "
                                "Fix: re-run `mm2latent train autoencoders` to re-encode.")
        arrays["spatial"] = spatial
        check_vectors(dataset_url, arrays, ("spatial",))
    farl = torch.from_numpy(np.array(arrays["farl"], dtype=np.float32))  # writable copy
    arrays["farl"] = F.normalize(farl, dim=1).numpy()  # PTEG needs unit-norm image embeddings
    return arrays


def _check_dims(arrays: dict[str, np.ndarray], net_cfg: MappingNetCfg, modality: str) -> None:
    """TrainingError naming the column whose width differs from the MappingNet config."""
    expected = {"farl": ("text_dim", net_cfg.text_dim), "spatial": ("spatial_dim", net_cfg.spatial_dim),
                "w": ("w_dim", net_cfg.w_dim)}
    if "caption" in arrays:  # "mixed" text input: captions stand in for the image embedding
        expected["caption"] = ("text_dim", net_cfg.text_dim)
    for column, (field, want) in expected.items():
        got = arrays[column].shape[1]
        if got != want:
            name = modality if column == "spatial" else column
            raise TrainingError(f"embedding-dimension mismatch: {name} vectors are {got}-d but "
                                f"MappingNetCfg.{field} = {want}. Fix: use the preset that made the "
                                "dataset, or matching autoencoder embeddings.")


def mapping_data_hash(dataset_hash: str, embeddings_version: str | None) -> str:
    """Hash of a MappingNet's training data: the shards' hash plus the embeddings version."""
    # Embeddings are part of the training data: a new autoencoder means a different dataset.
    text = f"{dataset_hash}:{embeddings_version}"
    return hashlib.sha256(text.encode()).hexdigest()


def _caption_text(dataset_url: str, version: str, shards: Sequence[int],
                  index: np.ndarray) -> np.ndarray:
    """(N, Dt) caption text embeddings of the samples `index` (every ok sample has a caption)."""
    text_index, text = read_text_embeddings(dataset_url, version, shards)
    if not np.array_equal(text_index, index):
        raise TrainingError(f"{dataset_url}: caption embeddings {version!r} cover {len(text_index)} "
                            f"samples, the manifests {len(index)}. Fix: rerun `mm2latent dataset "
                            "captions` on this dataset.")
    return text


def caption_mask(indices: np.ndarray, share: float, seed: int, draw_key: object) -> torch.Tensor:
    """(N,) bool: which samples of a "mixed" batch read their caption's text embedding.

    Drawn per sample from (seed, draw_key, index) with probability `share`, so batch size,
    shuffling and resuming never change which samples read captions in an epoch.
    """
    return torch.from_numpy(data.sample_draws(indices, seed, "caption", draw_key) < share)


def mapping_job(arrays: dict[str, np.ndarray], net_cfg: MappingNetCfg, cfg: MappingTrainCfg,
                real_text: bool = False, caption_share: float | None = None) -> TrainJob:
    """A TrainJob for the MappingNet over aligned in-memory vectors.

    real_text: arrays["farl"] holds text embeddings, fed as they are, without PTEG noise.
    caption_share: "mixed" text input: arrays["caption"] holds the captions' text embeddings;
    each sample reads its caption's with this probability per epoch (caption_mask), else the
    PTEG embedding of arrays["farl"]. None = no captions.
    """
    _check_dims(arrays, net_cfg, cfg.modality)
    if net_cfg.output != "w":
        raise TrainingError("the dataset stores one w per sample; train with output='w'.")
    train_pos, val_pos = data.split_positions(arrays["index"], cfg.val_fraction, cfg.split_seed)
    with seeded_init(derive_seed(cfg.seed, "init", "mapping")):
        model = MappingNet(net_cfg)
    device = torch.device(cfg.device)
    names = ("farl", "spatial", "w") + (("caption",) if caption_share is not None else ())
    tensors = {k: torch.tensor(arrays[k], device=device) for k in names}  # copies
    indices = np.asarray(arrays["index"])
    pteg = PseudoTextCfg(enabled=cfg.pteg and not real_text, noise_norm=cfg.pteg_noise_norm)
    min_size = 2 if net_cfg.use_batchnorm else 1  # BatchNorm1d cannot train on a single row

    def loss_fn(batch: dict[str, torch.Tensor], noise: torch.Generator):
        # Noise is drawn on the CPU generator so runs match across devices' RNGs.
        # Every row draws its noise, captioned or not: a share of 0 is exactly the PTEG run.
        y = pseudo_text_embedding(batch["farl"].cpu(), noise, pteg).to(device)  # (B, Dt)
        if "use_caption" in batch:
            y = torch.where(batch["use_caption"][:, None], batch["caption"], y)  # (B, Dt)
        w_hat = model(y, batch["spatial"])  # (B, Dw)
        return mapping_loss(w_hat, batch["w"], cfg.cosine_weight, cfg.distance)

    def batches(positions: np.ndarray, seed: int | None, keep: int, draw_key: object):
        for pos in data.shuffled_batches(positions, cfg.batch_size, seed, keep):
            batch = data.gather(tensors, pos.to(device))
            if caption_share is not None:
                batch["use_caption"] = caption_mask(indices[pos.numpy()], caption_share, cfg.seed,
                                                    draw_key).to(device)
            yield batch

    return TrainJob(
        model=model, loss_fn=loss_fn,
        train_batches=lambda epoch: batches(train_pos, derive_seed(cfg.seed, "shuffle", epoch),
                                            min_size, epoch),
        # Validation draws one fixed mix, so its loss compares across epochs.
        val_batches=(lambda: batches(val_pos, None, 1, "val")) if len(val_pos) else None,
        extra_config={"mapping_net": dataclasses.asdict(net_cfg)},
    )


def train_mapping(dataset_url: str, run_url: str, net_cfg: MappingNetCfg, cfg: MappingTrainCfg,
                  embeddings_version: str | None = None, resume: bool = False,
                  on_progress: ProgressFn | None = None, stop_after_epoch: int | None = None,
                  snapshot: ShardSnapshot | None = None,
                  text_embeddings: str | None = None,
                  caption_share: float | None = None) -> MappingTrainReport:
    """Train a MappingNet for cfg.modality; fit's report plus num_samples and embeddings_version.

    Args:
        dataset_url: dataset root (manifests with w, farl and, for flame, flame).
        run_url: checkpoint directory of this run.
        net_cfg: architecture, e.g. mapping_net_cfg(get_preset("tiny").mapping, "mask").
        cfg: loop and loss settings (cosine_weight, pteg, ...).
        embeddings_version: autoencoder embeddings to read for mask / sketch.
        resume: continue from run_url's latest checkpoint.
        on_progress: called with 1 per finished epoch.
        stop_after_epoch: stop this call after that many epochs (resume later).
        snapshot: the run's shards (see training/snapshot.py); None = take one now.
        text_embeddings: caption text embeddings version to feed as the text input (no PTEG
            noise: they are real text embeddings); None = the paper's PTEG of the image's FaRL.
        caption_share: with text_embeddings, mix: each sample reads its caption's embedding
            with this probability per epoch, else PTEG (see mapping_job); None = captions only.
    """
    snapshot = snapshot_for(dataset_url, snapshot)
    version = embeddings_version if cfg.modality in cfg.modalities.maps else None
    arrays = load_mapping_arrays(dataset_url, cfg.modality, version, snapshot.shards,
                                 cfg.modality_registry)
    mixed = text_embeddings is not None and caption_share is not None
    if text_embeddings is not None:
        text = _caption_text(dataset_url, text_embeddings, snapshot.shards, arrays["index"])
        arrays["caption" if mixed else "farl"] = text
    job = mapping_job(arrays, net_cfg, cfg, real_text=text_embeddings is not None and not mixed,
                      caption_share=caption_share if mixed else None)
    digest = mapping_data_hash(snapshot.dataset_hash, version)
    report = fit(job, cfg, run_url, digest, resume, on_progress, stop_after_epoch)
    fields = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
    fields["num_samples"] = int(len(arrays["index"]))
    return MappingTrainReport(**fields, embeddings_version=version)


def _mapping_from_extra(extra: dict) -> MappingNet:
    return MappingNet(MappingNetCfg(**extra["mapping_net"]))


def load_mapping_net(checkpoint_url: str) -> MappingNet:
    """The MappingNet stored in a training checkpoint, in eval mode (architecture from the file)."""
    model, _ = load_trained_model(checkpoint_url, _mapping_from_extra)
    return model
