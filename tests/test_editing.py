"""Text and spatial edits at several betas (mm2latent.editing), on seeded tiny networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mm2latent.batch_inputs import check_betas
from mm2latent.editing import (image_embeddings, spatial_direction, spatial_edit,
                               text_direction, text_edit)
from mm2latent_core.errors import ConfigError
from tests.fabricate_inference import seeded_model


@pytest.fixture(scope="module")
def models():
    return {m: seeded_model(m) for m in ("mask", "sketch", "flame")}


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _masks(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 19, (n, 64, 64), dtype=np.uint8)


def test_beta_zero_reproduces_the_inversion_exactly(models):
    images = _images(2)
    flame = models["flame"]
    pivot = np.ones(159, np.float32)  # given, so the seeded DECA need not run
    for model, result in ((models["sketch"], text_edit(models["sketch"], images, "a smile", "a face", [0.0, 2.0])),
                          (flame, spatial_edit(flame, images, np.zeros(159, np.float32), [0.0, 1.0], pivot))):
        assert torch.equal(result.w_plus[:, 0], result.inversion)
        assert torch.equal(result.images[:, 0], result.reconstruction)
        assert not torch.equal(result.images[:, 1], result.reconstruction)
        # the reconstruction is the synthesis of e4e's own w+, one photo at a time
        alone = model.synthesize(model.invert(images[1:]))
        assert torch.equal(result.reconstruction[1], alone[0])


def test_text_directions_are_antisymmetric_in_pivot_and_target(models):
    model = models["sketch"]
    space = model.spatial_embeddings(np.zeros((3, 64, 64), np.uint8))
    forward = text_direction(model, "a smiling face", "a face", space)
    backward = text_direction(model, "a face", "a smiling face", space)
    assert torch.equal(forward, -backward)
    assert forward.abs().max() > 0
    assert torch.equal(text_direction(model, "a face", "a face", space), torch.zeros_like(forward))


def test_spatial_direction_is_the_paper_formula_and_the_own_mask_pivot(models):
    model, images, target = models["mask"], _images(2, seed=3), _masks(1, seed=5)
    result = spatial_edit(model, images, target, betas=[1.0, -0.5])
    f_img = image_embeddings(model, images)
    own = model.spatial_embeddings(model.annotate(images))
    s_target = model.spatial_embeddings(target).expand(2, -1)
    with torch.no_grad():
        by_hand = (model.mapping(f_img, s_target) - model.mapping(f_img, own))  # unpadded: ~equal
    delta = spatial_direction(model, f_img, s_target, own)
    assert torch.allclose(delta, by_hand, atol=1e-5)
    assert torch.allclose(result.w_plus[:, 0], result.inversion + delta[:, None], atol=1e-6)
    assert torch.allclose(result.w_plus[:, 1], result.inversion - 0.5 * delta[:, None], atol=1e-6)
    # an explicit pivot equal to the photo's own annotation changes nothing
    explicit = spatial_edit(model, images, target, [1.0], pivot=model.annotate(images))
    assert torch.equal(explicit.w_plus[:, 0], result.w_plus[:, 0])
    # target == pivot: no edit
    same = spatial_edit(model, images, target, [3.0], pivot=target)
    assert torch.equal(same.images[:, 0], same.reconstruction)


@pytest.mark.parametrize("modality", ["sketch", "flame"])
def test_batch_results_equal_one_by_one_results(models, modality):
    model, images = models[modality], _images(2, seed=7)
    if modality == "sketch":
        batch = text_edit(model, images, "a smiling face", "a face", [2.0])
        single = [text_edit(model, images[i:i + 1], "a smiling face", "a face", [2.0]) for i in range(2)]
    else:
        target = np.random.default_rng(1).standard_normal(159).astype(np.float32)
        pivots = np.random.default_rng(2).standard_normal((2, 159)).astype(np.float32)
        batch = spatial_edit(model, images, target, [1.0], pivots)
        single = [spatial_edit(model, images[i:i + 1], target, [1.0], pivots[i]) for i in range(2)]
    for field in ("inversion", "w_plus", "images", "reconstruction", "originals"):
        assert torch.equal(getattr(batch, field), torch.cat([getattr(s, field) for s in single])), field


def test_strip_is_original_then_one_tile_per_beta(models):
    images = _images(2, seed=9)
    result = text_edit(models["flame"], images, "a smile", "a face", [0.0, 1.0, 2.0],
                       spatial=np.zeros(159, np.float32))
    strip = result.strip()
    assert strip.shape == (2 * 64, 4 * 64, 3) and strip.dtype == np.uint8
    assert np.array_equal(strip[64:, :64], result.originals[1].numpy())
    assert np.array_equal(strip[:64, 3 * 64:], result.images[0, 2].numpy())
    expected = (images[0].permute(1, 2, 0) * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(strip[:64, :64], expected)


@pytest.mark.parametrize("betas, message", [([], "empty"), ([1.0, float("nan")], r"beta\[1\]=nan"),
                                             ([float("inf")], r"beta\[0\]=inf"), (["1"], "finite")])
def test_bad_betas_are_refused(models, betas, message):
    with pytest.raises(ConfigError, match=message):
        check_betas(betas)
    with pytest.raises(ConfigError, match=message):
        text_edit(models["flame"], _images(1), "a smile", "a face", betas)


def test_spatial_target_count_must_fit_the_photos(models):
    with pytest.raises(ConfigError, match="2 target conditions but 3 images"):
        spatial_edit(models["mask"], _images(3), _masks(2))


# --- Mm2LatentGenerator.edit: one beta of text_edit (moved here from test_inference.py) ----------
# The generator's edit delegates to text_edit, so both give the same bytes. Before, edit ran e4e,
# the MappingNet and synthesis on the whole batch, and a photo's edit differed from text_edit's
# in the last bits whenever B > 1 (CPU kernels round by batch size; see mm2latent.batching).

@pytest.mark.parametrize("modality", ["mask", "sketch", "flame"])
def test_the_generators_edit_is_one_beta_of_text_edit(models, modality):
    model, images = models[modality], _images(2, seed=7)
    own = np.ones(159, np.float32) if modality == "flame" else None  # given: DECA need not run
    strip = text_edit(model, images, "a smiling face", "a face", [0.0, 3.0], spatial=own)
    edited = model.edit(images, "a smiling face", "a face", 3.0, own)
    assert torch.equal(edited, strip.images[:, 1])
    assert not torch.equal(edited, strip.reconstruction)
    assert torch.equal(model.edit(images, "a smiling face", "a face", 0.0, own), strip.reconstruction)
    assert torch.equal(model.edit(images, "a face", "a face", 3.0, own), strip.reconstruction)
    # per photo: a photo edited alone gives the bytes it gets in the batch
    alone = model.edit(images[1:], "a smiling face", "a face", 3.0, own)
    assert torch.equal(alone[0], edited[1])


def test_text_edit_is_w_plus_beta_times_the_direction_of_the_own_mask(models):
    model, images = models["mask"], _images(2, seed=4)
    own = model.annotate(images)  # the seeded parser's labels of the stored photos
    strip = text_edit(model, images, "a smiling face", "a face", [2.0, -1.0])
    delta = text_direction(model, "a smiling face", "a face", model.spatial_embeddings(own))
    for k, beta in enumerate((2.0, -1.0)):
        assert torch.equal(strip.w_plus[:, k], strip.inversion + beta * delta[:, None])
    default = model.edit(images, "a smiling face", "a face", 2.0)
    assert torch.equal(default, model.edit(images, "a smiling face", "a face", 2.0, spatial=own))
    assert torch.equal(default, strip.images[:, 0])


def test_edit_sketch_defaults_to_canny_of_the_stored_image(models):
    from mm2latent.models.sketch import extract_sketch

    model, images = models["sketch"], _images(2, seed=6)
    pixels = (images * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    own = extract_sketch(pixels, model.preset.sketch)  # (B, 64, 64) 0/255
    blank = np.zeros((64, 64), np.uint8)
    default = model.edit(images, "a smiling face", "a face", 2.0)
    assert torch.equal(default, model.edit(images, "a smiling face", "a face", 2.0, spatial=own))
    assert not torch.equal(default, model.edit(images, "a smiling face", "a face", 2.0, spatial=blank))
