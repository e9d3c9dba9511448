"""Pillow's bicubic resize and centre crop of uint8 image batches: the official CLIP pixels.

CLIP and FaRL were trained and are evaluated on images resized by Pillow (torchvision
`Resize(BICUBIC)` on a PIL image, then `CenterCrop`). Pillow resizes in two separable passes
with 22-bit fixed-point weights and stores the first pass as uint8; a float resize (torch's
antialiased bicubic) skips those roundings and differs by one uint8 step in about 10% of
pixels. Pillow itself is the only exact reference (its pass order even changes between
versions: 13.0 shrinks the height first when it loses over twice as many pixels as the
width), so the batch is handed to Pillow image by image. Pillow releases the GIL while it
resamples, so a thread pool spreads the images over the cores.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image


def _resize_one(image: np.ndarray, size: tuple[int, int],
                crop: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W, C) uint8 -> (h, w, C) uint8: Image.resize((W', H'), BICUBIC), then crop."""
    top, left, height, width = crop
    resized = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(resized.crop((left, top, left + width, top + height)))


def pil_resize_crop(images: torch.Tensor, size: tuple[int, int],
                    crop: tuple[int, int, int, int] | None = None,
                    workers: int | None = None) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> uint8 (B, 3, h, w): Pillow's bicubic resize to `size`, then crop.

    Args:
        images: (B, 3, H, W) uint8 RGB (on any device; Pillow runs on the CPU).
        size: (H', W') of the resized image.
        crop: (top, left, height, width) window of the resized image; None = all of it.
        workers: threads; None = one per CPU core, at most one per image.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"pil_resize_crop expects a uint8 (B, 3, H, W) tensor, got "
                         f"{images.dtype} {tuple(images.shape)}.")
    crop = crop or (0, 0, *size)
    if images.shape[0] == 0:
        return images.new_zeros((0, 3, crop[2], crop[3]))
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3): Pillow's layout
    workers = min(workers or os.cpu_count() or 1, len(arrays))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        out = list(pool.map(lambda a: _resize_one(a, size, crop), arrays))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(images.device)  # (B, 3, h, w)
