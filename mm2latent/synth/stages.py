"""Pipeline stages of synth-data: pure functions over a batch of sample indices.

No I/O and no globals: each stage takes models and arrays and returns arrays. Results for a
sample depend only on (dataset seed, sample index, preset, weights), never on which other
samples share its batch or how many threads run it: every stage that runs a network goes
through mm2latent.batching.invariant_forward (why and how: see that module).
tests/test_synth_pipeline.py checks the whole pipeline byte for byte across batch and shard
sizes, tests/test_batch_invariance.py across thread counts at the paper's widths. The
annotation stages (masks, sketches, embeddings of the stored image) live in
mm2latent/annotation.py: the modalities below synth and the editor call them too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mm2latent.batching import invariant_forward
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.seeding import derive_seed


def sample_seed(dataset_seed: int, index: int) -> int:
    """The per-sample seed of sample `index` (recorded in the manifest)."""
    return derive_seed("synth-data", dataset_seed, index)


def latents(dataset_seed: int, indices: Sequence[int], z_dim: int) -> torch.Tensor:
    """(B, z_dim) z ~ N(0, I), row i drawn from its own RNG seeded by (dataset_seed, index)."""
    rows = []
    for index in indices:
        rng = torch.Generator().manual_seed(sample_seed(dataset_seed, index))
        rows.append(torch.randn(z_dim, generator=rng))
    return torch.stack(rows) if rows else torch.zeros(0, z_dim)  # (B, z_dim)


def generate(generator: Generator, z: torch.Tensor, truncation_psi: float,
             store_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Map z to w and render, returning w (B, w_dim) and uint8 RGB images (B, S, S, 3).

    The image is quantised the way StyleGAN2 saves its samples (x * 127.5 + 128, clamped),
    after an antialiased resize to `store_size` when that differs from the generator's.
    """
    ws = invariant_forward(lambda z_: generator.mapping(z_, truncation_psi), z)  # (B, num_ws, w_dim)
    images = invariant_forward(lambda ws_: generator.synthesis(ws_, noise_mode="const"), ws)  # (B,3,R,R)
    return ws[:, 0], store_pixels(images, store_size)  # (B, w_dim), (B, S, S, 3)


def store_pixels(images: torch.Tensor, store_size: int) -> torch.Tensor:
    """Generator output (B, 3, R, R) in [-1, 1] -> stored uint8 RGB (B, S, S, 3).

    An antialiased resize to `store_size` when that differs from R, then StyleGAN2's own
    quantisation (x * 127.5 + 128, clamped).
    """
    if images.shape[-1] != store_size:
        images = F.interpolate(images, size=(store_size, store_size), mode="bilinear",
                               align_corners=False, antialias=True)
    pixels = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # (B, 3, S, S)
    return pixels.permute(0, 2, 3, 1).contiguous()  # (B, S, S, 3)
