"""Per-pair metrics of generated images: CLIP score, mask accuracy, CMMD embeddings.

Conventions (also written into every report):
- CLIP score = 100 x cosine(CLIP image embedding, CLIP text embedding), per pair, averaged
  without clamping (torchmetrics clamps the mean at 0; Hessel et al. use 2.5 x max(cos, 0)).
  Images go through the official CLIP preprocessing (clip_towers.clip_preprocess).
- Mask accuracy = share of pixels whose parsed label equals the input CelebAMask-HQ label, at
  eval_size (512) px: the generated image is resized there (bilinear, antialiased) and parsed.
- CMMD embeddings: the CMMD tower's L2-normalised image embedding (see cmmd.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.face_parser.base import FaceParser


def to_float01(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    return pixels.permute(0, 3, 1, 2).float().div(255.0)  # (B, 3, H, W)


@torch.no_grad()
def clip_scores(clip: ClipEmbedder, images01: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
    """(B,) float64 100 x cosine of each image with its caption."""
    image = clip.encode_image(images01).double()  # (B, E), unit norm
    text = clip.encode_text(list(captions)).to(image.device).double()  # (B, E), unit norm
    return 100.0 * (image * text).sum(dim=1)


@torch.no_grad()
def mask_accuracy(parser: FaceParser, images01: torch.Tensor, masks: torch.Tensor,
                  eval_size: int) -> torch.Tensor:
    """(B,) float64 pixel accuracy of the parser's labels against (B, S, S) input masks."""
    if images01.shape[-1] != eval_size:
        images01 = F.interpolate(images01, size=(eval_size, eval_size), mode="bilinear",
                                 align_corners=False, antialias=True).clamp(0.0, 1.0)
    if masks.shape[-1] != eval_size:  # nearest: label ids must not be blended
        masks = F.interpolate(masks[:, None].float(), size=(eval_size, eval_size),
                              mode="nearest")[:, 0]  # (B, S, S)
    labels = parser.parse(images01.to(next(parser.parameters()).device)).labels.cpu()  # (B, S, S)
    return (labels.long() == masks.long()).double().mean(dim=(1, 2))


@torch.no_grad()
def cmmd_embeddings(clip: ClipEmbedder, images01: torch.Tensor) -> torch.Tensor:
    """(B, E) float32 unit-norm image embeddings for CMMD."""
    return clip.encode_image(images01).float().cpu()
