"""The networks of an edit-dataset run: one generator, FaRL and e4e, one MappingNet per modality."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mm2latent import weights
from mm2latent.inference import Mm2LatentGenerator, load_inference, load_registered, load_released
from mm2latent.presets import PresetCfg
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.seeding import derive_seed
from mm2latent.synth.models import weight_digests
from mm2latent.training.registry import ModelRegistry
from storage.samples import read_bytes

@dataclass(frozen=True)
class EditModels:
    """Inference models sharing one generator and FaRL; `first` does e4e inversion for all."""

    by_modality: dict[str, Mm2LatentGenerator]

    @property
    def first(self) -> Mm2LatentGenerator:
        """The model whose e4e inverts photos (inversion does not depend on the modality)."""
        return next(iter(self.by_modality.values()))


def load_edit_models(preset_name: str, registry_url: str, modalities: list[str], device: str,
                     cache_dir: Path | None = None,
                     modality_registry: ModalityRegistry | None = None) -> EditModels:
    """One Mm2LatentGenerator per modality; the first one's generator and FaRL are shared.

    `modality_registry` says what the modalities are; None = default_registry().
    """
    first = load_inference(preset_name, registry_url, modalities[0], device, cache_dir,
                           modality_registry)
    models = {modalities[0]: first}
    for modality in modalities[1:]:
        mapping, autoencoder, _ = _load_models(first.preset, registry_url, modality, cache_dir,
                                               first.registry)
        for net in (mapping, autoencoder):
            if net is not None:
                net.to(first.device).eval()
        models[modality] = Mm2LatentGenerator(first.preset, modality, first.generator, first.farl,
                                              mapping, autoencoder, first.device, cache_dir,
                                              first.registry)
    return EditModels(models)


def _load_models(preset: PresetCfg, registry_url: str, modality: str, cache_dir: Path | None = None,
                 modality_registry: ModalityRegistry | None = None):
    """(MappingNet, autoencoder, {name: tag}): the authors' released files where the preset
    names them (as load_inference does), else the registry's latest."""
    released = preset.released_models(modality)
    if released is not None:
        return load_released(released, cache_dir)
    return load_registered(registry_url, modality, modality_registry)


def registered_versions(preset: PresetCfg, registry_url: str, modalities: list[str],
                        cache_dir: Path | None = None,
                        modality_registry: ModalityRegistry | None = None) -> dict[str, str]:
    """name -> tag (or released weights name) of every model the modalities use."""
    versions: dict[str, str] = {}
    for modality in modalities:
        versions.update(_load_models(preset, registry_url, modality, cache_dir, modality_registry)[2])
    return versions


def model_digests(registry_url: str, versions: dict[str, str], cache_dir: Path | None = None) -> dict[str, str]:
    """tag -> sha256 of each model file used: a registered checkpoint, or a released weights file."""
    registry = ModelRegistry(registry_url)
    digests = {}
    for name, tag in versions.items():
        if name == tag:  # the authors' released file, named in the weights registry
            digests[tag] = weights.verify(name, cache_dir, mode="stamp").found_sha256 or "unverified"
            continue
        record = registry.get(name, int(tag.rsplit("-v", 1)[1]))
        digests[tag] = hashlib.sha256(read_bytes(record.checkpoint_url, "checkpoint")).hexdigest()
    return digests


def network_digests(preset: PresetCfg, modalities: list[str], cache_dir: Path | None = None,
                    modality_registry: ModalityRegistry | None = None) -> dict[str, str]:
    """component -> sha256 of its weights file, or "seeded:<seed>", for every network an edit uses."""
    # generator, farl and the annotators that load a network (a modality without one adds none)
    digests = weight_digests(preset, [*modalities, "farl"], cache_dir, modality_registry)
    name = preset.weight_names().get("e4e")
    if name is None:
        digests["e4e"] = f"seeded:{derive_seed(preset.init_seed, 'e4e')}"
    else:
        digests["e4e"] = weights.verify(name, cache_dir, mode="stamp").found_sha256 or "unverified"
    return digests
