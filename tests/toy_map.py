"""A toy MAP modality defined only in tests: SHADE, each pixel's brightness in 4 levels (0..3).

No project file names it. Tests reach every command with it through the plugin variable
(`MM2LATENT_MODALITIES=tests.toy_map:SPEC`), as a user's own modality would. Every callable is
a module-level function so registries holding it pickle into spawned workers.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

from mm2latent.modalities.codecs import encode_png
from mm2latent.presets import map_autoencoder
from mm2latent_core.errors import ConfigError
from mm2latent_core.modalities.network_input import MapInput, Spatial, batched_maps, interpolated
from mm2latent_core.modalities.spec import Annotation, ConditionHelp, ModalitySpec, SynthBatch

NAME = "shade"
LEVELS = 4  # brightness classes 0 (dark) .. 3 (bright)


def shades(images01: torch.Tensor) -> torch.Tensor:
    """(B, S, S) uint8 levels of (B, 3, S, S) images in [0, 1]."""
    luma = images01.float().mean(dim=1)  # (B, S, S)
    return (luma * LEVELS).floor().clamp(0, LEVELS - 1).to(torch.uint8)


def _annotate(_annotator: None, batch: SynthBatch) -> Annotation:
    return Annotation(shades(batch.images01).cpu().numpy())  # (B, S, S) uint8


def _encode(levels: np.ndarray, _image_format: str) -> tuple[str, bytes]:
    return f"{NAME}.png", encode_png(levels)


def _read(payload: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(payload)) as im:
            return np.asarray(im.convert("L"))  # (H, W)
    except OSError as e:
        raise ValueError(f"not a readable image for the shade ({e}).") from e


def _decode(payload: bytes) -> torch.Tensor:
    return torch.from_numpy(_read(payload).astype(np.int64))  # (H, W)


def check_shades(raw: Spatial) -> torch.Tensor:
    """(B, H, W) int64 levels; ConfigError for anything outside 0..3."""
    t = batched_maps(raw, NAME)
    if t.dtype.is_floating_point or int(t.min()) < 0 or int(t.max()) >= LEVELS:
        raise ConfigError(f"shade must hold integer levels 0..{LEVELS - 1}.")
    return t.long()


def _to_map(levels: torch.Tensor) -> torch.Tensor:
    return levels


def _resize(levels: torch.Tensor, resolution: int) -> torch.Tensor:
    return interpolated(levels, resolution, "nearest").to(torch.uint8)  # (R, R)


def _read_png(payload: bytes, _num_classes: int) -> np.ndarray:
    return _read(payload).astype(np.uint8)


def _to_input(levels: torch.Tensor, cfg) -> torch.Tensor:
    onehot = nn.functional.one_hot(levels.long(), cfg.num_classes)  # (B, R, R, K)
    return onehot.permute(0, 3, 1, 2).float()  # (B, K, R, R)


def _autoencoder(preset):
    return map_autoencoder(preset, NAME, in_channels=LEVELS, num_classes=LEVELS)


def _loss(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out, x)


NETWORK_INPUT = MapInput(check=check_shades, to_map=_to_map, resize=_resize, read_png=_read_png,
                         to_input=_to_input, ae_lr=1e-3, dtype=torch.int64, read=_read,
                         autoencoder=_autoencoder, ae_loss=_loss)

SPEC = ModalitySpec(name=NAME, exts=(f"{NAME}.png",), encode=_encode, decode=_decode,
                    annotate=_annotate, network_input=NETWORK_INPUT,
                    help=ConditionHelp(file="Shade PNG (brightness levels 0..3)", noun="shade map",
                                       annotator="its brightness"))
