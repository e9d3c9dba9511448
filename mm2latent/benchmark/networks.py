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
from mm2latent.benchmark.records import Switches
from mm2latent_core.errors import ConfigError
from mm2latent.inference import Mm2LatentGenerator, load_released
from mm2latent.model_loading import build_component, load_weights
from mm2latent.models.clip_towers import ClipEmbedder, ClipTowerCfg
from mm2latent.models.face_parser.base import FaceParser
from mm2latent.models.face_parser.bisenet import BiSeNet
from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import CLIP_PRESETS, PRESETS, PresetCfg
from mm2latent.seeding import derive_seed, seeded_init
from mm2latent.training.autoencoders import load_autoencoder
from mm2latent.training.config import TEXT_KINDS
from mm2latent.training.mapping import load_mapping_net
from mm2latent.training.pipeline import ae_name, mapping_name
from mm2latent.training.registry import ModelRecord, ModelRegistry

MODALITY = "mask"  # the benchmark conditions on CelebAMask-HQ masks
RELEASED = "released"  # the version spelling of the authors' models named by the preset
RELEASED_LABEL = "MM2Latent (authors' released models)"
_VERSION = re.compile(r"^(?:mapping-mask-)?v?(\d+)$")


@dataclass(frozen=True)
class MetricIds:
    """A stable id of each metric network (cache keys): its weights name, or
    "seeded:<preset>:<component>:<seed>" for a seeded one."""

    clip_score: str
    cmmd: str
    parser: str


@dataclass
class MetricNets:
    """The three metric networks, frozen in eval mode, and a stable id of each (cache keys)."""

    clip_score: ClipEmbedder
    cmmd: ClipEmbedder
    parser: FaceParser
    ids: MetricIds


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
    score_cfg, cmmd_cfg = seeded or (CLIP_PRESETS["tiny"], CLIP_PRESETS["tiny"])
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
    return MetricNets(**nets, ids=MetricIds(**{k: ident for k, (_, ident) in built.items()}))


@dataclass(frozen=True)
class EvaluatedModel:
    """One model of a run: a registered MappingNet version, or the authors' released files."""

    tag: str  # `model` column and chunks/<tag>/ folder: "mapping-mask-v3", or "released"
    label: str  # its row name in report.md
    switches: Switches  # Table 2 / 3 settings
    record: ModelRecord | None = None  # trained here; None for the released models
    released: tuple[str, str] | None = None  # (MappingNet, autoencoder) weights names


def text_kind(record: ModelRecord) -> str:
    """The record's text input (TEXT_KINDS); records from before `--text` existed are PTEG."""
    return str(record.extra.get("text") or "pteg")


def _registered(record: ModelRecord) -> EvaluatedModel:
    net, train = record.config.get("mapping_net", {}), record.config.get("train", {})
    switches = Switches(pteg=train.get("pteg"), use_batchnorm=net.get("use_batchnorm"),
                        dropout=net.get("dropout"), depth=net.get("depth"))
    # PTEG rows keep the label they always had, so reports stay comparable across runs.
    text = text_kind(record)
    if text == "mixed":
        text = f"mixed, caption share {record.extra.get('caption_share')}"
    suffix = "" if text == "pteg" else f" ({text})"
    return EvaluatedModel(record.tag, f"trained here: {record.tag}{suffix}", switches, record=record)


def _released(preset: PresetCfg) -> EvaluatedModel:
    names = preset.released_models(MODALITY)
    if names is None:
        having = [n for n, p in PRESETS.items() if p.released_models(MODALITY) is not None]
        raise ConfigError(f"model version {RELEASED!r}: preset {preset.name!r} names no released "
                          f"{MODALITY} MappingNet / autoencoder of the authors. Fix: pass --preset "
                          f"{' or '.join(having) or '<a preset naming them>'}, or list only "
                          "registered versions.")
    arch = MappingNetCfg()  # the architecture the authors' MappingNet files are read with
    switches = Switches(pteg=True,  # the paper trains its released models with PTEG
                        use_batchnorm=arch.use_batchnorm, dropout=arch.dropout, depth=arch.depth)
    return EvaluatedModel(RELEASED, RELEASED_LABEL, switches, released=names)


