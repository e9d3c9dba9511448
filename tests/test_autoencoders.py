"""Mask and sketch autoencoders: shapes, configs, input encodings, speed, and that they learn."""

from __future__ import annotations


import pytest
import torch

from mm2latent.errors import ConfigError
from mm2latent.losses import mask_reconstruction_loss, sketch_reconstruction_loss
from mm2latent.models.autoencoders import (
    GREY_LEVEL_STEP,
    AutoencoderCfg,
    SpatialAutoencoder,
    decode_to_mask,
    decode_to_sketch,
    mask_to_input,
    sketch_to_input,
)
from mm2latent.presets import AUTOENCODER_PRESETS, component_preset
from mm2latent.seeding import seeded_init

# The authors' grey-level mask input at this project's size and layout.
GREY_MASK = AutoencoderCfg(in_channels=1, mask_encoding="grey")


def build(name: str, seed: int = 0, **overrides: object) -> SpatialAutoencoder:
    with seeded_init(seed):
        return SpatialAutoencoder(component_preset(AUTOENCODER_PRESETS, name, **overrides))


@pytest.mark.parametrize("name", sorted(AUTOENCODER_PRESETS))
def test_every_preset_encodes_to_512_and_reconstructs_input_shape(name: str) -> None:
    model = build(name).eval()
    cfg = model.cfg
    x = torch.rand(1, cfg.in_channels, cfg.resolution, cfg.resolution)
    with torch.no_grad():
        z = model.encode(x)
        recon = model.decode(z)
    assert z.shape == (1, 512)
    assert recon.shape == x.shape
    assert torch.isfinite(recon).all()
    if cfg.kind == "mask":  # Sigmoid output, compared with MSE
        assert recon.min() >= 0 and recon.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), recon)


def test_authors_resolution_and_widths_are_the_defaults() -> None:
    cfg = AutoencoderCfg()
    assert cfg.resolution == 256
    assert cfg.widths == (16, 32, 32, 16, 8)
    assert cfg.bottleneck_shape == (8, 8, 8)  # 8 channels x 8 x 8 = 512, no FC layer


def test_bottleneck_mismatch_is_a_config_error_with_the_arithmetic() -> None:
    with pytest.raises(ConfigError, match=r"16 \* 8\*\*2 = 1024"):
        AutoencoderCfg(widths=(16, 32, 32, 16, 16))
    with pytest.raises(ConfigError, match="not divisible"):
        AutoencoderCfg(resolution=100)


def test_in_channels_must_match_the_encoding() -> None:
    with pytest.raises(ConfigError, match="expected 1"):
        AutoencoderCfg(mask_encoding="grey")  # in_channels still 19
    with pytest.raises(ConfigError, match="expected 19"):
        AutoencoderCfg(in_channels=1)


def test_unknown_preset_and_field_list_the_valid_choices() -> None:
    with pytest.raises(ConfigError, match="tiny_mask"):
        component_preset(AUTOENCODER_PRESETS, "huge")
    with pytest.raises(ConfigError, match="widths"):
        component_preset(AUTOENCODER_PRESETS, "tiny_mask", width=3)


def test_wrong_input_shape_names_the_dimension_and_expected_value() -> None:
    model = build("tiny_mask")
    with pytest.raises(ValueError, match="dimension C is 1, expected 19"):
        model.encode(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="dimension H is 32, expected 64"):
        model.encode(torch.zeros(1, 19, 32, 64))
    with pytest.raises(ValueError, match=r"\(B, 512\)"):
        model.decode(torch.zeros(1, 256))


def test_seeded_construction_is_deterministic_and_seed_dependent() -> None:
    a, b, c = build("tiny_sketch", 3), build("tiny_sketch", 3), build("tiny_sketch", 4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.encoder[0].weight, c.encoder[0].weight)


@pytest.mark.parametrize("encoding", ["onehot", "grey"])
def test_mask_encoding_round_trips_every_class(encoding: str) -> None:
    channels = 19 if encoding == "onehot" else 1
    cfg = component_preset(AUTOENCODER_PRESETS, "tiny_mask", mask_encoding=encoding,
                           in_channels=channels)
    mask = torch.arange(19, dtype=torch.uint8).repeat(2, 64, 4)[:, :, :64]  # (2, 64, 64)
    x = mask_to_input(mask, cfg)
    assert x.shape == (2, channels, 64, 64)
    assert torch.equal(decode_to_mask(x, cfg), mask)


def test_grey_levels_are_the_authors_png_values_and_onehot_is_exclusive() -> None:
    mask = torch.tensor([[[0, 2, 18]]], dtype=torch.uint8)
    grey = mask_to_input(mask, GREY_MASK)
    torch.testing.assert_close(grey[0, 0, 0], torch.tensor([0.0, 20 / 255, 180 / 255]))
    assert GREY_LEVEL_STEP == pytest.approx(10 / 255)
    onehot = mask_to_input(mask, AUTOENCODER_PRESETS["mask"])
    assert torch.equal(onehot.sum(dim=1), torch.ones(1, 1, 3))
    assert onehot[0, 18, 0, 2] == 1 and onehot[0, 2, 0, 1] == 1


def test_grey_decoding_rounds_to_the_nearest_level() -> None:
    cfg = GREY_MASK
    recon = torch.tensor([3.4, 3.6, 40.0, -1.0]).mul(GREY_LEVEL_STEP).reshape(1, 1, 1, 4)
    assert decode_to_mask(recon, cfg).tolist() == [[[3, 4, 18, 0]]]


def test_mask_to_input_rejects_out_of_range_and_float_masks() -> None:
    cfg = AUTOENCODER_PRESETS["mask"]
    with pytest.raises(ValueError, match=r"\[0, 19\)"):
        mask_to_input(torch.full((1, 4, 4), 19, dtype=torch.uint8), cfg)
    with pytest.raises(ValueError, match="integer"):
        mask_to_input(torch.zeros(1, 4, 4), cfg)
    with pytest.raises(ConfigError):
        mask_to_input(torch.zeros(1, 4, 4, dtype=torch.uint8), AUTOENCODER_PRESETS["sketch"])


def test_sketch_helpers_binarise_and_threshold_at_logit_zero() -> None:
    cfg = AUTOENCODER_PRESETS["tiny_sketch"]
    x = sketch_to_input(torch.tensor([[[0, 250, 3]]], dtype=torch.uint8), cfg)
    assert x.tolist() == [[[[0.0, 1.0, 1.0]]]]
    assert decode_to_sketch(torch.tensor([[[[-0.1, 0.1, 5.0]]]])).tolist() == [[[0, 1, 1]]]


@pytest.mark.parametrize("name", ["tiny_mask", "tiny_sketch"])
def test_a_few_adam_steps_reduce_the_reconstruction_loss(name: str) -> None:
    model = build(name, resolution=32, widths=(8, 8))  # 8 x 8**2 = 512 still; fast to train
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    if cfg.kind == "mask":  # blocky masks: 4x4 cells of random classes
        cells = torch.randint(0, 19, (8, 8, 8), generator=gen, dtype=torch.uint8)
        x = mask_to_input(cells.repeat_interleave(4, 1).repeat_interleave(4, 2), cfg)
        loss_fn = mask_reconstruction_loss
    else:
        x = (torch.rand(8, 1, 32, 32, generator=gen) < 0.1).float()
        loss_fn = sketch_reconstruction_loss
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = loss_fn(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses  # a detached or broken path stays flat
