"""The input check every image network shares: a float RGB batch (B, 3, H, W), values in [0, 1]."""

from __future__ import annotations

import torch


def check_rgb_images(images: torch.Tensor, *, size: int | None = None, check_range: bool = False,
                     hint: str = "") -> None:
    """ValueError naming the first problem unless `images` is a float (B, 3, H, W) tensor.

    Args:
        images: the batch a network received.
        size: required H = W in pixels; None = any size.
        check_range: also require values in [0, 1] (a full pass over the data, so only where a
            wrong range is a likely mistake, e.g. uint8 images passed as floats).
        hint: appended to shape errors, e.g. how to make the expected crop.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        found = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, 3, H, W) tensor, got {found}.{hint}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float RGB in [0, 1], got dtype {images.dtype}.")
    if images.shape[1] != 3:
        raise ValueError(f"images dim 1 (channels) is {images.shape[1]}, expected 3 (RGB).")
    if size is not None:
        for name, got in (("height", images.shape[2]), ("width", images.shape[3])):
            if got != size:
                raise ValueError(f"images {name} must be {size}, got {got} "
                                 f"(shape {tuple(images.shape)}).{hint}")
    if check_range and images.numel() and (images.min() < -1e-3 or images.max() > 1 + 1e-3):
        raise ValueError("images must be RGB in [0, 1]; got values in "
                         f"[{images.min().item():.3g}, {images.max().item():.3g}] "
                         "(divide uint8 images by 255)")
