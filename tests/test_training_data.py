"""Hold-out split, dataset hash and batching of mm2latent.training.data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mm2latent_core.errors import ConfigError, TrainingError
from mm2latent.training import data
from mm2latent.training.config import MappingTrainCfg, TrainCfg, autoencoder_train_cfg
from storage.dataset_index import DatasetIndex
from mm2latent.fabricate.learnable import write_learnable_dataset, write_learnable_shard


def test_split_is_stable_when_the_dataset_grows_and_has_the_requested_share():
    small = data.is_validation(np.arange(500), 0.1, split_seed=3)
    grown = data.is_validation(np.arange(4000), 0.1, split_seed=3)
    assert np.array_equal(grown[:500], small)  # old samples never change side
    assert 0.08 < grown.mean() < 0.12
    other_seed = data.is_validation(np.arange(4000), 0.1, split_seed=4)
    assert not np.array_equal(grown, other_seed)
    assert not data.is_validation(np.arange(100), 0.0).any()


def test_split_positions_raises_when_nothing_is_left_to_train():
    with pytest.raises(TrainingError, match="no training samples"):
        data.split_positions(np.arange(0), 0.1)


def test_shuffled_batches_cover_each_position_once_and_are_seeded():
    positions = np.arange(10, 31)
    first = list(data.shuffled_batches(positions, 4, seed=7))
    again = list(data.shuffled_batches(positions, 4, seed=7))
    other = torch.cat(list(data.shuffled_batches(positions, 4, seed=8)))
    assert sorted(torch.cat(first).tolist()) == positions.tolist()
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(torch.cat(first), other)
    assert [len(b) for b in data.shuffled_batches(positions, 4, None, min_size=2)] == [4] * 5
    assert torch.cat(list(data.shuffled_batches(positions, 4, None))).tolist() == positions.tolist()


def test_dataset_hash_changes_only_when_complete_shards_change(mem_url):  # noqa: F811
    write_learnable_dataset(mem_url, n_shards=1, per_shard=4, planned_shards=2)
    before = data.dataset_hash(mem_url)
    assert data.dataset_hash(mem_url) == before
    write_learnable_shard(mem_url, 1, [4, 5, 6, 7])
    assert data.dataset_hash(mem_url) != before
    assert data.dataset_hash(mem_url, [0]) == before


def test_empty_dataset_is_a_training_error(mem_url):  # noqa: F811
    from mm2latent.fabricate.datasets import make_index

    make_index(4, 4).write(mem_url)
    assert DatasetIndex.exists(mem_url)
    with pytest.raises(TrainingError, match="empty dataset"):
        data.dataset_hash(mem_url)


def test_load_spatial_resizes_masks_without_blending_labels(mem_url):  # noqa: F811
    write_learnable_dataset(mem_url, n_shards=1, per_shard=3)
    indices, masks = data.load_spatial(mem_url, "mask", 32)
    assert indices.tolist() == [0, 1, 2] and masks.shape == (3, 32, 32)
    assert set(masks.unique().tolist()) == {0, 1, 2}  # nearest: no in-between ids
    _, sketches = data.load_spatial(mem_url, "sketch", 32)
    assert set(sketches.unique().tolist()) == {0, 1}


def test_configs_reject_bad_values_and_name_the_choices():
    with pytest.raises(ConfigError, match="cosine, step, none"):
        TrainCfg(schedule="linear")
    with pytest.raises(ConfigError, match="mask, sketch, flame"):
        MappingTrainCfg(modality="3dmm")
    with pytest.raises(ConfigError, match="needs a validation split"):
        TrainCfg(patience=3, val_fraction=0.0)
    with pytest.raises(ConfigError, match="Unknown training option"):
        autoencoder_train_cfg("mask", epoch=3)
    assert autoencoder_train_cfg("sketch").lr == 1e-2 and autoencoder_train_cfg("mask").lr == 1e-3
    assert TrainCfg(lr=1e-3).digest() != TrainCfg(lr=2e-3).digest()
