"""Autoencoder training on learnable shape masks/sketches, and the embeddings written after it."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from mm2latent.errors import Mm2LatentError
from mm2latent.presets import get_preset
from mm2latent.training import data
from mm2latent.training.autoencoders import (build_autoencoder, load_autoencoder,
                                             reconstruction_loss, to_network_input,
                                             train_autoencoder)
from mm2latent.training.config import autoencoder_train_cfg
from mm2latent.training.embeddings import read_embeddings, write_embeddings
from storage.embeddings import embeddings_url
from tests.fabricate_training import write_learnable_dataset

TINY = get_preset("tiny")


@pytest.fixture(scope="module")
def shapes_url(tmp_path_factory) -> str:
    """Two shards x 16 samples of square-in-square masks and square outlines (64 px)."""
    url = str(tmp_path_factory.mktemp("shapes"))
    write_learnable_dataset(url, n_shards=2, per_shard=16)
    return url


@pytest.mark.parametrize("modality, epochs, lr", [("mask", 4, 1e-2), ("sketch", 8, 3e-2)])
def test_reconstruction_loss_falls_by_a_clear_margin(shapes_url, tmp_path, modality, epochs, lr):
    # 32 px, two stages (8 x 8 x 8 = 512-d bottleneck): the tiny family at a quarter of the cost.
    ae_cfg = dataclasses.replace(getattr(TINY, f"{modality}_ae"), resolution=32, widths=(8, 8))
    cfg = autoencoder_train_cfg(modality, epochs=epochs, batch_size=4, lr=lr, val_fraction=0.25)
    _, maps = data.load_spatial(shapes_url, modality, ae_cfg.resolution)
    with torch.no_grad():
        untrained = reconstruction_loss(build_autoencoder(ae_cfg, cfg.seed).eval(), maps).item()
    summary = train_autoencoder(shapes_url, str(tmp_path), ae_cfg, cfg)
    assert summary.num_samples == 32
    assert summary.history[-1].val_loss < 0.4 * untrained, (untrained, summary.history)


def test_embeddings_are_written_per_shard_and_match_the_encoder(shapes_url, tmp_path):
    cfg = autoencoder_train_cfg("mask", epochs=1, batch_size=8)
    summary = train_autoencoder(shapes_url, str(tmp_path / "run"), TINY.mask_ae, cfg)
    report = write_embeddings(shapes_url, "mask", summary.checkpoint_url, "mask-ae-v7", batch_size=5)
    assert report.written == (0, 1) and report.dim == 512
    with open(embeddings_url(shapes_url, "mask-ae-v7", 1), "rb") as f:
        table = pq.read_table(io.BytesIO(f.read()))
    assert table["key"].to_pylist()[0] == "000000016" and table.num_rows == 16
    indices, vectors = read_embeddings(shapes_url, "mask-ae-v7", "mask")
    _, maps = data.load_spatial(shapes_url, "mask", 64)
    model = load_autoencoder(summary.checkpoint_url)
    with torch.no_grad():
        expected = model.encode(to_network_input(maps[20:21], model.cfg))[0].numpy()
    assert indices.tolist() == list(range(32))
    np.testing.assert_allclose(vectors[20], expected, rtol=1e-5, atol=1e-6)
    again = write_embeddings(shapes_url, "mask", summary.checkpoint_url, "mask-ae-v7")
    assert again.written == () and again.skipped == (0, 1)


def test_dataset_without_the_modality_is_a_clear_error(mem_url, tmp_path):  # noqa: F811
    write_learnable_dataset(mem_url, n_shards=1, per_shard=4, members=("mask",))
    cfg = autoencoder_train_cfg("sketch", epochs=1)
    with pytest.raises(Mm2LatentError, match="4 of 4 samples have no 'sketch'"):
        train_autoencoder(mem_url, str(tmp_path), TINY.sketch_ae, cfg)
    assert not any(tmp_path.iterdir())  # nothing written


def test_real_png_directory_joins_training_and_bad_files_are_named(shapes_url, tmp_path):
    from PIL import Image

    from tests.fabricate_training import shape_maps

    real = tmp_path / "real"
    real.mkdir()
    for i in range(3):
        Image.fromarray(shape_maps(500 + i, size=128)[0]).save(real / f"{i:05d}.png")
    ids, maps, digest = data.load_png_dir(str(real), "mask", 64)
    assert maps.shape == (3, 64, 64) and (ids < 0).all() and len(set(ids.tolist())) == 3
    cfg = autoencoder_train_cfg("mask", epochs=1, batch_size=16)
    summary = train_autoencoder(shapes_url, str(tmp_path / "run"), TINY.mask_ae, cfg, real_dir=str(real))
    assert summary.num_samples == 32 + 3
    Image.fromarray(np.full((8, 8, 3), 40, np.uint8)).save(real / "colour.png")
    with pytest.raises(Mm2LatentError, match=r"colour.png: a mask must be a single-channel"):
        data.load_png_dir(str(real), "mask", 64)
    Image.fromarray(np.full((8, 8), 40, np.uint8)).save(real / "colour.png")
    with pytest.raises(Mm2LatentError, match=r"colour.png: label 40 >= 19 classes"):
        data.load_png_dir(str(real), "mask", 64)
    assert data.load_png_dir(str(real), "sketch", 64)[2] != digest
