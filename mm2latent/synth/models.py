"""Build the networks synth-data needs for a preset: seeded (tiny) or from official weights."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mm2latent import weights
from mm2latent_core.errors import ConfigError
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry, ModalitySpec
from mm2latent.model_loading import build_component
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import PresetCfg
from mm2latent.seeding import derive_seed

logger = logging.getLogger(__name__)


@dataclass
class SynthModels:
    """The generator and the annotators of one preset, in eval mode on one device."""

    generator: Generator
    registry: ModalityRegistry       # every modality the dataset's manifest has columns for
    specs: tuple[ModalitySpec, ...]  # stored modalities, registry order
    annotators: dict[str, Any]       # modality -> what its spec built (absent when it builds none)
    weight_digests: dict[str, str]   # component -> sha256 of its file, or "seeded:<seed>"
    device: torch.device


def components(modalities: Sequence[str], registry: ModalityRegistry | None = None) -> list[str]:
    """Networks a run computing `modalities` needs, generator first."""
    stored = (registry or default_registry()).stored(modalities)
    return ["generator", *(s.component for s in stored if s.component is not None)]


def vector_dims(preset: PresetCfg, modalities: Sequence[str],
                registry: ModalityRegistry | None = None) -> dict[str, int]:
    """Width of each vector column a run stores (w always; others when requested)."""
    return (registry or default_registry()).vector_dims(preset, modalities)


def check_weights_available(preset: PresetCfg, modalities: Sequence[str], cache_dir: Path | None = None,
                            registry: ModalityRegistry | None = None) -> dict[str, Path]:
    """Resolve every needed weights file before any work starts (MissingWeightsError if absent)."""
    names = preset.weight_names()
    return {c: weights.resolve(names[c], cache_dir) for c in components(modalities, registry) if c in names}


def weight_digests(preset: PresetCfg, modalities: Sequence[str], cache_dir: Path | None = None,
                   registry: ModalityRegistry | None = None) -> dict[str, str]:
    """component -> sha256 of its weights file, or "seeded:<seed>" for seeded networks.

    These identify the networks a dataset was made with: a rerun with other weights into the
    same dataset is refused because its dataset.json differs here.
    """
    names = preset.weight_names()
    digests = {}
    for component in components(modalities, registry):
        if component in names:
            result = weights.verify(names[component], cache_dir, mode="stamp")
            digests[component] = result.found_sha256 or result.expected_sha256 or "unverified"
        else:
            digests[component] = f"seeded:{derive_seed(preset.init_seed, component)}"
    return digests


def _check_widths(preset: PresetCfg, generator: Generator, specs: Sequence[ModalitySpec],
                  annotators: dict[str, Any]) -> None:
    """ConfigError unless loaded networks have the widths the dataset schema takes from `preset`.

    Weights files bring their own architecture; the dataset's vector columns (and dataset.json)
    are sized from the preset's configs before any network is loaded, so they must agree.
    """
    checks = [("generator", "w_dim", generator.cfg.w_dim, preset.generator.w_dim)]
    checks += [(s.component or s.name, f"{s.name}_width", s.annotator_width(annotators[s.name]), s.vector_dim(preset))
               for s in specs if s.annotator_width is not None and s.vector_dim is not None]
    for component, what, found, expected in checks:
        if found != expected:
            raise ConfigError(
                f"preset {preset.name!r}: the {component} weights have {what}={found} but the "
                f"preset's {component} config says {expected}. Fix: make the preset's config match "
                "the weights file, or register the right file.")


def build_synth_models(preset: PresetCfg, modalities: Sequence[str], device: str = "cpu",
                       cache_dir: Path | None = None,
                       registry: ModalityRegistry | None = None) -> SynthModels:
    """Networks for a synth-data run of `preset` computing `modalities`.

    Args:
        preset: the resolved preset.
        modalities: selectable modalities of `registry` to compute.
        device: torch device string.
        cache_dir: weights cache; None = the default (MM2LATENT_CACHE or ~/.cache/mm2latent).
        registry: the modalities; None = default_registry().
    """
    registry = registry or default_registry()
    check_weights_available(preset, modalities, cache_dir, registry)  # every missing file first
    generator = build_component(preset, "generator", lambda: Generator(preset.generator), cache_dir)
    specs = registry.stored(modalities)
    annotators = {s.name: s.build(preset, cache_dir) for s in specs if s.build is not None}
    _check_widths(preset, generator, specs, annotators)
    target = torch.device(device)
    for net in (generator, *annotators.values()):
        if isinstance(net, torch.nn.Module):
            net.to(target).eval().requires_grad_(False)
    return SynthModels(generator=generator, registry=registry, specs=specs, annotators=annotators,
                       weight_digests=weight_digests(preset, modalities, cache_dir, registry),
                       device=target)
