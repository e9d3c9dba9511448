"""Training checks its inputs: damaged parquet/tar bytes and absurd vectors are refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from mm2latent_core.errors import TrainingError
from mm2latent.presets import get_preset
from mm2latent.training.autoencoders import train_autoencoder
from mm2latent.training.config import autoencoder_train_cfg
from mm2latent.training.mapping import load_mapping_arrays
from storage.dataset_index import shard_url
from mm2latent.fabricate import learnable as fabricate_training
from mm2latent.fabricate.learnable import write_learnable_dataset


def _flip_one_bit(path: str) -> None:
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0x10
    with open(path, "wb") as f:
        f.write(bytes(data))


def test_a_flipped_bit_in_a_parquet_stops_mapping_training(tmp_path):
    dataset = str(tmp_path)
    write_learnable_dataset(dataset, n_shards=2, per_shard=8)
    assert len(load_mapping_arrays(dataset, "flame", None)["index"]) == 16
    _flip_one_bit(shard_url(dataset, 1, "parquet"))
    with pytest.raises(TrainingError, match=r"damaged training input \(shard 1: "
                                            r"shard-000001\.parquet has another sha256"):
        load_mapping_arrays(dataset, "flame", None)


def test_a_flipped_bit_in_a_tar_stops_autoencoder_training(tmp_path):
    dataset = str(tmp_path / "data")
    write_learnable_dataset(dataset, n_shards=1, per_shard=8)
    _flip_one_bit(shard_url(dataset, 0, "tar"))
    cfg = autoencoder_train_cfg("mask", epochs=1, batch_size=4, val_fraction=0.0)
    with pytest.raises(TrainingError, match=r"shard 0: shard-000000\.tar has another sha256"):
        train_autoencoder(dataset, str(tmp_path / "run"), get_preset("tiny").mask_ae, cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", [1e37, -5e6])  # non-finite ones never reach a manifest
def test_absurd_or_non_finite_vectors_are_refused_naming_shard_and_sample(tmp_path, monkeypatch, bad):
    honest = fabricate_training.learnable_vectors

    def with_one_bad(index, dims=fabricate_training.DIMS):
        vectors = honest(index, dims)
        if index == 11:
            vectors["flame"] = vectors["flame"].copy()
            vectors["flame"][3] = bad
        return vectors

    monkeypatch.setattr(fabricate_training, "learnable_vectors", with_one_bad)
    write_learnable_dataset(str(tmp_path), n_shards=2, per_shard=8)  # digests match the values
    with pytest.raises(TrainingError, match=r"shard 1, sample index 11: 'flame' holds"):
        load_mapping_arrays(str(tmp_path), "flame", None)
    assert np.isfinite(honest(11)["flame"]).all()
