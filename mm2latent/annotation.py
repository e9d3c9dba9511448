"""Annotation stages: the stored uint8 image to labels, a sketch or an embedding, batch-invariant.

Pure functions shared by synth-data (through each modality's annotator in mm2latent/modalities),
the editor (annotating a photo or an edit) and the FaRL similarity of edit-dataset. They sit
below both synth and the modality registry, so neither reaches up into the other. Every stage
that runs a network goes through mm2latent.batching.invariant_forward, so a sample's annotation
does not depend on which other samples share its batch (see that module).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mm2latent.batching import invariant_forward
from mm2latent.models.face_parser.base import FaceParser, ParseResult
from mm2latent.models.sketch import SketchCfg, extract_sketch


def stored_pixels(images01: torch.Tensor, size: int) -> torch.Tensor:
    """(B, S, S, 3) uint8 of [0, 1] images at the dataset's stored size (synth-data's resize)."""
    if images01.shape[-2:] != (size, size):
        images01 = F.interpolate(images01, size=(size, size), mode="bilinear",
                                 align_corners=False, antialias=True)
    pixels = (images01 * 255 + 0.5).clamp(0, 255).to(torch.uint8)  # (B, 3, S, S), rounded
    return pixels.permute(0, 2, 3, 1).contiguous()  # (B, S, S, 3)


def to_float_images(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]: annotators see the stored image."""
    return pixels.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)


def parse_masks(parser: FaceParser, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W) uint8 CelebAMask-HQ labels and (B,) non-background fraction."""
    result = ParseResult.of_labels(invariant_forward(lambda x: parser.parse(x).labels, images01))
    return result.labels, result.face_fraction


def sketches(cfg: SketchCfg, pixels: torch.Tensor) -> np.ndarray:
    """(B, S, S) uint8 {0, 255} Canny edges of the stored uint8 images (per image, no padding)."""
    return extract_sketch(pixels.numpy(), cfg)


def embed(encoder: Callable[[torch.Tensor], torch.Tensor], images01: torch.Tensor) -> torch.Tensor:
    """(B, D) float32 embedding of a batch by an image encoder, batch-invariant."""
    return invariant_forward(encoder, images01).float()