def resolve_models(preset: PresetCfg, registry_url: str, versions: tuple[str, ...],
                   every: bool = False) -> list[EvaluatedModel]:
    """The models to evaluate (unique, in the given order).

    Args:
        preset: names the authors' released models, for the version "released".
        registry_url: model registry directory; read only when a registered version is asked.
        versions: "released", "latest", "3", "v3" or "mapping-mask-v3" each.
        every: all registered versions (ablation) instead of the registered ones listed.
    """
    specs = [v.strip() for v in versions]
    models = [_released(preset)] if RELEASED in specs else []
    registered = tuple(v for v in specs if v != RELEASED)
    if every or registered:
        models += [_registered(r) for r in resolve_versions(registry_url, registered, every)]
    if specs and specs[0] != RELEASED:  # released first when listed first, else after the others
        models.sort(key=lambda m: m.tag == RELEASED)
    return models


def resolve_versions(registry_url: str, versions: tuple[str, ...], every: bool = False
                     ) -> list[ModelRecord]:
    """The mapping-mask records to evaluate (unique, in the given order).

    Args:
        registry_url: model registry directory.
        versions: "latest" (the latest version of each registered text input: pteg,
            captions, mixed, one row each), "3", "v3" or "mapping-mask-v3" each.
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
            raise ConfigError(f"model version {spec!r} is not {RELEASED!r}, 'latest', 'N', 'vN' "
                              f"or '{name}-vN'.")
        picked = (_latest_per_text_kind(records) if match is None
                  else [registry.get(name, int(match[1]))])
        chosen += [r for r in picked if r.version not in {c.version for c in chosen}]
    return chosen


def _latest_per_text_kind(records: list[ModelRecord]) -> list[ModelRecord]:
    """The latest record of each text input, PTEG first (records are in version order)."""
    latest = {text_kind(r): r for r in records}
    order = [*TEXT_KINDS, *sorted(set(latest) - set(TEXT_KINDS))]
    return [latest[kind] for kind in order if kind in latest]


def _autoencoder_record(registry: ModelRegistry, record: ModelRecord) -> ModelRecord:
    tag = str(record.extra.get("embeddings_version") or "")
    name, _, version = tag.rpartition("-v")
    if name != ae_name(MODALITY) or not version.isdigit():
        raise ConfigError(f"{record.tag} records no mask autoencoder version ({tag!r}); "
                          "retrain it with `mm2latent train mapping --modality mask`.")
    return registry.get(name, int(version))


def load_models(preset: PresetCfg, registry_url: str, models: list[EvaluatedModel], device: str,
                cache_dir: Path | None = None) -> dict[str, Mm2LatentGenerator]:
    """{model tag: generator} sharing one StyleGAN2 and one FaRL between the models."""
    registry = ModelRegistry(registry_url)
    generator = build_component(preset, "generator", lambda: Generator(preset.generator), cache_dir)
    farl = build_component(preset, "farl", lambda: ClipEmbedder(preset.farl), cache_dir)
    target = torch.device(device)
    generator.to(target), farl.to(target)
    loaded = {}
    for model in models:
        if model.released is not None:
            mapping, autoencoder, _ = load_released(model.released, cache_dir)
        else:
            assert model.record is not None  # an EvaluatedModel is registered or released
            autoencoder = load_autoencoder(_autoencoder_record(registry, model.record).checkpoint_url)
            mapping = load_mapping_net(model.record.checkpoint_url)
        for net in (autoencoder, mapping):
            net.to(target).eval().requires_grad_(False)
        loaded[model.tag] = Mm2LatentGenerator(preset, MODALITY, generator, farl, mapping,
                                               autoencoder, target, cache_dir)
    return loaded
