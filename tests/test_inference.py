"""Inference: text(+spatial) -> w -> image and e4e-based editing, on a tiny trained setup.

The module fixture makes a 16-sample tiny dataset with synth-data, trains the autoencoders and
the three MappingNets for one epoch through the real pipeline (so the registry, checkpoints
and loaders are the real ones), then trains a second mask autoencoder that the mask MappingNet
was NOT trained with. Expected values are recomputed by hand from independently loaded or
seeded modules.
"""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from flows.cli_generate import add_inference_commands
from mm2latent_core.errors import ConfigError
from mm2latent.inference import load_inference
from mm2latent.models.autoencoders import mask_to_input
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.e4e import E4EEncoder
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import get_preset
from mm2latent.seeding import derive_seed, seeded_init
from mm2latent.synth import run
from mm2latent.synth.params import SynthDataParams
from mm2latent.training.autoencoders import load_autoencoder
from mm2latent.training.config import MappingTrainCfg, autoencoder_train_cfg
from mm2latent.training.mapping import load_mapping_net, mapping_net_cfg
from mm2latent.training.pipeline import autoencoder_run, mapping_run
from mm2latent.training.registry import ModelRegistry, default_registry_url
from mm2latent.batching import invariant_forward

PRESET = get_preset("tiny")
SEED = PRESET.init_seed


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """Registry URL of a tiny setup: mask-ae v1 (used by mapping-mask) and v2, sketch-ae, 3 mappings."""
    root = tmp_path_factory.mktemp("inference")
    data, runs = str(root / "data"), str(root / "runs")
    registry = default_registry_url(runs)  # where `mm2latent train --out runs` registers
    params = SynthDataParams(preset="tiny", n_samples=16, samples_per_shard=16, out=data,
                             modalities=("mask", "sketch", "flame", "farl"))
    for shard in run.plan(params):
        run.run_shard(params, shard)
    quick = dict(epochs=1, batch_size=8, val_fraction=0.0)
    for modality, ae_cfg in (("mask", PRESET.mask_ae), ("sketch", PRESET.sketch_ae)):
        autoencoder_run(data, runs, registry, ae_cfg, autoencoder_train_cfg(modality, **quick))
    for modality in ("mask", "sketch", "flame"):
        mapping_run(data, runs, registry, mapping_net_cfg(PRESET.mapping, modality),
                    MappingTrainCfg(modality=modality, **quick))
    # A newer mask autoencoder the mask MappingNet never saw: inference must not pick it.
    autoencoder_run(data, runs, registry, PRESET.mask_ae, autoencoder_train_cfg("mask", seed=7, **quick))
    return registry


def _runs_dir(registry: str) -> str:
    """The `--models` directory (training --out) whose default registry is `registry`."""
    return registry.rsplit("/", 1)[0]


@pytest.fixture(scope="module")
def models(registry):
    """One loaded Mm2LatentGenerator per modality."""
    return {m: load_inference("tiny", registry, m) for m in ("mask", "sketch", "flame")}


def _seeded(component: str, make):
    with seeded_init(derive_seed(SEED, component)):
        return make().eval()


def _masks(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 19, (n, 64, 64), dtype=np.uint8)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _by_hand_quantized(generator: Generator, w: torch.Tensor) -> torch.Tensor:
    images = generator.synthesize_from_w(w, noise_mode="const")  # (B, 3, R, R)
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def test_w_is_mapping_of_farl_text_and_the_trained_with_autoencoder(registry, models):
    reg = ModelRegistry(registry)
    mapping_record = reg.latest("mapping-mask")
    assert mapping_record.extra["embeddings_version"] == "mask-ae-v1"
    assert reg.latest("mask-ae").version == 2  # a newer autoencoder exists
    ae = load_autoencoder(reg.get("mask-ae", 1).checkpoint_url)
    net = load_mapping_net(mapping_record.checkpoint_url)
    farl = _seeded("farl", lambda: ClipEmbedder(PRESET.farl))
    captions = ["a young woman with bangs", "an old man with a beard"]
    masks = _masks(2)
    with torch.no_grad():
        # Encoded as inside a full batch (inference pads short batches, as synth-data does).
        spatial = invariant_forward(ae.encode, mask_to_input(torch.from_numpy(masks), ae.cfg))
        expected = net(farl.encode_text(captions), spatial)
        w = models["mask"].latents(captions, masks)
        other_ae = load_autoencoder(reg.get("mask-ae", 2).checkpoint_url)
        wrong = net(farl.encode_text(captions), other_ae.encode(mask_to_input(torch.from_numpy(masks), ae.cfg)))
    assert w.shape == (2, 512)
    assert torch.equal(w, expected)
    assert not torch.allclose(w, wrong)


