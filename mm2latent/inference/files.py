"""Inference files: condition PNG/.npy inputs and image strips, read and written through storage."""

from __future__ import annotations

import io
import re

import numpy as np
import torch
from PIL import Image

from mm2latent_core.errors import ConfigError
from mm2latent_core.modalities.network_input import VectorInput
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.modalities.codecs import encode_png
from mm2latent.modalities.registry import default_registry
from storage.atomic import atomic_write_bytes
from storage.fs import read_file


def _read_bytes(url: str, what: str) -> bytes:
    try:
        return read_file(url)
    except FileNotFoundError as e:
        raise ConfigError(f"{what} file {url} does not exist.") from e


# Largest image decoded from a user's file, in pixels: Pillow's own bomb threshold (about
# 9459 x 9459). Checked from the header, before any pixel is decoded, so a 20000 x 20000 PNG
# costs nothing; Pillow would only warn up to twice this and then raise its own error.
MAX_INPUT_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def _too_large(url: str, what: str, pixels: int, size: str = "") -> ConfigError:
    return ConfigError(f"{url}: the {what} image is {size}{pixels:,} pixels, over the limit of "
                       f"{MAX_INPUT_PIXELS:,} pixels decoded from a file (a guard against "
                       "decompression bombs). Fix: resize it (conditions are used at 256 to "
                       "1024 px).")


def _png_size(data: bytes) -> str:
    """'W x H px, ' from a PNG's IHDR chunk (what Pillow's bomb error leaves out), else ''."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return ""
    return f"{int.from_bytes(data[16:20], 'big')} x {int.from_bytes(data[20:24], 'big')} px, "


def _header_checked(url: str, what: str, data: bytes) -> Image.Image:
    """The image in `data`, opened (header only) and refused if it is over MAX_INPUT_PIXELS."""
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as e:  # open() itself refuses beyond twice the limit
        counted = re.search(r"(\d+) pixels", str(e))
        raise _too_large(url, what, int(counted.group(1)) if counted else 0, _png_size(data)) from e
    except OSError as e:
        raise ConfigError(f"{url}: not a readable image for the {what} ({e}).") from e
    if image.width * image.height > MAX_INPUT_PIXELS:
        raise _too_large(url, what, image.width * image.height,
                         f"{image.width} x {image.height} px, ")
    return image


def _open_png(url: str, what: str) -> Image.Image:
    image = _header_checked(url, what, _read_bytes(url, what))
    try:
        image.load()
    except OSError as e:
        raise ConfigError(f"{url}: not a readable image for the {what} ({e}).") from e
    return image


def checked_array(url: str, check, array: np.ndarray) -> np.ndarray:
    """`array` once `check` accepts it; its ConfigError is re-raised naming the file."""
    try:
        check(array)
    except ConfigError as e:
        raise ConfigError(f"{url}: {e}") from e
    return array


def read_condition(url: str, modality: str, registry: ModalityRegistry | None = None) -> np.ndarray:
    """The raw condition in a file, checked by its modality's network input.

    A map modality gives its (H, W) map (label ids of a mask PNG, 0/255 of a sketch PNG, ...);
    a vector modality its (B, dim) float32 rows of a `.npy` holding (dim,) or (B, dim).

    Args:
        url: the file.
        modality: a condition of `registry`.
        registry: the modalities; None = default_registry().
    """
    network_input = (registry or default_registry()).condition(modality)
    data = _read_bytes(url, modality)
    if not isinstance(network_input, VectorInput):
        _header_checked(url, modality, data)  # a map is an image: no decoding bombs
    try:
        array = network_input.read(data)
    except ValueError as e:
        raise ConfigError(f"{url}: {e}") from e
    checked = checked_array(url, network_input.check, array)
    return network_input.rows(checked) if isinstance(network_input, VectorInput) else checked


def read_image(url: str) -> torch.Tensor:
    """(1, 3, H, W) float RGB in [0, 1] of an image file (PNG, JPEG, ...)."""
    rgb = np.asarray(_open_png(url, "image").convert("RGB"))  # (H, W, 3)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


def write_png(url: str, images: torch.Tensor | np.ndarray) -> None:
    """Write uint8 images (B, H, W, 3) side by side as one PNG at `url` (atomically)."""
    array = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
    strip = np.concatenate(list(array), axis=1)  # (H, B * W, 3)
    atomic_write_bytes(url, encode_png(strip))
