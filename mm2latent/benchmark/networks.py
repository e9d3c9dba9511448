"""The networks a benchmark runs: the evaluated MappingNet versions and the metric networks.

Metric networks load their registered weights (OpenAI CLIP ViT-B/32 and ViT-L/14@336, BiSeNet
or facer), or, on the `tiny` preset, are seeded random towers built the way presets build
seeded networks (parameters depend only on the preset's init_seed and the component name).
Their numbers then mean nothing; the report says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mm2latent.benchmark.config import MetricNetsCfg
from mm2latent.errors import ConfigError
from mm2latent.inference import Mm2LatentGenerator
from mm2latent.model_loading import build_component, load_weights
from mm2latent.models.clip_towers import ClipEmbedder, ClipTowerCfg, clip_config
from mm2latent.models.face_parser.base import FaceParser
from mm2latent.models.face_parser.bisenet import BiSeNet
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import PresetCfg
from mm2latent.seeding import derive_seed, seeded_init
from mm2latent.training.autoencoders import load_autoencoder
from mm2latent.training.mapping import load_mapping_net
from mm2latent.training.pipeline import ae_name, mapping_name
from mm2latent.training.registry import ModelRecord, ModelRegistry

MODALITY = "mask"  # the benchmark conditions on CelebAMask-HQ masks
_VERSION = re.compile(r"^(?:mapping-mask-)?v?(\d+)$")


@dataclass
class MetricNets:
    """The three metric networks, frozen in eval mode, and a stable id of each (cache keys)."""

    clip_score: ClipEmbedder
    cmmd: ClipEmbedder
    parser: FaceParser
    ids: dict[str, str]  # component -> weights name or "seeded:<preset>:<component>:<seed>"


def _load_or_seed(preset: PresetCfg, component: str, name: str | None,
                  make: Callable[[], nn.Module], cache_dir: Path | None) -> tuple[nn.Module, str]:
    if name is not None:
        return load_weights(name, cache_dir).eval().requires_grad_(False), name
    with seeded_init(derive_seed(preset.init_seed, component)):
        net = make()
    return net.eval().requires_grad_(False), f"seeded:{preset.name}:{component}:{preset.init_seed}"


def build_metric_nets(preset: PresetCfg, names: MetricNetsCfg, device: str,
                      cache_dir: Path | None = None,
                      seeded: tuple[ClipTowerCfg, ClipTowerCfg] | None = None) -> MetricNets:
    """CLIP-score tower, CMMD tower and face parser for `preset`.

    Args:
        preset: its init_seed seeds the networks that load no file; its bisenet config shapes
            a seeded parser.
        names: weights names; None entries are seeded.
        device: torch device.
        cache_dir: weights cache; None = the default.
        seeded: architectures of seeded (CLIP-score, CMMD) towers; None = the tiny tower.
    """
    score_cfg, cmmd_cfg = seeded or (clip_config("tiny"), clip_config("tiny"))
    built = {
        "clip_score": _load_or_seed(preset, "benchmark-clip-score", names.clip_score,
                                    lambda: ClipEmbedder(score_cfg), cache_dir),
        "cmmd": _load_or_seed(preset, "benchmark-cmmd", names.cmmd,
                              lambda: ClipEmbedder(cmmd_cfg), cache_dir),
        "parser": _load_or_seed(preset, "benchmark-parser", names.parser,
                                lambda: BiSeNet(preset.bisenet), cache_dir),
    }
    for key, kind in (("clip_score", ClipEmbedder), ("cmmd", ClipEmbedder), ("parser", FaceParser)):
        if not isinstance(built[key][0], kind):
            raise ConfigError(f"weights {built[key][1]!r} give a {type(built[key][0]).__name__}, "
                              f"but the {key} metric needs a {kind.__name__}.")
    nets = {k: net.to(device) for k, (net, _) in built.items()}
    return MetricNets(**nets, ids={k: ident for k, (_, ident) in built.items()})


def resolve_versions(registry_url: str, versions: tuple[str, ...], every: bool = False
                     ) -> list[ModelRecord]:
    """The mapping-mask records to evaluate (unique, in the given order).

    Args:
        registry_url: model registry directory.
        versions: "latest", "3", "v3" or "mapping-mask-v3" each.
        every: all registered versions (ablation), ignoring `versions`.
    """
    registry, name = ModelRegistry(registry_url), mapping_name(MODALITY)
    records = registry.records(name)
    if not records:
        raise ConfigError(f"{registry.index_url}: no {name!r} model registered (known: "
                          f"{', '.join(registry.names()) or 'none'}). Fix: run `mm2latent train "
                          f"mapping --modality mask` with --out pointing at this --models folder.")
    if every:
        return records
    chosen: list[ModelRecord] = []
    for spec in versions:
        match = _VERSION.match(spec.strip())
        if spec.strip() != "latest" and match is None:
            raise ConfigError(f"model version {spec!r} is not 'latest', 'N', 'vN' or "
                              f"'{name}-vN'.")
        record = records[-1] if match is None else registry.get(name, int(match[1]))
        if record.version not in {r.version for r in chosen}:
            chosen.append(record)
    return chosen


def _autoencoder_record(registry: ModelRegistry, record: ModelRecord) -> ModelRecord:
    tag = str(record.extra.get("embeddings_version") or "")
    name, _, version = tag.rpartition("-v")
    if name != ae_name(MODALITY) or not version.isdigit():
        raise ConfigError(f"{record.tag} records no mask autoencoder version ({tag!r}); "
                          "retrain it with `mm2latent train mapping --modality mask`.")
    return registry.get(name, int(version))


def load_models(preset: PresetCfg, registry_url: str, records: list[ModelRecord], device: str,
                cache_dir: Path | None = None) -> dict[str, Mm2LatentGenerator]:
    """{record tag: generator} sharing one StyleGAN2 and one FaRL between the versions."""
    registry = ModelRegistry(registry_url)
    generator = build_component(preset, "generator", lambda: Generator(preset.generator), cache_dir)
    farl = build_component(preset, "farl", lambda: ClipEmbedder(preset.farl), cache_dir)
    target = torch.device(device)
    generator.to(target), farl.to(target)
    models = {}
    for record in records:
        autoencoder = load_autoencoder(_autoencoder_record(registry, record).checkpoint_url)
        mapping = load_mapping_net(record.checkpoint_url)
        for net in (autoencoder, mapping):
            net.to(target).eval().requires_grad_(False)
        models[record.tag] = Mm2LatentGenerator(preset, MODALITY, generator, farl, mapping,
                                                autoencoder, target, cache_dir)
    return models
