"""clip_preprocess on uint8 images equals the official Pillow pipeline pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

from mm2latent.models.clip_towers import ClipEmbedder, clip_preprocess
from mm2latent.models.pil_resize import pil_resize_crop
from mm2latent.presets import CLIP_PRESETS
from mm2latent.seeding import seeded_init


def _official(arr: np.ndarray, size: int) -> torch.Tensor:
    """torchvision's Resize(size, BICUBIC) + CenterCrop + ToTensor + Normalize, by hand on PIL."""
    img = Image.fromarray(arr)
    width, height = img.size
    short, long = sorted((width, height))
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    img = img.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)  # (3, S, S)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1)
    return x.sub(mean).div(torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1))


def _images(batch: int, height: int, width: int, seed: int) -> np.ndarray:
    """Noise on half the batch, smooth gradients with hard edges on the rest (clipping cases)."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = ((xx * 255 // max(width - 1, 1)) ^ (yy * 3 % 256)).astype(np.uint8)
    out[batch // 2:] = np.where((xx // 7 + yy // 5) % 2 == 0, smooth, 255 - smooth)[..., None]
    return out


@pytest.mark.parametrize("height,width,size", [
    (1024, 1024, 224),  # FFHQ samples into FaRL / CLIP ViT-B: 4.6x down
    (300, 517, 224),    # down, long side cropped
    (97, 131, 224),     # up in both directions
    (200, 200, 336),    # up, square (ViT-L/14@336)
    (224, 260, 224),    # height unchanged: Pillow skips that pass
    (700, 300, 224),    # tall: Pillow resizes the height first
])
def test_uint8_preprocess_equals_pil_exactly(height, width, size):
    arr = _images(4, height, width, seed=height + width)
    ours = clip_preprocess(torch.from_numpy(arr).permute(0, 3, 1, 2), size)  # (4, 3, S, S)
    for i in range(len(arr)):
        assert torch.equal(ours[i], _official(arr[i], size)), f"image {i} differs"


def test_resize_without_crop_equals_pillow_resize():
    arr = _images(2, 61, 45, seed=3)
    for new_h, new_w in ((17, 90), (128, 33), (61, 20)):
        ours = pil_resize_crop(torch.from_numpy(arr).permute(0, 3, 1, 2), (new_h, new_w))
        for i in range(2):
            want = np.array(Image.fromarray(arr[i]).resize((new_w, new_h), Image.BICUBIC))
            assert np.array_equal(ours[i].permute(1, 2, 0).numpy(), want)


def test_encode_image_of_uint8_uses_the_exact_pixels():
    cfg = CLIP_PRESETS["tiny"]
    with seeded_init(0):
        emb = ClipEmbedder(cfg)
    arr = _images(2, 80, 96, seed=9)
    ours = emb.encode_image(torch.from_numpy(arr).permute(0, 3, 1, 2))
    reference = torch.stack([_official(a, cfg.image_size) for a in arr])
    assert torch.equal(ours, emb.model.encode_image(reference, normalize=True))


def test_pil_resize_refuses_float_input():
    with pytest.raises(ValueError, match="uint8"):
        pil_resize_crop(torch.rand(1, 3, 8, 8), (4, 4))

