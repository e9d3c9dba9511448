"""Canny sketch extraction: edges where the image has steps, binary output, settings matter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mm2latent.errors import ConfigError
from mm2latent.models.sketch import SketchCfg, extract_sketch
from mm2latent.presets import SKETCH_PRESETS, component_preset

NATIVE = SketchCfg(resolution=None)  # official settings, no resize


def square_image(value: int = 255, size: int = 64, lo: int = 16, hi: int = 48) -> np.ndarray:
    image = np.zeros((1, size, size, 3), np.uint8)
    image[0, lo:hi, lo:hi] = value
    return image


def test_square_edges_lie_on_its_border_only():
    edges = extract_sketch(square_image(), NATIVE)
    assert edges.shape == (1, 64, 64) and edges.dtype == np.uint8
    assert set(np.unique(edges)) == {0, 255}
    ys, xs = np.nonzero(edges[0])
    # every edge pixel is within one pixel of the square's outline (rows/cols 15..16 and 47..48)
    dist_to_outline = np.minimum.reduce([np.abs(ys - 15.5), np.abs(ys - 47.5),
                                         np.abs(xs - 15.5), np.abs(xs - 47.5)])
    inside_band = (ys >= 14) & (ys <= 49) & (xs >= 14) & (xs <= 49)
    assert (dist_to_outline <= 1).all() and inside_band.all()
    # each side of the square is traced along its whole middle part
    for row in (slice(15, 17), slice(47, 49)):
        assert edges[0, row, 20:44].max(axis=0).all()
    for col in (slice(15, 17), slice(47, 49)):
        assert edges[0, 20:44, col].max(axis=1).all()


def test_thresholds_decide_which_steps_count():
    faint = square_image(value=40)  # Sobel step response 160: between 100 and 200
    assert extract_sketch(faint, NATIVE).max() == 0
    low = SketchCfg(resolution=None, low_threshold=10, high_threshold=20)
    assert extract_sketch(faint, low).max() == 255


def test_rgb_canny_sees_colour_edges_that_grey_misses():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, :, :16] = (200, 0, 0)  # grey 59.8
    image[0, :, 16:] = (0, 102, 0)  # grey 59.9
    assert extract_sketch(image, NATIVE)[0, :, 14:18].any()
    assert not extract_sketch(image, SketchCfg(resolution=None, grey=True)).any()


def test_float_tensor_input_matches_uint8_and_is_deterministic():
    rng = np.random.default_rng(0)
    image = (rng.random((2, 48, 48, 3)) * 255).round().astype(np.uint8)
    tensor = torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255  # (B, 3, H, W)
    cfg = SKETCH_PRESETS["tiny"]
    from_numpy = extract_sketch(image, cfg)
    from_tensor = extract_sketch(tensor, cfg)
    assert isinstance(from_tensor, torch.Tensor) and from_tensor.dtype == torch.uint8
    assert from_numpy.shape == (2, 64, 64)
    assert np.array_equal(from_tensor.numpy(), from_numpy)
    assert np.array_equal(extract_sketch(image, cfg), from_numpy)


def test_default_resolution_and_dilation():
    image = square_image(size=512, lo=128, hi=384)
    edges = extract_sketch(image)
    assert edges.shape == (1, 256, 256)
    thick = extract_sketch(image, SketchCfg(dilation=1))
    assert (thick >= edges).all() and (thick > 0).sum() > 2 * (edges > 0).sum()


def test_blur_removes_isolated_noise():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 16, 16] = 255  # a single bright pixel
    assert extract_sketch(image, NATIVE).any()
    blurred = SketchCfg(resolution=None, blur_ksize=5, blur_sigma=1.5)
    assert not extract_sketch(image, blurred).any()


def test_bad_inputs_and_configs():
    with pytest.raises(ValueError, match="uint8"):
        extract_sketch(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="dim 3"):
        extract_sketch(np.zeros((1, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="float"):
        extract_sketch(torch.zeros(1, 8, 8, 3, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="blur_ksize"):
        SketchCfg(blur_ksize=4)
    with pytest.raises(ConfigError, match="low_threshold"):
        SketchCfg(low_threshold=300)
    with pytest.raises(ConfigError, match="official, tiny"):
        component_preset(SKETCH_PRESETS, "huge")
