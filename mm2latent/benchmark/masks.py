"""Merging CelebAMask-HQ's per-class annotation PNGs into one 19-class label map.

The official annotations hold one binary PNG per class present in a face
(`CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{class}.png`, 512 px). The label map is built in
CelebAMask-HQ order: class 1 (skin) first, class 18 (cloth) last, each later class overwriting
earlier ones wherever its PNG has any non-zero pixel (the dataset's own `g_mask.py` rule).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mm2latent_core.errors import DatasetError
from mm2latent.models.face_parser.labels import CELEBAMASK_HQ_CLASSES

ANNOTATION_CLASSES = CELEBAMASK_HQ_CLASSES[1:]  # file-name classes, in merge order
MASK_SIZE = 512  # side of every official annotation PNG, pixels


def merge_class_masks(class_masks: Mapping[str, np.ndarray], size: int = MASK_SIZE) -> np.ndarray:
    """(size, size) uint8 label map from {class name: (H, W) or (H, W, C) binary array}.

    Args:
        class_masks: the PNGs of one face keyed by CelebAMask-HQ class name (absent = not present).
        size: expected side of every PNG.
    """
    unknown = sorted(set(class_masks) - set(ANNOTATION_CLASSES))
    if unknown:
        raise DatasetError(f"unknown CelebAMask-HQ class name(s) {unknown}; valid: "
                           f"{', '.join(ANNOTATION_CLASSES)}.")
    labels = np.zeros((size, size), np.uint8)
    for value, name in enumerate(CELEBAMASK_HQ_CLASSES):
        if name not in class_masks:
            continue
        array = np.asarray(class_masks[name])
        present = array.any(axis=-1) if array.ndim == 3 else array != 0  # (H, W) bool
        if present.shape != (size, size):
            raise DatasetError(f"annotation {name!r} is {present.shape[1]}x{present.shape[0]} px; "
                               f"CelebAMask-HQ annotations are {size}x{size}.")
        labels[present] = value  # later classes overwrite earlier ones
    return labels
