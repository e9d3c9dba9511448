"""Inference models built from seeded, untrained networks (no training, no registry): fast
fixtures for code that only needs the networks' shapes and determinism."""

from __future__ import annotations

import torch

from mm2latent.inference import Mm2LatentGenerator
from mm2latent.models.autoencoders import SpatialAutoencoder
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.mapping_net import MappingNet
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import get_preset
from mm2latent.seeding import derive_seed, seeded_init
from mm2latent.training.mapping import mapping_net_cfg

PRESET = get_preset("tiny")


def seeded(component: str, make):
    """`make()` under the preset's seeded init for `component`, in eval mode."""
    with seeded_init(derive_seed(PRESET.init_seed, component)):
        return make().eval().requires_grad_(False)


def seeded_model(modality: str) -> Mm2LatentGenerator:
    """A tiny Mm2LatentGenerator whose MappingNet and autoencoder are seeded, not trained."""
    autoencoder = None
    if modality != "flame":
        ae_cfg = PRESET.mask_ae if modality == "mask" else PRESET.sketch_ae
        autoencoder = seeded(f"{modality}-ae", lambda: SpatialAutoencoder(ae_cfg))
    mapping = seeded(f"mapping-{modality}",
                     lambda: MappingNet(mapping_net_cfg(PRESET.mapping, modality)))
    return Mm2LatentGenerator(PRESET, modality, seeded("generator", lambda: Generator(PRESET.generator)),
                              seeded("farl", lambda: ClipEmbedder(PRESET.farl)), mapping,
                              autoencoder, torch.device("cpu"))
