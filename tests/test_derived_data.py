"""Derived data (embeddings) is named after the model that made it and bound to the shards it read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mm2latent.errors import TrainingError
from mm2latent.presets import get_preset
from mm2latent.training import data
from mm2latent.training.autoencoders import load_autoencoder, to_network_input
from mm2latent.training.config import autoencoder_train_cfg
from mm2latent.training.embeddings import read_embeddings, write_embeddings
from mm2latent.training.pipeline import autoencoder_run
from storage.fs import join
from tests.fabricate_training import write_learnable_dataset, write_learnable_shard

# 32 px, two stages: the tiny family at a fraction of the cost.
AE = dataclasses.replace(get_preset("tiny").mask_ae, resolution=32, widths=(8, 8))


def _encoded(checkpoint_url: str, dataset_url: str) -> np.ndarray:
    model = load_autoencoder(checkpoint_url)
    _, maps = data.load_spatial(dataset_url, "mask", model.cfg.resolution)
    with torch.no_grad():
        return model.encode(to_network_input(maps, model.cfg)).numpy()  # (N, D)


def test_two_registries_on_one_dataset_keep_their_own_embeddings(tmp_path):
    dataset = str(tmp_path / "data")
    write_learnable_dataset(dataset, n_shards=1, per_shard=8)
    reports = []
    for out, seed in (("runs-a", 1), ("runs-b", 2)):
        cfg = autoencoder_train_cfg("mask", epochs=1, batch_size=4, val_fraction=0.0, seed=seed)
        runs = str(tmp_path / out)
        reports.append(autoencoder_run(dataset, runs, join(runs, "registry"), AE, cfg))
    tags = [r.record.extra["embeddings"] for r in reports]
    assert [r.record.version for r in reports] == [1, 1]  # same tag in each registry...
    assert tags[0] != tags[1]  # ...but the embeddings live apart
    for report, tag in zip(reports, tags):
        _, vectors = read_embeddings(dataset, tag, "mask")
        np.testing.assert_allclose(vectors, _encoded(report.record.checkpoint_url, dataset),
                                   rtol=1e-5, atol=1e-6)


def test_embeddings_of_a_rewritten_shard_are_refused_then_redone(tmp_path):
    dataset = str(tmp_path / "data")
    write_learnable_dataset(dataset, n_shards=2, per_shard=4)
    cfg = autoencoder_train_cfg("mask", epochs=1, batch_size=4, val_fraction=0.0)
    report = autoencoder_run(dataset, str(tmp_path / "runs"), str(tmp_path / "runs" / "registry"),
                             AE, cfg)
    tag, checkpoint = report.record.extra["embeddings"], report.record.checkpoint_url
    write_learnable_shard(dataset, 0, [0, 1, 2, 3], members=("mask",))  # new tar bytes
    with pytest.raises(TrainingError, match="stale mask embeddings: shard 0 was rewritten"):
        read_embeddings(dataset, tag, "mask")
    again = write_embeddings(dataset, "mask", checkpoint, tag)
    assert again.written == (0,) and again.skipped == (1,)
    assert read_embeddings(dataset, tag, "mask")[0].tolist() == list(range(8))
