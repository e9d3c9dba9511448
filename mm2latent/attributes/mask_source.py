"""Image shares of the CelebAMask-HQ classes in each sample's stored face-parsing mask."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mm2latent.attributes.spec import AttributeBatch, AttributeColumn, AttributeSource
from mm2latent.models.face_parser.labels import CELEBAMASK_HQ_CLASSES, NUM_CLASSES

SHARE = "share of image pixels"
# Named attributes: attribute -> the classes whose shares add up to it.
NAMED: dict[str, tuple[str, ...]] = {
    "eyeglasses": ("eye_g",),
    "hat": ("hat",),
    "earrings": ("ear_r",),
    "necklace": ("neck_l",),
    "hair": ("hair",),
    "mouth_open": ("mouth",),  # CelebAMask-HQ "mouth" is the inner mouth: visible only when open
    # The face itself: skin and the parts on it (not hair, hat, neck, clothes or jewellery).
    "face": ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
             "mouth", "u_lip", "l_lip"),
}
_NAMED_ABOUT = {"mouth_open": "inner-mouth share (teeth/tongue visible: the mouth is open)",
                "face": "share of skin and facial parts (eyes, brows, nose, ears, mouth, lips, glasses)"}


def class_shares(masks: torch.Tensor) -> np.ndarray:
    """(B, 19) float32 share of each CelebAMask-HQ class in masks (B, H, W) of label ids."""
    flat = masks.reshape(masks.shape[0], -1).long()  # (B, H*W)
    counts = torch.zeros(flat.shape[0], NUM_CLASSES, dtype=torch.float64)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))  # (B, 19)
    return (counts / flat.shape[1]).numpy().astype(np.float32)


def compute(_context: Any, batch: AttributeBatch) -> dict[str, np.ndarray]:
    """Every class share, the named attributes and the non-background share."""
    shares = class_shares(batch.values["mask"])  # (B, 19)
    out = {f"share_{name}": shares[:, k] for k, name in enumerate(CELEBAMASK_HQ_CLASSES)}
    for attribute, classes in NAMED.items():
        out[attribute] = shares[:, [CELEBAMASK_HQ_CLASSES.index(c) for c in classes]].sum(axis=1)
    out["foreground"] = 1.0 - shares[:, 0]
    return out


COLUMNS = (
    *(AttributeColumn(f"share_{name}", SHARE, f"pixels labelled {name!r} / all pixels")
      for name in CELEBAMASK_HQ_CLASSES),
    *(AttributeColumn(a, SHARE, _NAMED_ABOUT.get(a, f"pixels labelled {' + '.join(c)} / all pixels"))
      for a, c in NAMED.items()),
    AttributeColumn("foreground", SHARE, "non-background pixels / all pixels (the parser's face "
                    "fraction; synth-data fails samples below 1%)"),
)

SOURCE = AttributeSource(
    name="mask", version="1", columns=COLUMNS, compute=compute, members=("mask",),
    description="image share of every CelebAMask-HQ class of the stored face-parsing mask")
