"""The parser interface shared by BiSeNet and facer/FaRL: images in, CelebAMask-HQ labels out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mm2latent.models.face_parser.labels import NUM_CLASSES
from mm2latent.models.image_checks import check_rgb_images

# A parse with less than this share of non-background pixels counts as "no face found".
MIN_FACE_FRACTION = 0.01


@dataclass(frozen=True)
class ParseResult:
    """Label maps of one batch and how much of each image the parser called face/head."""

    labels: torch.Tensor  # (B, H, W) uint8, CelebAMask-HQ order, at the input image size
    face_fraction: torch.Tensor  # (B,) float32 in [0, 1]: share of non-background pixels

    @classmethod
    def of_labels(cls, labels: torch.Tensor) -> ParseResult:
        """The result for label maps (B, H, W), with their non-background share."""
        return cls(labels=labels, face_fraction=(labels != 0).float().mean(dim=(1, 2)))

    def face_found(self, min_fraction: float = MIN_FACE_FRACTION) -> torch.Tensor:
        """(B,) bool: True where at least `min_fraction` of the pixels are not background."""
        return self.face_fraction >= min_fraction


class FaceParser(nn.Module):
    """Base class: subclasses give logits in their own class order, this class remaps them.

    A subclass implements `source_logits(images) -> (B, C_src, H, W)` at the input size; this
    class turns them into CelebAMask-HQ-ordered logits (`forward`) and label maps (`parse`).
    Labels are the argmax of logits that were upsampled bilinearly to the input size (never a
    nearest-neighbour resize of a low-resolution label map), so boundaries stay smooth.
    """

    def __init__(self, source_to_celebamask: np.ndarray) -> None:
        super().__init__()
        lut = torch.from_numpy(np.asarray(source_to_celebamask, dtype=np.int64).copy())
        if sorted(lut.tolist()) != list(range(NUM_CLASSES)):
            raise ValueError(f"the label table must be a permutation of 0..{NUM_CLASSES - 1}, "
                             f"got {lut.tolist()}")
        # inverse[k] = source channel holding CelebAMask-HQ class k
        inverse = torch.empty_like(lut)
        inverse[lut] = torch.arange(NUM_CLASSES)
        self.register_buffer("lut", lut, persistent=False)
        self.register_buffer("inverse_lut", inverse, persistent=False)

    def source_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C_src, H, W) logits in the parser's own class order at the input size."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 19, H, W) logits in CelebAMask-HQ order for float RGB images in [0, 1].

        Args:
            images: (B, 3, H, W) float RGB in [0, 1], any H and W.
        """
        check_rgb_images(images, check_range=True)
        logits = self.source_logits(images)  # (B, C_src, H, W)
        return logits.index_select(1, self.inverse_lut)  # (B, 19, H, W)

    @torch.no_grad()
    def parse(self, images: torch.Tensor) -> ParseResult:
        """Label maps in CelebAMask-HQ order plus the per-image non-background fraction.

        Args:
            images: (B, 3, H, W) float RGB in [0, 1], any H and W.
        """
        check_rgb_images(images, check_range=True)
        source = self.source_logits(images).argmax(dim=1)  # (B, H, W) source ids
        labels = self.lut[source].to(torch.uint8)  # (B, H, W) CelebAMask-HQ ids
        return ParseResult.of_labels(labels)
