"""Provenance sidecars and PNG data URLs for the interactive editor's results."""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import torch

from mm2latent.interactive.models import ModelSet
from mm2latent.modalities.codecs import encode_png


def _uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8 of a uint8 image or of a (1, 3, H, W) float photo in [0, 1]."""
    if isinstance(image, torch.Tensor) and image.dtype.is_floating_point:
        image = (image[0] * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0)  # (H, W, 3)
    return np.asarray(image)


def png_data_url(image: np.ndarray | torch.Tensor) -> str:
    """data:image/png;base64,... of an image (lossless: the page shows the exact pixels)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(_uint8(image))).decode()


def provenance(models: ModelSet, record: dict, image: np.ndarray) -> dict:
    """The JSON sidecar of one result: what made it (models, versions, inputs, seed, beta)."""
    modality = record.get("modality", models.editor.modality)
    preset = models.preset
    return {"preset": preset.name, "makes_faces": preset.makes_faces,
            "weights": preset.weight_names() or {"all": f"seeded (init_seed {preset.init_seed})"},
            "models": models.tags.get(modality, {}), "versions": models.versions, **record,
            "image_sha256": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()}
