"""The stored RGB image: PNG (lossless) or JPEG, decoded to float (3, H, W) in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch

from mm2latent.modalities.codecs import decode_image, encode_jpeg, encode_png
from mm2latent_core.modalities.spec import Annotation, ModalitySpec, SynthBatch

IMAGE_EXTS = ("png", "jpg")


def _encode(rgb: np.ndarray, image_format: str) -> tuple[str, bytes]:
    return image_format, encode_png(rgb) if image_format == "png" else encode_jpeg(rgb)


def _decode(data: bytes) -> torch.Tensor:
    rgb = decode_image(data, "RGB")  # (H, W, 3) uint8
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)


def _annotate(_annotator: None, batch: SynthBatch) -> Annotation:
    return Annotation(batch.pixels.cpu().numpy())  # (B, S, S, 3) uint8


def _tile(image: torch.Tensor) -> np.ndarray:
    # Stored uint8 / 255 in float32 round-trips exactly through *255 and rounding.
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)


class ImageMean:
    """Per-channel RGB mean over decoded images."""

    def __init__(self) -> None:
        self.total = np.zeros(3, dtype=np.float64)
        self.pixels = 0

    def add(self, image: torch.Tensor) -> None:
        """Fold in one (3, H, W) image."""
        self.total += image.double().sum(dim=(1, 2)).numpy()
        self.pixels += image.shape[1] * image.shape[2]

    def result(self) -> list[float] | None:
        """[R, G, B] means in [0, 1], None without pixels."""
        return (self.total / self.pixels).tolist() if self.pixels else None

    def render(self, result: list[float] | None) -> str | None:
        """'image mean RGB: r, g, b'."""
        return None if result is None else "image mean RGB: " + ", ".join(f"{v:.3f}" for v in result)


SPEC = ModalitySpec(name="image", exts=IMAGE_EXTS, encode=_encode, decode=_decode,
                    annotate=_annotate, selectable=False, stats=ImageMean, tile=_tile)
