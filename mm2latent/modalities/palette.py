"""CelebAMask-HQ classes (value k = class id) and the colours the dataset's tools paint them in."""

from __future__ import annotations

import numpy as np

from mm2latent_core.errors import ConfigError

CLASSES = ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear",
           "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
# The colour map of CelebAMask-HQ's own visualisation, in class-id order (all distinct).
COLOURS = ((0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204),
           (0, 255, 255), (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0),
           (255, 255, 0), (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204), (0, 51, 0),
           (255, 153, 51), (0, 204, 0))


def palette_json() -> list[dict]:
    """[{id, name, rgb}] for the page's palette."""
    return [{"id": k, "name": n, "rgb": list(c)} for k, (n, c) in enumerate(zip(CLASSES, COLOURS))]


def colours_to_ids(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class ids of an (H, W, 3) image painted in COLOURS; ConfigError naming others."""
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in COLOURS], np.int32)
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], packed), 0, len(keys) - 1)
    ids = order[pos]
    unknown = keys[ids] != packed
    if unknown.any():
        found = [tuple(int(v) for v in rgb[i, j]) for i, j in np.argwhere(unknown)[:3]]
        raise ConfigError(f"the colour mask has {int(unknown.sum())} pixel(s) in colours that are "
                          f"not CelebAMask-HQ class colours, e.g. {found}. Fix: paint with the "
                          "palette only (no anti-aliasing), or upload a label-id PNG (ids 0..18).")
    return ids.astype(np.uint8)
