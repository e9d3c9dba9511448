"""The authors' released autoencoders and MappingNets: safe Lightning reading, exact networks,
exact inputs, registry entries, the ffhq-official preset and the official training recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mm2latent import inference, model_loading, presets, weights
from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.autoencoders import (OFFICIAL_STROKE_VALUE,
                                           decode_to_mask, mask_to_input, official_variant,
                                           sketch_to_input)
from mm2latent.models.face_parser.labels import CELEBAMASK_HQ_CLASSES, FACER_CELEBM_CLASSES
from mm2latent.models.lightning_checkpoint import read_lightning_checkpoint
from mm2latent.models.official_models import (load_official_mask_autoencoder,
                                              load_official_sketch_autoencoder)
from mm2latent.presets import AUTOENCODER_PRESETS
from mm2latent.training.augment import random_affine_flip
from mm2latent.training.autoencoders import reconstruction_loss
from mm2latent.training.config import autoencoder_train_cfg
from tests.fabricate_official import (lightning_modules, mask_ae_shapes,
                                      place_released_mask_models, random_state, sketch_ae_shapes,
                                      tiny_official_preset, write_lightning_1x)


@pytest.fixture(scope="module")
def mask_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_state(mask_ae_shapes(), seed=1)
    return write_lightning_1x(tmp_path_factory.mktemp("ae") / "mask.ckpt", state), state


@pytest.fixture(scope="module")
def sketch_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_state(sketch_ae_shapes(), seed=2)
    return write_lightning_1x(tmp_path_factory.mktemp("ae") / "sketch.ckpt", state, 458), state


# ---- reference forwards written from the authors' module definitions, on raw tensors ---------

def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.01)


def authors_mask_forward(s: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(embedding, reconstruction) of the authors' `Autoencoder` (encoder then decoder)."""
    for k in range(5):
        x = _lrelu(F.conv2d(x, s[f"encoder.{k}.0.weight"], s[f"encoder.{k}.0.bias"], padding=1))
        x = _lrelu(F.conv2d(x, s[f"encoder.{k}.2.weight"], s[f"encoder.{k}.2.bias"], stride=2))
    z = x
    for k in range(5):
        x = F.conv_transpose2d(x, s[f"decoder.{2 * k}.weight"], s[f"decoder.{2 * k}.bias"],
                               stride=2, padding=1, output_padding=1)
        x = _lrelu(x) if k < 4 else torch.sigmoid(x)
    return z.flatten(1), x


def _bn(s: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, s[f"{p}.running_mean"], s[f"{p}.running_var"], s[f"{p}.weight"],
                        s[f"{p}.bias"], training=False, eps=1e-5)


