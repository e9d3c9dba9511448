"""Face-parsing label sets and the tables that map every parser's output to CelebAMask-HQ order.

Every mask this project stores uses the CelebAMask-HQ order (value k = `CELEBAMASK_HQ_CLASSES[k]`).
Parsers emit their own orders; the look-up tables below are built from NAME lists, so a table
can only be wrong if a name list is, and each name list is checked against its upstream source:

* BiSeNet (zllrunning/face-parsing.PyTorch `prepropess_data.py`): the training masks were built
  from the CelebAMask-HQ annotation files in the order skin, l_brow, r_brow, l_eye, r_eye,
  eye_g, l_ear, r_ear, ear_r, nose, mouth, u_lip, l_lip, neck, neck_l, cloth, hair, hat
  (value = index + 1), so its names ARE CelebAMask-HQ file names and map one to one.
* facer `farl/celebm/448` (FacePerceiver/facer `face_parsing/farl.py`) names its 19 outputs
  background, neck, face, cloth, rr, lr, rb, lb, re, le, nose, imouth, llip, ulip, hair, eyeg, hat,
  earr, neck_l. The model was trained by FaRL (FacePerceiver/FaRL `datasets/celebamask_hq.py`),
  which builds label k from the CelebAMask-HQ file list neck, skin, cloth, l_ear, r_ear, l_brow,
  r_brow, l_eye, r_eye, nose, mouth, l_lip, u_lip, hair, eye_g, hat, ear_r, neck_l. So facer's
  `rr` (value 4) was trained on CelebAMask-HQ `l_ear`, `rb` on `l_brow`, `re` on `l_eye`, and
  `lr`/`lb`/`le` on the `r_` files. The swap implies FaRL names sides from the SUBJECT's point
  of view and reads CelebAMask-HQ's `l_` files as the image-left part (the subject's right); we
  have not checked that on annotated images here. We map by training provenance (`rr` ->
  `l_ear`), which is right whichever convention holds, so our masks keep CelebAMask-HQ's own
  meaning of `l_*` (image-left, per FaRL's reading).
  `face` -> skin, `imouth` -> mouth (inner mouth), `eyeg` -> eye_g, `earr` -> ear_r (earring).

Note one semantic difference that no table can fix: FaRL merged the annotation files in its own
order (later files overwrite earlier ones: eye_g over the eyes, hat/ear_r/neck_l last, skin over
neck), whereas the CelebAMask-HQ merge order puts neck and cloth last. Where parts overlap the two
parsers were taught different winners.
"""

from __future__ import annotations

import numpy as np

from mm2latent_core.dims import NUM_MASK_CLASSES

# CelebAMask-HQ order; value k of a mask is CELEBAMASK_HQ_CLASSES[k].
CELEBAMASK_HQ_CLASSES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear",
    "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
NUM_CLASSES = NUM_MASK_CLASSES
assert len(CELEBAMASK_HQ_CLASSES) == NUM_CLASSES  # the class table defines the label ids

# face-parsing.PyTorch (`79999_iter.pth`) output order; names are CelebAMask-HQ file names.
BISENET_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
    "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)

# facer `farl/celebm/448` output order, spelled as facer spells it.
FACER_CELEBM_CLASSES: tuple[str, ...] = (
    "background", "neck", "face", "cloth", "rr", "lr", "rb", "lb", "re", "le", "nose", "imouth",
    "llip", "ulip", "hair", "eyeg", "hat", "earr", "neck_l",
)

# facer name -> CelebAMask-HQ name, by the annotation file each facer label was trained on
# (FaRL datasets/celebamask_hq.py); sides follow the files, see the module docstring.
FACER_TO_CELEBAMASK_NAME: dict[str, str] = {
    "background": "background", "neck": "neck", "face": "skin", "cloth": "cloth",
    "rr": "l_ear", "lr": "r_ear", "rb": "l_brow", "lb": "r_brow", "re": "l_eye", "le": "r_eye",
    "nose": "nose", "imouth": "mouth", "llip": "l_lip", "ulip": "u_lip", "hair": "hair",
    "eyeg": "eye_g", "hat": "hat", "earr": "ear_r", "neck_l": "neck_l",
}

# RGB colour per CelebAMask-HQ class for contact sheets; symmetric parts share a hue, the
# image-left part (l_*) is the darker one so that left/right swaps stay visible.
PALETTE_BY_NAME: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0), "skin": (255, 204, 153), "nose": (255, 128, 0),
    "eye_g": (160, 160, 160), "l_eye": (0, 90, 200), "r_eye": (80, 180, 255),
    "l_brow": (120, 60, 20), "r_brow": (190, 120, 60), "l_ear": (200, 160, 0),
    "r_ear": (255, 230, 90), "mouth": (255, 60, 200), "u_lip": (220, 0, 60),
    "l_lip": (130, 0, 40), "hair": (90, 40, 140), "hat": (0, 140, 140),
    "ear_r": (255, 255, 255), "neck_l": (0, 200, 90), "neck": (200, 120, 120),
    "cloth": (40, 90, 40),
}


def build_lut(source_names: tuple[str, ...], rename: dict[str, str] | None = None) -> np.ndarray:
    """A read-only uint8 table: `lut[source_label]` is the CelebAMask-HQ value of that class.

    Args:
        source_names: the source parser's class names, in its output order.
        rename: source name -> CelebAMask-HQ name; None when the names already are CelebAMask-HQ's.
    """
    rename = rename or {}
    targets = [rename.get(name, name) for name in source_names]
    unknown = [t for t in targets if t not in CELEBAMASK_HQ_CLASSES]
    if unknown:
        raise ValueError(f"names {unknown} are not CelebAMask-HQ classes; "
                         f"valid: {', '.join(CELEBAMASK_HQ_CLASSES)}")
    if len(set(targets)) != len(targets):
        raise ValueError(f"two source classes map to the same target: {targets}")
    lut = np.array([CELEBAMASK_HQ_CLASSES.index(t) for t in targets], dtype=np.uint8)
    lut.setflags(write=False)
    return lut


BISENET_TO_CELEBAMASK_LUT = build_lut(BISENET_CLASSES)
FACER_CELEBM_TO_CELEBAMASK_LUT = build_lut(FACER_CELEBM_CLASSES, FACER_TO_CELEBAMASK_NAME)
PALETTE = np.array([PALETTE_BY_NAME[n] for n in CELEBAMASK_HQ_CLASSES], dtype=np.uint8)  # (19, 3)
PALETTE.setflags(write=False)


def colorize(labels: np.ndarray) -> np.ndarray:
    """RGB uint8 picture (..., H, W, 3) of CelebAMask-HQ label maps (..., H, W)."""
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise ValueError(f"label value {int(labels.max())} is not a CelebAMask-HQ class "
                         f"(expected 0..{NUM_CLASSES - 1})")
    return PALETTE[labels.astype(np.intp)]