def test_flame_vector_goes_to_the_mapping_as_is(registry, models):
    net = load_mapping_net(ModelRegistry(registry).latest("mapping-flame").checkpoint_url)
    flame = np.random.default_rng(3).standard_normal(159).astype(np.float32)
    with torch.no_grad():
        expected = net(models["flame"].text_embeddings(["a face"]), torch.from_numpy(flame)[None])
    assert torch.equal(models["flame"].latents(["a face"], flame), expected)


def test_different_captions_give_different_w(models):
    w = models["sketch"].latents(["a smiling face", "a face with eyeglasses"],
                                 np.zeros((64, 64), np.uint8))
    assert (w[0] - w[1]).abs().max() > 1e-4


def test_generate_is_synthesis_of_w_broadcast_and_quantised(models):
    model = models["mask"]
    generator = _seeded("generator", lambda: Generator(PRESET.generator))
    masks = _masks(3, seed=1)
    w = model.latents(["a face"], masks)  # one caption for three masks
    with torch.no_grad():
        assert torch.equal(model.generate(["a face"], masks), _by_hand_quantized(generator, w))
        truncated = generator.mapping.w_avg + 0.5 * (w - generator.mapping.w_avg)
        assert torch.equal(model.generate(["a face"], masks, truncation_psi=0.5),
                           _by_hand_quantized(generator, truncated))


def test_noise_seed_changes_only_noise_and_is_per_image(registry):
    model = load_inference("tiny", registry, "mask")
    with torch.no_grad():  # seeded noise strengths are 0 (upstream init): give noise an effect
        for name, p in model.generator.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    mask = _masks(1)
    both = model.generate(["a face", "a face"], mask, noise_seed=5)
    assert not torch.equal(model.generate(["a face"], mask), both[0])  # constant vs seeded noise
    assert not torch.equal(both[0], both[1])  # same w, different noise
    alone = model.generate(["a face"], mask, noise_seed=5)
    assert torch.equal(alone[0], both[0])  # image 0 does not depend on the batch


def _e4e_reconstruction(images: torch.Tensor) -> torch.Tensor:
    e4e = _seeded("e4e", lambda: E4EEncoder(PRESET.e4e))
    generator = _seeded("generator", lambda: Generator(PRESET.generator))
    with torch.no_grad():
        return _by_hand_quantized(generator, e4e.invert(images))


# The generator's edit (one beta of mm2latent.editing.text_edit) is tested in test_editing.py.


BAD_INPUTS = [
    ("mask", lambda m: m.latents(["a face"], np.full((64, 64), 19, np.uint8)), r"0\.\.18"),
    ("mask", lambda m: m.latents(["a face"], np.zeros((64, 64), np.float32)), "integer class ids"),
    ("sketch", lambda m: m.latents(["a face"], np.full((64, 64), 128, np.uint8)), "only 0 .* and 255"),
    ("flame", lambda m: m.latents(["a face"], np.zeros(158, np.float32)), r"\(159,\)"),
    ("flame", lambda m: m.latents(["a face"], np.full(159, np.nan, np.float32)), "finite"),
    ("mask", lambda m: m.latents(["  "], _masks(1)), r"texts\[0\].*non-empty"),
    ("mask", lambda m: m.latents("a face", _masks(1)), "bare str"),
    ("mask", lambda m: m.latents(["a", "b", "c"], _masks(2)), "3 captions but 2 spatial"),
    ("mask", lambda m: m.edit(_images(1), "a smiling face", "", 1.0), "pivot_text"),
    ("mask", lambda m: m.edit(_images(3), "a smile", "a face", 1.0, _masks(2)), "2 spatial conditions but 3 images"),
    ("mask", lambda m: m.edit(_images(1), "a smiling face", "a face", float("nan")), "beta=nan"),
    ("mask", lambda m: m.edit(_images(1) * 255, "a smiling face", "a face", 1.0), r"\[0, 1\]"),
    ("mask", lambda m: m.edit(torch.rand(1, 3, 64, 32), "a smile", "a face", 1.0), "W=32"),
    ("mask", lambda m: m.generate(["a face"], np.zeros((32, 32), np.uint8)), "32x32 px, smaller than the 64x64"),
    ("mask", lambda m: m.generate(["a face"], np.zeros((64, 48), np.uint8)), "48x64 px, not square"),
    ("sketch", lambda m: m.generate(["a face"], np.zeros((32, 32), np.uint8)), "smaller than the 64x64"),
    ("mask", lambda m: m.edit(_images(1), "a smile", "a face", 1.0, np.zeros((32, 32), np.uint8)), "32x32"),
]


