"""Contact sheet of an edited dataset: per photo one row, original | every edit at every beta."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from mm2latent.edit_dataset.spec import EditSpec
from mm2latent_core.errors import DatasetError
from storage.samples import read_sample_members

THUMB = 96  # thumbnail side, px


def _thumb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(image.convert("RGB"))
    return cv2.resize(rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def contact_sheet(dataset_url: str, spec: EditSpec, indices: list[int]) -> np.ndarray:
    """(rows * 96, columns * 96, 3) uint8 sheet of the given samples (failed ones are skipped)."""
    rows = []
    for index in indices:
        try:
            members = read_sample_members(dataset_url, index)
        except DatasetError:  # a failed sample has no members; the sheet shows the others
            continue
        tiles = [members["png"]] + [members[f"{e.name}.{k}.png"] for e in spec.edits
                                    for k in range(len(e.edit.betas))]
        rows.append(np.concatenate([_thumb(t) for t in tiles], axis=1))  # (96, C * 96, 3)
    return np.concatenate(rows, axis=0) if rows else np.zeros((THUMB, THUMB, 3), np.uint8)
