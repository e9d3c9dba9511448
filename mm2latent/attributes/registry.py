"""The project's attribute sources. Adding one: write mm2latent/attributes/<name>_source.py with a
SOURCE, add it here."""

from __future__ import annotations

from mm2latent.attributes import deca_source, farl_source, mask_source
from mm2latent.attributes.spec import AttributeRegistry


def default_attribute_registry() -> AttributeRegistry:
    """mask, deca, farl."""
    return AttributeRegistry((mask_source.SOURCE, deca_source.SOURCE, farl_source.SOURCE))
