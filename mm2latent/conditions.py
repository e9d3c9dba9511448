"""Spatial conditions named on the command line or in an edit spec: a file, or `DATASET#INDEX`.

A file is read by the inference readers (label-id mask PNG, 0/255 sketch PNG, 3DMM `.npy`);
a dataset reference takes the sample's stored mask / sketch / flame member, so the README's
examples run on the demo dataset without any hand-made file.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from mm2latent.errors import DatasetError
from mm2latent.inference.files import checked_array
from mm2latent.inference import check_modality, read_flame, read_image, read_mask, read_sketch
from mm2latent.modalities.registry import default_registry
from storage.samples import parse_sample_ref, read_sample_members

_MEMBER = {"mask": "mask.png", "sketch": "sketch.png", "flame": "flame.npy"}
_FILE_READERS = {"mask": read_mask, "sketch": read_sketch, "flame": read_flame}


def _decode(modality: str, data: bytes) -> np.ndarray:
    if modality == "flame":
        return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32).reshape(-1)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def load_condition(modality: str, ref: str) -> np.ndarray:
    """The raw condition (mask ids, 0/255 sketch or (B, 159) flame) of a file or `DATASET#INDEX`.

    Args:
        modality: "mask", "sketch" or "flame".
        ref: a file URL, or a dataset sample reference such as `data/tiny#3`.
    """
    check_modality(modality)
    sample = parse_sample_ref(ref)
    if sample is None:
        return _FILE_READERS[modality](ref)
    members = read_sample_members(*sample)
    if _MEMBER[modality] not in members:
        raise DatasetError(f"{ref}: the sample has no {modality} (members: {', '.join(sorted(members))}). "
                           "Fix: use a dataset made with that modality.")
    array = _decode(modality, members[_MEMBER[modality]])
    return checked_array(ref, default_registry().condition(modality).check, array)


def load_photo(ref: str) -> torch.Tensor:
    """(1, 3, H, W) float RGB in [0, 1] of an image file or of a `DATASET#INDEX` sample's image."""
    sample = parse_sample_ref(ref)
    if sample is None:
        return read_image(ref)
    members = read_sample_members(*sample)
    data = members.get("png", members.get("jpg"))
    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(image.convert("RGB"))  # (H, W, 3)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255.0).unsqueeze(0)
