"""The authors' autoencoder augmentation, made deterministic: random affine + horizontal flip.

Open-Debin/MM2Latent `lib/data_loader.py` trains both autoencoders on
RandomAffine(degrees=20, translate=(0.2, 0.2), shear=15, NEAREST) then RandomHorizontalFlip().
torchvision draws those parameters from the global RNG; here they come from a generator seeded
per batch, so a run is reproducible and resumable. The parameter laws are torchvision's:
angle ~ U(-20, 20) degrees; translation ~ round(U(-0.2 W, 0.2 W)) pixels per axis; shear
~ U(-15, 15) degrees along x only (a single `shear` number); scale 1; flip with p = 0.5.
Nearest-neighbour resampling keeps mask ids and 0/255 strokes exact; pixels moved in from
outside become 0 (background, no stroke).

One difference we keep: the authors augment the 512 px PNG before resizing to 256 px, we
augment the map at the network's resolution, which changes only where edge pixels land.
Flipping a face swaps its sides while the l_/r_ labels stay, as in the authors' recipe.
"""

from __future__ import annotations

import torch

MAX_DEGREES = 20.0  # rotation range, +-degrees
MAX_TRANSLATE = 0.2  # translation range, fraction of width / height
MAX_SHEAR = 15.0  # x-shear range, +-degrees
FLIP_P = 0.5  # probability of a horizontal flip


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=gen))


def random_affine_flip(maps: torch.Tensor, seed: int) -> torch.Tensor:
    """Each map of (B, H, W) uint8 moved by its own random affine and flip; same dtype and shape.

    Args:
        maps: label-id masks or 0/255 sketches.
        seed: seed of this batch's parameters (the result depends only on maps and seed).
    """
    # Imported here, not at module level: torchvision's import pulls in torch._dynamo (seconds),
    # which every training command would pay although only autoencoder training augments.
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got {tuple(maps.shape)}.")
    gen = torch.Generator().manual_seed(seed)
    height, width = maps.shape[1:]
    out = []
    for one in maps:
        angle = _uniform(gen, -MAX_DEGREES, MAX_DEGREES)
        tx = round(_uniform(gen, -MAX_TRANSLATE * width, MAX_TRANSLATE * width))
        ty = round(_uniform(gen, -MAX_TRANSLATE * height, MAX_TRANSLATE * height))
        shear = _uniform(gen, -MAX_SHEAR, MAX_SHEAR)
        moved = tvf.affine(one[None], angle=angle, translate=[tx, ty], scale=1.0,
                           shear=[shear, 0.0], interpolation=InterpolationMode.NEAREST,
                           fill=[0.0])  # (1, H, W)
        if float(torch.rand(1, generator=gen)) < FLIP_P:
            moved = moved.flip(-1)
        out.append(moved[0])
    return torch.stack(out)  # (B, H, W)
