"""FaRL / OpenAI CLIP towers: loaders against fabricated official files, preprocess, tokenizer."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import open_clip
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.clip_loaders import load_farl, load_openai_clip
from mm2latent.models.clip_towers import (
    ClipEmbedder, build_open_clip, clip_preprocess, resized_size,
    tokenize,
)
from mm2latent.presets import CLIP_PRESETS, component_preset
from mm2latent.seeding import seeded_init
from tests.fabricate_clip import (
    farl_mim_shapes, openai_clip_shapes, write_farl_pth, write_openai_jit,
)

TINY = CLIP_PRESETS["tiny"]
TEXTS = ["a smiling woman with bangs", "an old man with eyeglasses"]
FC_KEY = "visual.transformer.resblocks.1.mlp.c_fc.weight"


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 80, 96, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def farl_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("farl") / "FaRL-tiny.pth"
    return path, write_farl_pth(path, TINY, with_mim_keys=True, seed=0)


def _embed(embedder: ClipEmbedder, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return embedder.encode_image(images), embedder.encode_text(TEXTS)


@pytest.fixture(scope="module")
def farl_embeddings(farl_file, images) -> tuple[torch.Tensor, torch.Tensor]:
    return _embed(load_farl(farl_file[0], TINY), images)


# ---------------------------------------------------------------- layout and construction

@pytest.mark.parametrize("preset", sorted(CLIP_PRESETS))
def test_every_preset_has_the_openai_key_layout(preset):
    cfg = CLIP_PRESETS[preset]
    with torch.device("meta"):  # shapes only: no memory, no init cost for ViT-L/14
        model = build_open_clip(cfg)
    found = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert found == openai_clip_shapes(cfg)


def test_tiny_build_is_deterministic_in_the_seed():
    with seeded_init(3):
        a = ClipEmbedder(TINY)
    with seeded_init(3):
        b = ClipEmbedder(TINY)
    with seeded_init(4):
        c = ClipEmbedder(TINY)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model." + FC_KEY], sc["model." + FC_KEY])


def test_bad_config_and_unknown_preset_raise_config_error():
    with pytest.raises(ConfigError, match="patch_size"):
        component_preset(CLIP_PRESETS, "tiny", image_size=70)
    with pytest.raises(ConfigError, match="vision_heads"):
        component_preset(CLIP_PRESETS, "tiny", vision_heads=3)
    with pytest.raises(ConfigError, match="tiny"):
        component_preset(CLIP_PRESETS, "vit-h")


# ---------------------------------------------------------------- FaRL loader

def test_farl_tensors_land_at_their_parameters(farl_file):
    path, state = farl_file
    emb = load_farl(path, TINY)
    assert torch.equal(emb.model.visual.transformer.resblocks[1].mlp.c_fc.weight, state[FC_KEY])
    assert torch.equal(emb.model.text_projection, state["text_projection"])
    assert torch.equal(emb.model.token_embedding.weight, state["token_embedding.weight"])
    assert not any(p.requires_grad for p in emb.parameters())


def test_farl_embeddings_are_unit_norm_512(farl_embeddings):
    img, txt = farl_embeddings
    assert img.shape == (2, 512) and txt.shape == (2, 512)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(img[0], img[1], atol=1e-3)  # inputs differ -> embeddings differ


@pytest.mark.parametrize("key,changes", [(FC_KEY, "image"), ("text_projection", "text"),
                                         ("transformer.resblocks.0.ln_1.weight", "text"),
                                         ("visual.proj", "image")])
def test_changing_one_named_tensor_changes_only_its_tower(tmp_path, farl_file, farl_embeddings,
                                                          images, key, changes):
    state = farl_file[1]
    edited = dict(state)
    edited[key] = state[key] + 0.05 * torch.randn(state[key].shape,
                                                  generator=torch.Generator().manual_seed(7))
    torch.save({"state_dict": edited}, tmp_path / "edited.pth")
    img0, txt0 = farl_embeddings
    img1, txt1 = _embed(load_farl(tmp_path / "edited.pth", TINY), images)
    assert torch.equal(img0, img1) == (changes != "image")
    assert torch.equal(txt0, txt1) == (changes != "text")


def test_mim_extras_are_accepted_and_reported(farl_file, caplog):
    with caplog.at_level(logging.INFO, logger="mm2latent.models.clip_loaders"):
        emb = load_farl(farl_file[0], TINY)
    assert set(emb.extra_keys) == set(farl_mim_shapes(TINY))  # exactly the MIM head
    assert "visual.mask_token" in emb.extra_keys
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    assert info and "masked-image-modelling" in info[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_farl_without_mim_keys_loads_with_no_extras(tmp_path):
    write_farl_pth(tmp_path / "plain.pth", TINY, with_mim_keys=False)
    assert load_farl(tmp_path / "plain.pth", TINY).extra_keys == ()


def test_missing_key_names_file_and_key(tmp_path, farl_file):
    state = dict(farl_file[1])
    del state[FC_KEY]
    path = tmp_path / "missing.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as info:
        load_farl(path, TINY)
    assert str(path) in str(info.value) and FC_KEY in str(info.value)


def test_wrong_shape_names_key_and_both_shapes(tmp_path, farl_file):
    state = dict(farl_file[1])
    state["text_projection"] = torch.zeros(128, 256)
    path = tmp_path / "shape.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"text_projection has shape \(128, 256\), "
                                              r"expected \(128, 512\)") as info:
        load_farl(path, TINY)
    assert str(path) in str(info.value)


def test_deeper_config_rejects_a_shallower_file(farl_file):
    with pytest.raises(CheckpointError, match=r"visual\.transformer\.resblocks\.2\.attn"):
        load_farl(farl_file[0], component_preset(CLIP_PRESETS, "tiny", vision_layers=3))


@pytest.mark.parametrize("damage", ["truncated", "random", "no_state_dict"])
def test_unreadable_or_wrong_container_raises_checkpoint_error(tmp_path, farl_file, damage):
    path = tmp_path / f"{damage}.pth"
    if damage == "truncated":
        data = farl_file[0].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        torch.save({"model": farl_file[1]}, path)
    with pytest.raises(CheckpointError) as info:
        load_farl(path, TINY)
    assert str(path) in str(info.value)
    if damage == "no_state_dict":
        assert "'state_dict'" in str(info.value)


# ---------------------------------------------------------------- OpenAI TorchScript loader

@pytest.fixture(scope="module")
def jit_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("openai") / "ViT-tiny.pt"
    return path, write_openai_jit(path, TINY, seed=5)


def test_fabricated_jit_has_openai_state_dict(jit_file):
    with warnings.catch_warnings():  # TorchScript is deprecated but is OpenAI's format
        warnings.simplefilter("ignore", FutureWarning)
        archive = torch.jit.load(str(jit_file[0]), map_location="cpu")
    state = archive.state_dict()
    assert state["visual.conv1.weight"].dtype == torch.float16
    assert int(state["input_resolution"]) == TINY.image_size
    assert set(state) - set(openai_clip_shapes(TINY)) == {"input_resolution", "context_length",
                                                          "vocab_size"}


def test_openai_jit_matches_open_clip_built_directly(jit_file, images):
    path, state = jit_file
    emb = load_openai_clip(path)
    assert emb.cfg == TINY  # architecture inferred from shapes (heads = width // 64)
    reference = open_clip.CLIP(
        512, open_clip.CLIPVisionCfg(layers=2, width=128, patch_size=16, image_size=64),
        open_clip.CLIPTextCfg(width=128, heads=2, layers=2), quick_gelu=True)
    reference.load_state_dict(state, strict=True)  # fp32 copy of the file's fp16 weights
    with torch.no_grad():
        want_img = reference.encode_image(clip_preprocess(images, 64), normalize=True)
        want_txt = reference.encode_text(open_clip.tokenize(TEXTS), normalize=True)
    img, txt = _embed(emb, images)
    assert img.dtype == torch.float32
    torch.testing.assert_close(img, want_img, atol=1e-5, rtol=0)
    torch.testing.assert_close(txt, want_txt, atol=1e-5, rtol=0)


def test_openai_plain_state_dict_file_is_accepted(tmp_path, jit_file):
    path = tmp_path / "plain.pt"
    torch.save({k: v.half() for k, v in jit_file[1].items()}, path)
    plain, from_jit = load_openai_clip(path), load_openai_clip(jit_file[0])
    assert plain.cfg == from_jit.cfg
    for key, value in from_jit.model.state_dict().items():
        assert torch.equal(plain.model.state_dict()[key], value), key


def test_openai_inconsistent_resolution_entry_is_rejected(tmp_path, jit_file):
    state = dict(jit_file[1], input_resolution=torch.tensor(224))
    path = tmp_path / "bad_meta.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="input_resolution"):
        load_openai_clip(path)


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_openai_unreadable_file_raises_checkpoint_error(tmp_path, jit_file, damage):
    path = tmp_path / f"{damage}.pt"
    data = jit_file[0].read_bytes()
    path.write_bytes(np.random.default_rng(1).bytes(2048) if damage == "random"
                     else data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match=str(path)):
        load_openai_clip(path)


def test_openai_resnet_layout_is_rejected(tmp_path):
    path = tmp_path / "rn50.pt"
    torch.save({"visual.layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)}, path)
    with pytest.raises(CheckpointError, match="visual.conv1.weight"):
        load_openai_clip(path)


# ---------------------------------------------------------------- preprocess and tokenizer

def _pil_reference(arr: np.ndarray, size: int) -> torch.Tensor:
    """OpenAI's pipeline by hand: PIL bicubic shorter side -> size, centre crop, mean/std."""
    height, width = arr.shape[:2]
    new_h, new_w = resized_size(height, width, size)
    img = Image.fromarray(arr).resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)  # (3, S, S)
    return (x - torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1)) / \
        torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)


