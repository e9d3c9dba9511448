"""CelebA-Dialog `captions_hq.json`: {"<k>.jpg": {"overall_caption", "attribute_wise_captions"}}."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from mm2latent_core.errors import DatasetError

OVERALL = "overall_caption"
ATTRIBUTES = ("Bangs", "Eyeglasses", "No_Beard", "Smiling", "Young")  # attribute_wise_captions keys
CAPTION_FIELDS = (OVERALL, *ATTRIBUTES)
_KEY = re.compile(r"^(\d+)\.jpg$")


def check_caption_field(field: str) -> str:
    """`field` if it names a caption of captions_hq.json, else DatasetError listing them."""
    if field not in CAPTION_FIELDS:
        raise DatasetError(f"caption field {field!r} is not in CelebA-Dialog; choose one of "
                           f"{', '.join(CAPTION_FIELDS)}.")
    return field


def _caption(entry: object, field: str) -> str | None:
    if not isinstance(entry, Mapping):
        return None
    value = entry.get(field) if field == OVERALL else \
        (entry.get("attribute_wise_captions") or {}).get(field)
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_captions(raw: bytes, field: str, source: str = "captions_hq.json") -> dict[int, str]:
    """{image id: caption} of one field; images without that caption are left out.

    Args:
        raw: the bytes of captions_hq.json.
        field: "overall_caption" or an attribute name (see CAPTION_FIELDS).
        source: the file's URL, for messages.
    """
    check_caption_field(field)
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise DatasetError(f"{source}: not JSON ({e}). Fix: point --captions at CelebA-Dialog's "
                           "captions_hq.json.") from e
    if not isinstance(doc, Mapping):
        raise DatasetError(f"{source}: expected an object keyed by '<id>.jpg', got "
                           f"{type(doc).__name__}.")
    captions = {}
    for key, entry in doc.items():
        match = _KEY.match(str(key))
        text = _caption(entry, field)
        if match and text is not None:
            captions[int(match[1])] = text
    return captions
