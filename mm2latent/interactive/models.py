"""One copy of the networks for a long-running app: generator, FaRL and e4e shared by every modality."""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mm2latent_core.errors import ConfigError
from mm2latent.inference import Mm2LatentGenerator, load_registered, load_released
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.model_loading import build_component
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import PresetCfg, get_preset

logger = logging.getLogger(__name__)

@dataclass
class ModelSet:
    """Per modality an Mm2LatentGenerator; all share one generator and one FaRL.

    Edits invert with `editor` only, so one e4e is ever loaded.
    """

    preset: PresetCfg
    models: dict[str, Mm2LatentGenerator]      # modality -> its MappingNet (+ autoencoder)
    tags: dict[str, dict[str, str]]            # modality -> {model name: registry tag}
    versions: dict[str, str] = field(default_factory=dict)  # package -> version
    registry: ModalityRegistry = field(default_factory=default_registry)  # what the modalities are

    @property
    def editor(self) -> Mm2LatentGenerator:
        """The model text edits use (the registry's first loaded condition: mask, as `mm2latent
        edit`), also the one that inverts."""
        return next(iter(self.models.values()))

    @property
    def paintable(self) -> tuple[str, ...]:
        """The map modalities: the conditions the page can paint or upload (when loaded)."""
        return self.registry.maps

    def model(self, modality: str) -> Mm2LatentGenerator:
        """The modality's model; ConfigError naming the loaded ones."""
        if modality not in self.models:
            raise ConfigError(f"no {modality} MappingNet is loaded (loaded: {', '.join(self.models)}). "
                              f"Fix: train one (`mm2latent train mapping --modality {modality}`) and restart.")
        return self.models[modality]


def _versions() -> dict[str, str]:
    names = ("mm2latent", "torch")
    return {n: importlib.metadata.version(n) for n in names}


def _mapping(preset: PresetCfg, registry_url: str, modality: str, cache_dir: Path | None,
             modalities: ModalityRegistry):
    released = preset.released_models(modality)
    if released is not None:
        return load_released(released, cache_dir)
    return load_registered(registry_url, modality, modalities)


def load_model_set(preset_name: str, registry_url: str, device: str = "cpu",
                   cache_dir: Path | None = None,
                   modalities: ModalityRegistry | None = None) -> ModelSet:
    """Every modality whose MappingNet is registered (or released), over one generator and FaRL.

    Args:
        preset_name: "tiny", "ffhq" or "ffhq-official".
        registry_url: the model registry of `mm2latent train` (e.g. runs/tiny/registry).
        device: torch device string.
        cache_dir: weights cache; None = the default.
        modalities: the modality registry; None = default_registry().
    """
    preset, target = get_preset(preset_name), torch.device(device)
    modalities = modalities or default_registry()
    nets, problems = {}, []
    for modality in modalities.conditions:
        try:
            nets[modality] = _mapping(preset, registry_url, modality, cache_dir, modalities)
        except ConfigError as e:  # a modality without a trained model is simply not offered
            logger.warning("not offering %s: %s", modality, e)
            problems.append(str(e))
    if not nets:
        raise ConfigError(f"no MappingNet could be loaded (tried {', '.join(modalities.conditions)}); the first "
                          f"problem: {problems[0]}")
    generator = build_component(preset, "generator", lambda: Generator(preset.generator), cache_dir)
    farl = build_component(preset, "farl", lambda: ClipEmbedder(preset.farl), cache_dir)
    models, tags = {}, {}
    for modality, (mapping, autoencoder, tag) in nets.items():
        for net in (generator, farl, mapping, autoencoder):
            if net is not None:
                net.to(target).eval().requires_grad_(False)
        models[modality] = Mm2LatentGenerator(preset, modality, generator, farl, mapping,
                                              autoencoder, target, cache_dir, modalities)
        tags[modality] = tag
    return ModelSet(preset, models, tags, _versions(), modalities)