@pytest.mark.parametrize("height,width,size", [(300, 200, 64), (256, 256, 224), (97, 131, 224),
                                               (512, 512, 224)])
def test_preprocess_matches_pil_within_two_uint8_roundings(height, width, size):
    # PIL rounds to uint8 after its horizontal pass and again at the end: each costs up to
    # 0.5/255, the first scaled by the vertical kernel's weights (measured max 1.07/255 on
    # noise and smooth images alike); we allow 1.25/255 per pixel and 0.4/255 on average.
    arr = np.random.default_rng(height * width).integers(0, 256, (height, width, 3),
                                                         dtype=np.uint8)
    ours = clip_preprocess(torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255, size)[0]
    diff = (ours - _pil_reference(arr, size)) * torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)
    assert ours.shape == (3, size, size)
    assert diff.abs().max() <= 1.25 / 255
    assert diff.abs().mean() <= 0.4 / 255


def test_encode_image_checks_channels_and_dtype():
    with seeded_init(0):
        emb = ClipEmbedder(TINY)
    with pytest.raises(ValueError, match="channels"):
        emb.encode_image(torch.rand(1, 4, 64, 64))
    with pytest.raises(ValueError, match="float"):
        emb.encode_image(torch.zeros(1, 3, 64, 64, dtype=torch.int16))


def test_tokenizer_lowercases_and_pads_to_77():
    tokens = tokenize(["A PHOTO", "a photo"])
    assert tokens.shape == (2, 77) and tokens.dtype == torch.int64
    assert torch.equal(tokens[0], tokens[1])
    n = int((tokens[0] != 0).sum())
    assert tokens[0, 0] == 49406 and tokens[0, n - 1] == 49407  # SOT ... EOT
    assert (tokens[0, n:] == 0).all()
    with pytest.raises(ValueError, match="list"):
        tokenize("a photo")
