"""Validation of inference inputs: the modality of a condition and its raw arrays.

Captions, image batches and betas are checked in mm2latent/batch_inputs.py (editing uses them too).
"""

from __future__ import annotations

import torch

from mm2latent_core.errors import ConfigError
from mm2latent_core.modalities.network_input import Spatial
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry

def check_modality(modality: str, registry: ModalityRegistry | None = None) -> str:
    """`modality` if it can condition a MappingNet, else ConfigError listing the registry's conditions."""
    registry = registry or default_registry()
    if modality not in registry.conditions:
        raise ConfigError(f"modality={modality!r} is not valid; choose one of "
                          f"{', '.join(registry.conditions)}.")
    return modality


def check_condition(modality: str, raw: Spatial, registry: ModalityRegistry | None = None
                    ) -> torch.Tensor:
    """A raw condition checked by its modality's network input: (B, H, W) maps or (B, D) vectors."""
    return (registry or default_registry()).condition(check_modality(modality, registry)).check(raw)
