"""The project's modalities. Adding one: write mm2latent/modalities/<name>.py with a SPEC, add a line here."""

from __future__ import annotations

from mm2latent.modalities import farl, flame, image, mask, sketch, w
from mm2latent_core.modalities.spec import ModalityRegistry


def default_registry() -> ModalityRegistry:
    """image, mask, sketch, w, flame, farl: this order fixes manifest columns (keep it)."""
    return ModalityRegistry((image.SPEC, mask.SPEC, sketch.SPEC, w.SPEC, flame.SPEC, farl.SPEC))
