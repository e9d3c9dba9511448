"""Byte codecs shared by modality specs: PNG/JPEG images, pickle-free .npy vectors."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

PNG_COMPRESSION = 3  # zlib level: deterministic output; 3 is ~4x faster than 9 for +10% size
JPEG_QUALITY = 95


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) grey or (H, W, 3) RGB uint8 array."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)  # OpenCV writes BGR order
    ok, data = cv2.imencode(".png", np.ascontiguousarray(array),
                            [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {array.shape}")
    return data.tobytes()


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """JPEG bytes (quality 95, no chroma subsampling) of an (H, W, 3) RGB uint8 array."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"JPEG encoding failed for an array of shape {rgb.shape}")
    return data.tobytes()


def encode_npy(array: np.ndarray) -> bytes:
    """`.npy` bytes of a numeric array, written with allow_pickle=False."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_image(data: bytes, mode: str) -> np.ndarray:
    """(H, W[, 3]) uint8 array of a PNG/JPEG payload converted to PIL `mode`."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode))


def decode_vector(data: bytes) -> torch.Tensor:
    """float32 tensor of `.npy` bytes (read with allow_pickle=False)."""
    return torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32))


@dataclass(frozen=True)
class VectorEncoder:
    """Encodes a float32 vector as the tar member `<name>.npy` (a class, so specs pickle)."""

    name: str  # the modality's name; the member extension is `<name>.npy`

    def __call__(self, value: np.ndarray, _image_format: str) -> tuple[str, bytes]:
        return f"{self.name}.npy", encode_npy(np.asarray(value, dtype=np.float32))


def vector_codec(name: str) -> tuple[VectorEncoder, Callable[[bytes], torch.Tensor]]:
    """(encode, decode) of a float32 vector stored as `<name>.npy`."""
    return VectorEncoder(name), decode_vector
