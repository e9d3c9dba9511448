"""The Canny sketch of the stored image: a {0, 255} grey PNG, decoded to float (1, H, W)."""

from __future__ import annotations

import numpy as np
import torch

from mm2latent.modalities.codecs import decode_image, encode_png
from mm2latent.modalities.spec import Annotation, ModalitySpec, SynthBatch
from mm2latent.synth import stages


def _encode(lines: np.ndarray, _image_format: str) -> tuple[str, bytes]:
    return "sketch.png", encode_png(lines)


def _decode(data: bytes) -> torch.Tensor:
    lines = decode_image(data, "L") >= 128  # (H, W) bool; stored as 0/255
    return torch.from_numpy(lines).float().unsqueeze(0)  # (1, H, W)


def _annotate(cfg, batch: SynthBatch) -> Annotation:
    return Annotation(stages.sketches(cfg, batch.pixels.cpu()))  # (B, S, S) uint8 {0, 255}


def _tile(lines: torch.Tensor) -> np.ndarray:
    edges = (lines[0].numpy() * 255).astype(np.uint8)  # (H, W) 0/255
    return np.repeat(edges[:, :, None], 3, axis=2)  # (H, W, 3)


class EdgeDensity:
    """Share of edge pixels over decoded sketches."""

    def __init__(self) -> None:
        self.edges = self.pixels = 0

    def add(self, lines: torch.Tensor) -> None:
        """Fold in one (1, H, W) sketch."""
        self.edges += int(lines.sum().item())
        self.pixels += lines.numel()

    def result(self) -> float | None:
        """Edge share in [0, 1], None without pixels."""
        return self.edges / self.pixels if self.pixels else None

    def render(self, result: float | None) -> str | None:
        """'sketch edge density: x'."""
        return None if result is None else f"sketch edge density: {result:.4f}"


# The sketch "annotator" is the preset's Canny settings: no network, no weights.
SPEC = ModalitySpec(name="sketch", exts=("sketch.png",), encode=_encode, decode=_decode,
                    annotate=_annotate, build=lambda preset, _cache_dir: preset.sketch,
                    stats=EdgeDensity, tile=_tile)