@pytest.mark.parametrize("modality, call, message", BAD_INPUTS)
def test_bad_inputs_raise_naming_the_problem(models, modality, call, message):
    with pytest.raises(ConfigError, match=message):
        call(models[modality])


def test_missing_model_or_bad_modality(tmp_path, registry):
    with pytest.raises(ConfigError, match="no 'mapping-mask' model registered"):
        load_inference("tiny", str(tmp_path), "mask")
    with pytest.raises(ConfigError, match="mask, sketch, flame"):
        load_inference("tiny", registry, "depth")


def _png(array: np.ndarray, path) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def _decoded(path) -> np.ndarray:
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        return np.asarray(im.convert("RGB"))


def test_cli_generate_and_edit(tmp_path, registry, models):
    app = typer.Typer()
    add_inference_commands(app)
    runner = CliRunner()
    mask = _masks(1)[0]
    out = tmp_path / "gen.png"
    result = runner.invoke(app, ["generate", "--text", "a face", "--mask", _png(mask, tmp_path / "m.png"),
                                 "--models", _runs_dir(registry), "--out", str(out), "--n", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "NOT" in result.output and "faces" in result.output
    expected = models["mask"].generate(["a face"] * 2, mask, noise_seed=3)
    assert np.array_equal(_decoded(out), np.concatenate(list(expected.numpy()), axis=1))

    source = _png(np.asarray(expected[0]), tmp_path / "face.png")
    edited = tmp_path / "edited.png"
    result = runner.invoke(app, ["edit", source, "--target", "a smiling face", "--beta", "0",
                                 "--models", _runs_dir(registry), "--out", str(edited)])
    assert result.exit_code == 0, result.output
    image = torch.from_numpy(np.asarray(expected[0])).permute(2, 0, 1)[None].float() / 255
    assert np.array_equal(_decoded(edited), _e4e_reconstruction(image)[0].numpy())

    rgb = _png(np.zeros((64, 64, 3), np.uint8), tmp_path / "rgb.png")
    bad = runner.invoke(app, ["generate", "--text", "a face", "--mask", rgb, "--models", _runs_dir(registry)])
    assert bad.exit_code == 2
    assert re.search(r"rgb\.png: a mask must be a single-channel label PNG", bad.output)
    none = runner.invoke(app, ["generate", "--text", "a face", "--models", _runs_dir(registry)])
    assert none.exit_code == 2 and "exactly one spatial condition" in none.output


def test_cli_generate_from_a_flame_file_and_a_misshaped_one(tmp_path, registry, models):
    app = typer.Typer()
    add_inference_commands(app)
    flame = np.random.default_rng(9).standard_normal(159)  # float64 on disk is accepted
    good, bad = tmp_path / "code.npy", tmp_path / "short.npy"
    np.save(good, flame)
    np.save(bad, flame[:100])
    out = tmp_path / "flame.png"
    result = CliRunner().invoke(app, ["generate", "--text", "a face", "--flame", str(good),
                                      "--models", _runs_dir(registry), "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = models["flame"].generate(["a face"], flame.astype(np.float32))[0].numpy()
    assert np.array_equal(_decoded(out), expected)
    result = CliRunner().invoke(app, ["generate", "--text", "a face", "--flame", str(bad),
                                      "--models", _runs_dir(registry)])
    assert result.exit_code == 2 and "short.npy" in result.output and "(100,)" in result.output


def test_models_that_do_not_fit_the_preset_are_refused(models):
    from mm2latent.inference import Mm2LatentGenerator

    m = models["mask"]
    narrow = ClipEmbedder(dataclasses.replace(PRESET.farl, embed_dim=256))
    with pytest.raises(ConfigError, match="text_dim=512 .* FaRL embed_dim=256"):
        Mm2LatentGenerator(PRESET, "mask", m.generator, narrow, m.mapping, m.autoencoder, m.device)
