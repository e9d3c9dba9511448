"""Spatial conditions named on the command line or in an edit spec: a file, or `DATASET#INDEX`.

A file is read by its modality's network input (label-id mask PNG, 0/255 sketch PNG, 3DMM
`.npy`, ...); a dataset reference takes the sample's stored member of that modality, so the
README's examples run on the demo dataset without any hand-made file.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from mm2latent_core.errors import ConfigError, DatasetError
from mm2latent_core.modalities.network_input import VectorInput
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.inference.files import checked_array
from mm2latent.inference import check_modality, read_condition, read_image
from mm2latent.modalities.registry import default_registry
from storage.samples import parse_sample_ref, read_sample_members


def _member(members: dict[str, bytes], exts: tuple[str, ...]) -> bytes | None:
    """The sample's member of the modality: the first of its extensions that is present."""
    return next((members[ext] for ext in exts if ext in members), None)


def load_condition(modality: str, ref: str, registry: ModalityRegistry | None = None) -> np.ndarray:
    """The raw condition (mask ids, 0/255 sketch, flame code, ...) of a file or `DATASET#INDEX`.

    A file is read as read_condition reads it; a dataset member gives a map as stored, or a
    vector as its flat (dim,) row.

    Args:
        modality: a condition of `registry` ("mask", "sketch" or "flame" by default).
        ref: a file URL, or a dataset sample reference such as `data/tiny#3`.
        registry: the modalities; None = default_registry().
    """
    registry = registry or default_registry()
    check_modality(modality, registry)
    sample = parse_sample_ref(ref)
    if sample is None:
        return read_condition(ref, modality, registry)
    members = read_sample_members(*sample)
    data = _member(members, registry.get(modality).exts)
    if data is None:
        raise DatasetError(f"{ref}: the sample has no {modality} (members: {', '.join(sorted(members))}). "
                           "Fix: use a dataset made with that modality.")
    network_input = registry.condition(modality)
    try:
        array = network_input.read(data)
    except ValueError as e:
        raise ConfigError(f"{ref}: {e}") from e
    if isinstance(network_input, VectorInput):
        array = array.astype(np.float32).reshape(-1)  # (dim,): the stored row
    return checked_array(ref, network_input.check, array)


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
