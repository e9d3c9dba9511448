"""Untrusted uploads -> checked arrays: size and pixel limits, image decoding, map values (mask ids, 0/255 sketch, ...)."""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mm2latent.alignment import check_looks_aligned
from mm2latent_core.errors import ConfigError
from mm2latent_core.modalities.network_input import MapInput

FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
# Pillow modes of 8-bit photos (P: an 8-bit palette): what e4e and the annotators were made for.
PHOTO_MODES = ("RGB", "RGBA", "L", "LA", "P")


@dataclass(frozen=True)
class UploadLimits:
    """What one request may send."""

    max_bytes: int = 8 * 1024 * 1024  # size of one uploaded file, bytes
    max_side: int = 2048              # width and height of an image or painted map, pixels


def open_image(data: bytes, limits: UploadLimits, what: str) -> Image.Image:
    """The decoded image of `data`; ConfigError for empty, too large or non-image uploads."""
    if not data:
        raise ConfigError(f"the {what} upload is empty; choose a PNG or JPEG file.")
    if len(data) > limits.max_bytes:
        raise ConfigError(f"the {what} upload is {len(data) / 2**20:.1f} MiB; the limit is "
                          f"{limits.max_bytes / 2**20:.1f} MiB. Fix: upload a smaller PNG or JPEG.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            check_side(image.width, image.height, limits, what)
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ConfigError(f"the {what} upload is not an image this app reads ({', '.join(FORMATS)}); "
                          "choose a PNG or JPEG file.") from e
    except OSError as e:
        raise ConfigError(f"the {what} upload is a damaged or truncated image ({e}).") from e
    if image.format not in FORMATS:
        raise ConfigError(f"the {what} upload is {image.format}; use one of {', '.join(FORMATS)}.")
    return image


def check_side(width: int, height: int, limits: UploadLimits, what: str) -> None:
    """ConfigError when an image or map is larger than the pixel limit."""
    if max(width, height) > limits.max_side or min(width, height) < 1:
        raise ConfigError(f"the {what} is {width}x{height} px; the limit is {limits.max_side} px "
                          "per side. Fix: resize it (masks with nearest-neighbour).")


def condition_from_image(image: Image.Image, modality: str, map_input: MapInput) -> np.ndarray:
    """(H, W) uint8 map of an uploaded image (its MapInput.from_upload, else its grey levels),
    checked (a mask: label ids or palette colours; a sketch: 0/255)."""
    array = map_input.from_upload(image) if map_input.from_upload else np.asarray(image.convert("L"))
    map_input.check(array)
    return array.astype(np.uint8)


def condition_from_raw(b64: str, width: int, height: int, modality: str, map_input: MapInput,
                       limits: UploadLimits) -> np.ndarray:
    """(H, W) uint8 condition from the page's painted map (base64 of H * W bytes), checked."""
    check_side(width, height, limits, f"painted {modality}")
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError as e:
        raise ConfigError(f"the painted {modality} is not valid base64 ({e}).") from e
    if len(raw) != width * height:
        raise ConfigError(f"the painted {modality} has {len(raw)} values for {width}x{height} px.")
    array = np.frombuffer(raw, np.uint8).reshape(height, width).copy()  # (H, W)
    map_input.check(array)
    return array


def photo_from_image(image: Image.Image, min_side: int = 1) -> torch.Tensor:
    """(1, 3, H, W) float RGB in [0, 1], as the CLI reads a photo.

    Only 8-bit RGB or grey, square (FFHQ-aligned) and at least `min_side` px: ConfigError
    otherwise. A 16-bit photo would be clipped to 8 bits and a thumbnail blown up to the
    encoder's size, both silently.
    """
    if image.mode not in PHOTO_MODES:
        raise ConfigError(f"the photo has Pillow mode {image.mode!r}, not 8-bit RGB or grey (e.g. a "
                          "16-bit or CMYK file). Fix: save it as an 8-bit RGB PNG or JPEG.")
    check_looks_aligned(image.height, image.width, what="the photo")
    if image.width < min_side:
        raise ConfigError(f"the photo is {image.width}x{image.height} px, smaller than the "
                          f"{min_side}x{min_side} px the inversion (e4e) takes. Fix: upload a "
                          "larger aligned crop.")
    rgb = np.asarray(image.convert("RGB"))  # (H, W, 3)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255.0).unsqueeze(0)
