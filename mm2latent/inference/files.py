"""Inference files: condition PNG/.npy inputs and image strips, read and written through storage."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from mm2latent.dims import FLAME_DIM
from mm2latent.errors import ConfigError
from mm2latent.inference.inputs import check_flame, check_masks, check_sketches
from mm2latent.modalities.codecs import encode_png
from storage.atomic import atomic_write_bytes
from storage.fs import read_file


def _read_bytes(url: str, what: str) -> bytes:
    try:
        return read_file(url)
    except FileNotFoundError as e:
        raise ConfigError(f"{what} file {url} does not exist.") from e


def _open_png(url: str, what: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(_read_bytes(url, what)))
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


def read_mask(url: str) -> np.ndarray:
    """(H, W) uint8 label ids from a single-channel label PNG (ids 0..18, checked)."""
    image = _open_png(url, "mask")
    if image.mode not in ("L", "P"):
        raise ConfigError(f"{url}: a mask must be a single-channel label PNG (class id per "
                          f"pixel, 0..18), found mode {image.mode}.")
    return checked_array(url, check_masks, np.asarray(image))


def read_sketch(url: str) -> np.ndarray:
    """(H, W) uint8 0/255 strokes from a sketch PNG (white strokes on black, values checked)."""
    return checked_array(url, check_sketches, np.asarray(_open_png(url, "sketch").convert("L")))


def read_flame(url: str) -> np.ndarray:
    """(B, 159) float32 3DMM codes from a .npy file holding (159,) or (B, 159) (checked)."""
    try:
        array = np.load(io.BytesIO(_read_bytes(url, "flame")), allow_pickle=False)
    except ValueError as e:
        raise ConfigError(f"{url}: not a .npy array of 3DMM codes ({e}).") from e
    return checked_array(url, check_flame, array).astype(np.float32).reshape(-1, FLAME_DIM)  # (B, 159)


def read_image(url: str) -> torch.Tensor:
    """(1, 3, H, W) float RGB in [0, 1] of an image file (PNG, JPEG, ...)."""
    rgb = np.asarray(_open_png(url, "image").convert("RGB"))  # (H, W, 3)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


def write_png(url: str, images: torch.Tensor | np.ndarray) -> None:
    """Write uint8 images (B, H, W, 3) side by side as one PNG at `url` (atomically)."""
    array = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
    strip = np.concatenate(list(array), axis=1)  # (H, B * W, 3)
    atomic_write_bytes(url, encode_png(strip))
