"""Model loading for inference: the registry's MappingNet (+ autoencoder) and the preset's networks."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from mm2latent_core.errors import ConfigError
from mm2latent.inference.editor import Mm2LatentGenerator
from mm2latent.inference.inputs import check_modality
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.model_loading import build_component, load_weights
from mm2latent.models.autoencoders import SpatialAutoencoder
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.mapping_net import MappingNet
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import get_preset
from mm2latent.training.autoencoders import load_autoencoder
from mm2latent.training.mapping import load_mapping_net
from mm2latent.training.pipeline import ae_name, mapping_name
from mm2latent.training.registry import ModelRecord, ModelRegistry

logger = logging.getLogger(__name__)
_TAG = re.compile(r"^(?P<name>.+)-v(?P<version>\d+)$")  # ModelRecord.tag, e.g. "mask-ae-v3"


def _record_for_tag(registry: ModelRegistry, tag: str | None, name: str) -> ModelRecord | None:
    """The record named by a `<name>-v<version>` tag, else the latest `name` (with a warning)."""
    match = _TAG.match(tag or "")
    if match and match["name"] == name:
        return registry.get(name, int(match["version"]))
    logger.warning("no usable embeddings version %r recorded; using the latest %s", tag, name)
    return registry.latest(name)


def load_registered(registry_url: str, modality: str, modalities: ModalityRegistry | None = None
                    ) -> tuple[MappingNet, SpatialAutoencoder | None, dict[str, str]]:
    """(MappingNet, its autoencoder or None for a vector modality, {name: tag}) from a model registry.

    Args:
        registry_url: directory holding registry.json (e.g. runs/tiny).
        modality: a condition of `modalities` ("mask", "sketch" or "flame" by default).
        modalities: the modality registry; None = default_registry().
    """
    modalities = modalities or default_registry()
    registry = ModelRegistry(registry_url)
    record = registry.latest(mapping_name(check_modality(modality, modalities)))
    if record is None:
        raise ConfigError(f"{registry.index_url}: no {mapping_name(modality)!r} model registered "
                          f"(known: {', '.join(registry.names()) or 'none'}). Fix: run `mm2latent "
                          f"train mapping --modality {modality} --out {registry_url}`.")
    tags = {record.name: record.tag}
    autoencoder = None
    if modality in modalities.maps:  # a vector condition (flame) has no autoencoder
        ae_record = _record_for_tag(registry, record.extra.get("embeddings_version"), ae_name(modality))
        if ae_record is None:
            raise ConfigError(f"{registry.index_url}: no {ae_name(modality)!r} registered. Fix: "
                              "run `mm2latent train autoencoders` first.")
        autoencoder = load_autoencoder(ae_record.checkpoint_url).requires_grad_(False)
        tags[ae_record.name] = ae_record.tag
    return load_mapping_net(record.checkpoint_url).requires_grad_(False), autoencoder, tags


def load_released(names: tuple[str, str], cache_dir: Path | None = None
                  ) -> tuple[MappingNet, SpatialAutoencoder, dict[str, str]]:
    """(MappingNet, autoencoder, {name: name}) of the authors' released files (weights registry).

    Args:
        names: (MappingNet, autoencoder) registry names, from PresetCfg.released_models.
        cache_dir: weights cache; None = the default.
    """
    mapping, autoencoder = (load_weights(n, cache_dir).requires_grad_(False) for n in names)
    return mapping, autoencoder, {n: n for n in names}


def load_inference(preset_name: str, registry_url: str, modality: str, device: str = "cpu",
                   cache_dir: Path | None = None,
                   modalities: ModalityRegistry | None = None) -> Mm2LatentGenerator:
    """Generator, FaRL, and the registry's MappingNet (+ autoencoder) for `modality`.

    Args:
        preset_name: "tiny" (seeded networks, not faces), "ffhq" (official weights) or
            "ffhq-official" (also the authors' released autoencoders and MappingNets).
        registry_url: model registry directory written by `mm2latent train` (e.g. runs/tiny);
            unused where the preset names the authors' models for `modality`.
        modality: a condition of `modalities` ("mask", "sketch" or "flame" by default).
        device: torch device string.
        cache_dir: weights cache; None = the default (MM2LATENT_CACHE or ~/.cache/mm2latent).
        modalities: the modality registry; None = default_registry().
    """
    preset = get_preset(preset_name)
    modalities = modalities or default_registry()
    released = preset.released_models(check_modality(modality, modalities))
    if released is not None:
        mapping, autoencoder, tags = load_released(released, cache_dir)
    else:
        mapping, autoencoder, tags = load_registered(registry_url, modality, modalities)
    generator = build_component(preset, "generator", lambda: Generator(preset.generator), cache_dir)
    farl = build_component(preset, "farl", lambda: ClipEmbedder(preset.farl), cache_dir)
    target = torch.device(device)
    for net in (generator, farl, mapping, autoencoder):
        if net is not None:
            net.to(target).eval().requires_grad_(False)
    logger.info("inference with %s on preset %s", ", ".join(tags.values()), preset.name)
    return Mm2LatentGenerator(preset, modality, generator, farl, mapping, autoencoder, target,
                              cache_dir, modalities)
