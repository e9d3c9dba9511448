"""Build the networks synth-data needs for a preset: seeded (tiny) or from official weights."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mm2latent import weights
from mm2latent.errors import ConfigError
from mm2latent.model_loading import build_component
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.deca import FlameEncoder
from mm2latent.models.face_parser.base import FaceParser
from mm2latent.models.face_parser.bisenet import BiSeNet
from mm2latent.models.sketch import SketchCfg
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import PresetCfg
from mm2latent.seeding import derive_seed

logger = logging.getLogger(__name__)


@dataclass
class SynthModels:
    """The generator and the annotators of one preset, in eval mode on one device."""

    generator: Generator
    parser: FaceParser | None       # None when masks are not requested
    sketch: SketchCfg | None        # None when sketches are not requested
    flame: FlameEncoder | None      # None when 3DMM codes are not requested
    farl: ClipEmbedder | None       # None when FaRL embeddings are not requested
    weight_digests: dict[str, str]  # component -> sha256 of its file, or "seeded:<seed>"
    device: torch.device


_COMPONENT_OF = {"mask": "parser", "flame": "deca", "farl": "farl"}


def components(modalities: Sequence[str]) -> list[str]:
    """Networks a run computing `modalities` needs, generator first."""
    return ["generator", *(_COMPONENT_OF[m] for m in modalities if m in _COMPONENT_OF)]


def vector_dims(preset: PresetCfg, modalities: Sequence[str]) -> dict[str, int]:
    """Width of each vector column a run stores: w always, flame and farl when requested."""
    dims = {"w": preset.generator.w_dim}
    if "flame" in modalities:
        dims["flame"] = preset.deca.flame159_dim
    if "farl" in modalities:
        dims["farl"] = preset.farl.embed_dim
    return dims


def check_weights_available(preset: PresetCfg, modalities: Sequence[str],
                            cache_dir: Path | None = None) -> dict[str, Path]:
    """Resolve every needed weights file before any work starts (MissingWeightsError if absent)."""
    names = preset.weight_names()
    return {c: weights.resolve(names[c], cache_dir) for c in components(modalities) if c in names}


def weight_digests(preset: PresetCfg, modalities: Sequence[str],
                   cache_dir: Path | None = None) -> dict[str, str]:
    """component -> sha256 of its weights file, or "seeded:<seed>" for seeded networks.

    These identify the networks a dataset was made with: a rerun with other weights into the
    same dataset is refused because its dataset.json differs here.
    """
    names = preset.weight_names()
    digests = {}
    for component in components(modalities):
        if component in names:
            result = weights.verify(names[component], cache_dir, mode="stamp")
            digests[component] = result.found_sha256 or result.expected_sha256 or "unverified"
        else:
            digests[component] = f"seeded:{derive_seed(preset.init_seed, component)}"
    return digests


def _check_widths(preset: PresetCfg, loaded: dict[str, object]) -> None:
    """ConfigError unless loaded networks have the widths the dataset schema takes from `preset`.

    Weights files bring their own architecture; the dataset's vector columns (and dataset.json)
    are sized from the preset's configs before any network is loaded, so they must agree.
    """
    widths = {"generator": ("w_dim", preset.generator.w_dim), "farl": ("embed_dim", preset.farl.embed_dim),
              "deca": ("flame159_dim", preset.deca.flame159_dim)}
    for component, net in loaded.items():
        if net is None or component not in widths:
            continue
        field, expected = widths[component]
        found = getattr(net.cfg, field)
        if found != expected:
            raise ConfigError(
                f"preset {preset.name!r}: the {component} weights have {field}={found} but the "
                f"preset's {component} config says {expected}. Fix: make the preset's config match "
                "the weights file, or register the right file.")


def build_synth_models(preset: PresetCfg, modalities: Sequence[str], device: str = "cpu",
                       cache_dir: Path | None = None) -> SynthModels:
    """Networks for a synth-data run of `preset` computing `modalities`.

    Args:
        preset: the resolved preset.
        modalities: subset of ("mask", "sketch", "flame", "farl").
        device: torch device string.
        cache_dir: weights cache; None = the default (MM2LATENT_CACHE or ~/.cache/mm2latent).
    """
    check_weights_available(preset, modalities, cache_dir)  # every missing file, before loading any
    generator = build_component(preset, "generator", lambda: Generator(preset.generator), cache_dir)
    parser = flame = farl = None
    if "mask" in modalities:
        parser = build_component(preset, "parser", lambda: BiSeNet(preset.bisenet), cache_dir)
    if "flame" in modalities:
        flame = build_component(preset, "deca", lambda: FlameEncoder(preset.deca), cache_dir)
    if "farl" in modalities:
        farl = build_component(preset, "farl", lambda: ClipEmbedder(preset.farl), cache_dir)
    _check_widths(preset, {"generator": generator, "farl": farl, "deca": flame})
    target = torch.device(device)
    for net in (generator, parser, flame, farl):
        if net is not None:
            net.to(target).eval().requires_grad_(False)
    return SynthModels(generator=generator, parser=parser,
                       sketch=preset.sketch if "sketch" in modalities else None,
                       flame=flame, farl=farl,
                       weight_digests=weight_digests(preset, modalities, cache_dir), device=target)