def authors_sketch_forward(s: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(embedding, 2-channel logits) of the authors' NaiveEncoder + NaiveDecoder in eval mode."""
    x = _lrelu(_bn(s, "encoder.bn1", F.conv2d(x, s["encoder.conv1.weight"], padding=1)))
    for k in range(1, 6):
        p = f"encoder.naivenet{k}"
        x = _lrelu(_bn(s, f"{p}.bn1", F.conv2d(x, s[f"{p}.conv1.weight"], padding=1)))
        x = _lrelu(_bn(s, f"{p}.bn2", F.conv2d(x, s[f"{p}.conv2.weight"], stride=2)))
    z = x
    for k in range(1, 6):
        p = f"decoder.naivenet{k}"
        x = F.conv_transpose2d(x, s[f"{p}.conv1.weight"], stride=2, padding=1, output_padding=1)
        x = _lrelu(_bn(s, f"{p}.bn1", x))
        x = _lrelu(_bn(s, f"{p}.bn2", F.conv2d(x, s[f"{p}.conv2.weight"], padding=1)))
    return z.flatten(1), F.conv2d(x, s["decoder.final_conv1.weight"], s["decoder.final_conv1.bias"])


# ---- the networks ------------------------------------------------------------------------------

@torch.no_grad()
def test_mask_autoencoder_equals_the_authors_network(mask_file) -> None:
    path, state = mask_file
    net = load_official_mask_autoencoder(path)
    x = torch.rand(2, 1, 256, 256)
    z_ref, recon_ref = authors_mask_forward(state, x)
    torch.testing.assert_close(net.encode(x), z_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(net(x), recon_ref, rtol=0, atol=1e-6)
    assert net.encode(x).shape == (2, 512)


@torch.no_grad()
def test_sketch_autoencoder_equals_the_authors_network_and_loss(sketch_file) -> None:
    path, state = sketch_file
    net = load_official_sketch_autoencoder(path)
    strokes = (torch.rand(2, 256, 256) > 0.9).to(torch.uint8) * 255
    x = sketch_to_input(strokes, net.cfg)
    z_ref, logits2 = authors_sketch_forward(state, x)
    torch.testing.assert_close(net.encode(x), z_ref, rtol=0, atol=1e-5)
    # Our one-logit BCE is the authors' two-class cross-entropy on the same output.
    authors_ce = F.cross_entropy(logits2, (x[:, 0] > 0).long())
    torch.testing.assert_close(reconstruction_loss(net, strokes), authors_ce, rtol=1e-5, atol=1e-6)


def test_official_inputs_are_facer_grey_levels_and_strokes_at_1_02() -> None:
    mask_cfg = AUTOENCODER_PRESETS["mask_official"]
    sketch_cfg = AUTOENCODER_PRESETS["sketch_official"]
    ids = torch.arange(19, dtype=torch.uint8).reshape(1, 1, 19)  # every CelebAMask-HQ class once
    grey = mask_to_input(ids, mask_cfg)[0, 0, 0]
    facer_ids = torch.round(grey * 255 / 10).long()
    # skin is facer's `face` (2), hair `hair` (14), background 0: the authors' PNG values / 10.
    for k, name in enumerate(CELEBAMASK_HQ_CLASSES):
        expected = {"skin": "face", "eye_g": "eyeg", "mouth": "imouth", "u_lip": "ulip",
                    "l_lip": "llip", "ear_r": "earr", "l_ear": "rr", "r_ear": "lr",
                    "l_brow": "rb", "r_brow": "lb", "l_eye": "re", "r_eye": "le"}.get(name, name)
        assert FACER_CELEBM_CLASSES[int(facer_ids[k])] == expected, name
    torch.testing.assert_close(decode_to_mask(mask_to_input(ids, mask_cfg), mask_cfg), ids)
    stroke = sketch_to_input(torch.tensor([[[0, 255]]], dtype=torch.uint8), sketch_cfg)
    assert stroke.flatten().tolist() == [0.0, pytest.approx(255 / 250)]
    assert OFFICIAL_STROKE_VALUE == pytest.approx(1.02)


# ---- reading Lightning files safely ----------------------------------------------------------

def test_lightning_1x_container_is_read_without_lightning(mask_file) -> None:
    ckpt = read_lightning_checkpoint(mask_file[0])
    assert (ckpt.epoch, ckpt.lightning_version) == (495, "1.4.9")
    assert ckpt.hyper_parameters == {"lr": 1e-3, "val_savepath": ""}
    assert ckpt.callbacks == ("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",)


class Payload:
    """A class the reader has never heard of; unpickling it would run its code."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_unknown_globals_are_refused_by_name(tmp_path: Path, capsys) -> None:
    state = random_state(mask_ae_shapes())
    path = write_lightning_1x(tmp_path / "evil.ckpt", state, extra={"payload": Payload()})
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refers to print,.*may be unsafe"):
        read_lightning_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def test_missing_and_leftover_keys_are_errors(tmp_path: Path) -> None:
    state = random_state(mask_ae_shapes())
    del state["decoder.8.bias"]
    with pytest.raises(CheckpointError, match=r"decoder\.8\.bias"):
        load_official_mask_autoencoder(write_lightning_1x(tmp_path / "a.ckpt", state))
    state = random_state(mask_ae_shapes()) | {"encoder.5.0.weight": torch.zeros(8, 8, 3, 3)}
    with pytest.raises(CheckpointError, match=r"encoder\.5\.0\.weight"):
        load_official_mask_autoencoder(write_lightning_1x(tmp_path / "b.ckpt", state))
    # A loss module's window buffer (some pytorch_msssim versions) carries no weights: accepted.
    state = random_state(mask_ae_shapes()) | {"ssim_loss.window": torch.ones(11)}
    load_official_mask_autoencoder(write_lightning_1x(tmp_path / "c.ckpt", state))


def test_a_sketch_file_is_not_taken_for_a_mask_file(sketch_file) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        load_official_mask_autoencoder(sketch_file[0])


# ---- registry, preset and inference ----------------------------------------------------------

def test_registry_pins_the_authors_commit_and_loads_by_format() -> None:
    for kind in ("mask", "sketch"):
        spec = weights.get_spec(f"mm2latent.{kind}-ae-official")
        assert weights.MM2LATENT_COMMIT in spec.url and not spec.manual
        assert spec.format in model_loading.LOADERS
    for kind in ("mask", "sketch"):
        spec = weights.get_spec(f"mm2latent.mapping-{kind}-official")
        assert spec.manual and spec.filename.startswith("epoch=")
        assert "mm2latent weights verify" in spec.notes
    assert presets.get_preset("ffhq-official").released_models("flame") is None


@pytest.fixture
def official_cache(tmp_path, monkeypatch, mask_file):
    """A cache holding the authors' mask AE + MappingNet and small tiny-preset networks."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("MM2LATENT_CACHE", str(cache))
    place_released_mask_models(cache, mask_file[0])
    monkeypatch.setitem(presets.PRESETS, "tiny-official", tiny_official_preset())
    return cache


@torch.no_grad()
def test_generation_with_the_authors_models_uses_their_files(official_cache, mask_file) -> None:
    model = inference.load_inference("tiny-official", "does/not/exist", "mask")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 1
    mask[24:32, 20:28] = 4
    w = model.latents(["a smiling woman"], mask)
    # By hand: FaRL text, the authors' encoder on 256 px facer grey levels, their MappingNet.
    text = model.farl.encode_text(["a smiling woman"]).float()
    big = torch.from_numpy(mask).repeat_interleave(4, 0).repeat_interleave(4, 1)[None]
    official_input = mask_to_input(big, AUTOENCODER_PRESETS["mask_official"])
    z, _ = authors_mask_forward(mask_file[1], official_input)
    mapping = model_loading.load_weights("mm2latent.mapping-mask-official").eval()
    torch.testing.assert_close(w, mapping(text, z), rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="train mapping"):
        inference.load_inference("tiny-official", "does/not/exist", "sketch")


# ---- the official training recipe ------------------------------------------------------------

def test_official_recipe_config_and_architecture() -> None:
    cfg = autoencoder_train_cfg("sketch", "official")
    assert (cfg.lr, cfg.schedule, cfg.augment) == (1e-2, "none", True)
    assert autoencoder_train_cfg("mask", "official").lr == 1e-3
    assert autoencoder_train_cfg("mask").augment is False
    with pytest.raises(ConfigError, match="recipe"):
        autoencoder_train_cfg("mask", "theirs")
    tiny_mask = official_variant(presets.PRESETS["tiny"].mask_ae)
    assert (tiny_mask.arch, tiny_mask.mask_encoding, tiny_mask.label_order) == ("official", "grey", "facer")
    assert official_variant(presets.PRESETS["tiny"].sketch_ae).stroke_value == OFFICIAL_STROKE_VALUE


def test_augmentation_is_seeded_label_preserving_and_moves_maps() -> None:
    maps = torch.zeros(8, 32, 32, dtype=torch.uint8)
    maps[:, 8:24, 10:20] = 3
    maps[:, 12:14, 12:18] = 7
    a, b = random_affine_flip(maps, 5), random_affine_flip(maps, 5)
    assert torch.equal(a, b)
    assert not torch.equal(a, random_affine_flip(maps, 6))
    assert set(a.unique().tolist()) <= {0, 3, 7}  # nearest: no new ids
    assert sum(not torch.equal(a[i], maps[i]) for i in range(8)) >= 6


def test_lightning_modules_helper_leaves_no_trace() -> None:
    import sys

    with lightning_modules():
        assert "pytorch_lightning" in sys.modules
    assert "pytorch_lightning" not in sys.modules


def test_official_recipe_trains_registers_and_embeds_a_tiny_sketch_autoencoder(tmp_path) -> None:
    from mm2latent.synth.params import parse_params
    from mm2latent.synth.run import plan, run_shard
    from mm2latent.training.autoencoders import load_autoencoder
    from mm2latent.training.pipeline import autoencoder_run

    params = parse_params(preset="tiny", n_samples=6, samples_per_shard=6,
                          out=str(tmp_path / "ds"), modalities=("sketch",))
    for shard in plan(params):
        run_shard(params, shard)
    ae_cfg = official_variant(presets.PRESETS["tiny"].sketch_ae)
    cfg = autoencoder_train_cfg("sketch", "official", epochs=2, batch_size=4, val_fraction=0.0)
    report = autoencoder_run(str(tmp_path / "ds"), str(tmp_path / "runs"),
                             str(tmp_path / "runs" / "registry"), ae_cfg, cfg)
    model = load_autoencoder(report.record.checkpoint_url)
    assert model.cfg == ae_cfg and hasattr(model.encoder, "naivenet1")
    assert model.decoder.final_conv1.out_channels == 2
    assert report.embeddings.url
