"""MappingNet training from parquet vectors: data checks, ablation switches, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from mm2latent.errors import TrainingError
from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.presets import get_preset
from mm2latent.training.config import MappingTrainCfg
from mm2latent.training.mapping import (load_mapping_arrays, load_mapping_net, mapping_net_cfg,
                                        train_mapping)
from tests.fabricate_training import DIMS, learnable_vectors, write_learnable_dataset

NET = MappingNetCfg(text_dim=16, spatial_dim=159, hidden_dim=32, depth=3, w_dim=16)


def test_flame_mapping_trains_from_parquet_and_its_checkpoint_reloads(mem_url, tmp_path):  # noqa: F811
    write_learnable_dataset(mem_url, n_shards=2, per_shard=8)
    cfg = MappingTrainCfg(modality="flame", epochs=2, batch_size=4, lr=1e-2)
    summary = train_mapping(mem_url, str(tmp_path), NET, cfg)
    assert summary.num_samples == 16 and summary.embeddings_version is None
    net = load_mapping_net(summary.checkpoint_url)
    arrays = load_mapping_arrays(mem_url, "flame", None)
    vec = learnable_vectors(3)
    assert np.allclose(arrays["farl"][3], vec["farl"], atol=1e-6)  # row 3 is sample 3
    with torch.no_grad():
        out = net(torch.tensor(arrays["farl"][:2]), torch.tensor(arrays["spatial"][:2]))
    assert out.shape == (2, 16) and not net.training


def test_dimension_mismatch_names_the_column_and_the_config_field(mem_url, tmp_path):  # noqa: F811
    write_learnable_dataset(mem_url, n_shards=1, per_shard=4)
    tiny = mapping_net_cfg(get_preset("tiny").mapping, "flame")  # 512-d text, dataset has 16-d farl
    with pytest.raises(TrainingError, match=r"farl vectors are 16-d but MappingNetCfg.text_dim = 512"):
        train_mapping(mem_url, str(tmp_path), tiny, MappingTrainCfg(modality="flame", epochs=1))
    assert not any(tmp_path.iterdir())


def test_missing_flame_column_or_embeddings_are_clear_errors(mem_url, tmp_path):  # noqa: F811
    dims = {k: v for k, v in DIMS.items() if k != "flame"}
    write_learnable_dataset(mem_url, n_shards=1, per_shard=4, dims=dims)
    with pytest.raises(TrainingError, match=r"cannot train a flame MappingNet.*flame"):
        train_mapping(mem_url, str(tmp_path), NET, MappingTrainCfg(modality="flame", epochs=1))
    mask_net = dataclasses.replace(NET, spatial_dim=512)
    with pytest.raises(TrainingError, match="run `mm2latent train autoencoders`"):
        train_mapping(mem_url, str(tmp_path), mask_net, MappingTrainCfg(modality="mask", epochs=1),
                      embeddings_version="mask-ae-v1")


def test_ablation_switches_reach_the_architecture():
    base = get_preset("tiny").mapping
    default = mapping_net_cfg(base, "mask")
    assert default == base
    ablated = mapping_net_cfg(base, "sketch", use_batchnorm=False, dropout=0.0, depth=4)
    assert (ablated.use_batchnorm, ablated.dropout, ablated.depth) == (False, 0.0, 4)
    assert mapping_net_cfg(base, "flame").spatial_dim == 159
    from mm2latent.models.mapping_net import MappingNet

    with torch.random.fork_rng():
        net = MappingNet(dataclasses.replace(ablated, hidden_dim=8))
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 4
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.Dropout)) for m in net.modules())


def test_pteg_switch_changes_training_and_batchnorm_drops_single_row_batches(mem_url, tmp_path):  # noqa: F811
    write_learnable_dataset(mem_url, n_shards=1, per_shard=9)  # 9 % 4 == 1: a one-row last batch
    losses = {}
    for pteg in (True, False):
        cfg = MappingTrainCfg(modality="flame", epochs=1, batch_size=4, val_fraction=0.0, pteg=pteg)
        summary = train_mapping(mem_url, str(tmp_path / str(pteg)), NET, cfg)
        losses[pteg] = summary.metrics.train_loss
        assert summary.history[0].step == 2  # the single-row batch was skipped (BatchNorm)
    assert losses[True] != losses[False]
