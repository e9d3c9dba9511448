"""Every named preset: the system presets (PRESETS) and the component tables they are built from.

`tiny` builds every network at small size from a seed (no files, seconds on 2 CPU cores; its
images are not faces). `ffhq` is the paper's setup and loads the official checkpoints from the
weights registry (mm2latent/weights.py). `ffhq-official` is `ffhq` with the authors' released
autoencoders and MappingNets (and FaRL ep16, which their notebook encodes captions with), so
their models can be run and benchmarked next to models trained here.

Presets are frozen `*Cfg` dataclass instances in one dict per kind; the model modules define
the classes, this module names their instances. Overrides go through `dataclasses.replace`
via `get_preset(name, **overrides)` or `component_preset(TABLE, name, **overrides)`; an
unknown name or field is a ConfigError listing the valid ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from mm2latent.config_utils import resolve_preset
from mm2latent_core.dims import NUM_MASK_CLASSES
from mm2latent.models.autoencoders import OFFICIAL_MASK_CFG, OFFICIAL_SKETCH_CFG, AutoencoderCfg
from mm2latent.models.clip_tower_cfg import ClipTowerCfg
from mm2latent.models.deca import DecaCfg
from mm2latent.models.e4e import E4ECfg
from mm2latent.models.face_parser.bisenet import BiSeNetCfg
from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.models.sketch import SketchCfg
from mm2latent.models.stylegan2.generator import GeneratorCfg

CfgT = TypeVar("CfgT")

GENERATOR_PRESETS: dict[str, GeneratorCfg] = {
    "ffhq1024": GeneratorCfg(conv_clamp=256.0),  # NVIDIA ffhq.pkl (stylegan2-ada-pytorch)
    "tiny": GeneratorCfg(
        z_dim=64, w_dim=64, img_resolution=64, mapping_layers=2, channel_base=1024, channel_max=64
    ),
}

CLIP_PRESETS: dict[str, ClipTowerCfg] = {
    # FaRL-Base-Patch16 (ep16 / ep64) has exactly CLIP ViT-B/16's architecture.
    "farl-b16": ClipTowerCfg(),
    # The benchmark's CLIP score and CMMD towers (seeded stand-ins in benchmarks/benchmark_flow).
    "clip-vit-b32": ClipTowerCfg(patch_size=32),
    "clip-vit-l14-336": ClipTowerCfg(embed_dim=768, image_size=336, patch_size=14,
                                     vision_width=1024, vision_layers=24, vision_heads=16,
                                     text_width=768, text_heads=12),
    # Test/CI size. Keeps embed_dim 512 (datasets store 512-d embeddings), the real tokenizer
    # (vocab 49408, context 77) and heads = width // 64, so OpenAI-style shape inference gives
    # back this exact config. ~7.6 M parameters, 6.3 M of them the token embedding.
    "tiny": ClipTowerCfg(image_size=64, patch_size=16, vision_width=128, vision_layers=2,
                         vision_heads=2, text_width=128, text_layers=2, text_heads=2),
}

BISENET_PRESETS: dict[str, BiSeNetCfg] = {
    "official": BiSeNetCfg(),
    "tiny": BiSeNetCfg(input_size=64, base_width=8),
}

SKETCH_PRESETS: dict[str, SketchCfg] = {"official": SketchCfg(), "tiny": SketchCfg(resolution=64)}

DECA_PRESETS: dict[str, DecaCfg] = {
    "official": DecaCfg(),
    # Same block structure and key names, 1/8 of the widths; ~0.4 M parameters.
    "tiny": DecaCfg(base_width=8, regressor_width=64),
}

E4E_PRESETS: dict[str, E4ECfg] = {
    "ffhq1024": E4ECfg(),
    # 1/4 widths, 64-channel style convs and a 64 px input (~1/60 of the multiply-adds): same
    # key names except that each style block has 2 fewer convs (its map is 4x smaller).
    "tiny": E4ECfg(stylegan_size=256, w_dim=64, style_width=64, base_width=16, input_size=64),
}

AUTOENCODER_PRESETS: dict[str, AutoencoderCfg] = {
    "mask": AutoencoderCfg(),
    "sketch": AutoencoderCfg(kind="sketch", in_channels=1, stem=True, batchnorm=True),
    # The authors' released networks and inputs (Open-Debin/MM2Latent at 1d381a2).
    "mask_official": OFFICIAL_MASK_CFG,
    "sketch_official": OFFICIAL_SKETCH_CFG,
    "tiny_mask": AutoencoderCfg(resolution=64, widths=(8, 16, 8)),
    "tiny_sketch": AutoencoderCfg(
        kind="sketch", resolution=64, in_channels=1, widths=(8, 16, 8), stem=True, batchnorm=True
    ),
}


def component_preset(table: Mapping[str, CfgT], name: str, **overrides: object) -> CfgT:
    """Entry `name` of a component table (e.g. CLIP_PRESETS) with fields replaced.

    Args:
        table: one of this module's *_PRESETS dicts.
        name: a key of `table`; an unknown one is a ConfigError listing the keys.
        **overrides: fields of the entry's *Cfg to replace.
    """
    return resolve_preset(table, name, overrides)


@dataclass(frozen=True)
class PresetCfg:
    """A complete system setup: architectures plus the registry name of each weights file."""

    name: str                      # preset key
    init_seed: int                 # seed of every network built without a weights file
    store_size: int                # side of stored images, masks and sketches, pixels
    generator: GeneratorCfg
    farl: ClipTowerCfg
    bisenet: BiSeNetCfg            # parser architecture when seeded (a weights file brings its own)
    sketch: SketchCfg
    deca: DecaCfg
    e4e: E4ECfg
    mask_ae: AutoencoderCfg
    sketch_ae: AutoencoderCfg
    mapping: MappingNetCfg
    # Registry names (mm2latent.weights) per component; None = seeded random init (tiny).
    generator_weights: str | None = None
    farl_weights: str | None = None
    parser_weights: str | None = None
    deca_weights: str | None = None
    e4e_weights: str | None = None
    # The authors' released models (ffhq-official); None = use models trained here.
    mask_ae_weights: str | None = None
    sketch_ae_weights: str | None = None
    mapping_mask_weights: str | None = None
    mapping_sketch_weights: str | None = None

    @property
    def makes_faces(self) -> bool:
        """True when the generator comes from trained weights; seeded images are not faces."""
        return self.generator_weights is not None

    def weight_names(self) -> dict[str, str]:
        """component -> registry name, for the components that load a file."""
        fields = ("generator", "farl", "parser", "deca", "e4e", "mask_ae", "sketch_ae",
                  "mapping_mask", "mapping_sketch")
        return {f: getattr(self, f"{f}_weights") for f in fields
                if getattr(self, f"{f}_weights") is not None}

    def released_models(self, modality: str) -> tuple[str, str] | None:
        """(MappingNet, autoencoder) registry names of the authors' models for `modality`.

        None when the preset names none for it (then models trained here are used).
        """
        pairs = {"mask": (self.mapping_mask_weights, self.mask_ae_weights),
                 "sketch": (self.mapping_sketch_weights, self.sketch_ae_weights)}
        mapping, autoencoder = pairs.get(modality, (None, None))
        if mapping is None or autoencoder is None:
            return None
        return mapping, autoencoder


_TINY_GENERATOR = dataclasses.replace(
    # 512-d z and w as in FFHQ so every dataset column has the paper's width; 64 px, 64 channels.
    GENERATOR_PRESETS["tiny"], z_dim=512, w_dim=512, mapping_layers=8)

_FFHQ = PresetCfg(
    name="ffhq", init_seed=1234, store_size=512,
    generator=GENERATOR_PRESETS["ffhq1024"],
    farl=CLIP_PRESETS["farl-b16"],
    bisenet=BISENET_PRESETS["official"],
    sketch=SKETCH_PRESETS["official"],
    deca=DECA_PRESETS["official"],
    e4e=E4E_PRESETS["ffhq1024"],
    mask_ae=AUTOENCODER_PRESETS["mask"],
    sketch_ae=AUTOENCODER_PRESETS["sketch"],
    mapping=MappingNetCfg(),
    generator_weights="stylegan2.ffhq1024-nvidia",
    farl_weights="farl.ep64",
    parser_weights="facer.farl-celebm-448",  # or "bisenet.celebamask-79999"
    deca_weights="deca.model",
    e4e_weights="e4e.ffhq-encode",
)

_FFHQ_OFFICIAL = dataclasses.replace(
    _FFHQ, name="ffhq-official",
    # The authors' notebook encodes captions with FaRL ep16 (lib/models_loader 'farl_ep16').
    farl_weights="farl.ep16",
    mask_ae=AUTOENCODER_PRESETS["mask_official"],
    sketch_ae=AUTOENCODER_PRESETS["sketch_official"],
    mask_ae_weights="mm2latent.mask-ae-official",
    sketch_ae_weights="mm2latent.sketch-ae-official",
    mapping_mask_weights="mm2latent.mapping-mask-official",
    mapping_sketch_weights="mm2latent.mapping-sketch-official",
)

PRESETS: dict[str, PresetCfg] = {
    "tiny": PresetCfg(
        name="tiny", init_seed=1234, store_size=64,
        generator=_TINY_GENERATOR,
        farl=CLIP_PRESETS["tiny"],
        bisenet=BISENET_PRESETS["tiny"],
        sketch=SKETCH_PRESETS["tiny"],
        deca=DECA_PRESETS["tiny"],
        e4e=component_preset(E4E_PRESETS, "tiny", w_dim=512, stylegan_size=64),
        mask_ae=AUTOENCODER_PRESETS["tiny_mask"],
        sketch_ae=AUTOENCODER_PRESETS["tiny_sketch"],
        mapping=MappingNetCfg(hidden_dim=256),
    ),
    "ffhq": _FFHQ,
    "ffhq-official": _FFHQ_OFFICIAL,
}


def map_autoencoder(preset: PresetCfg, kind: str, in_channels: int = 1,
                    num_classes: int = NUM_MASK_CLASSES) -> AutoencoderCfg:
    """The autoencoder of a map modality without a table entry, at `preset`'s size.

    It takes the resolution, widths and bottleneck of the preset's mask autoencoder (no stem,
    no BatchNorm); the modality gives what its MapInput.to_input makes: `in_channels`, and
    `num_classes` when it feeds one-hot classes. A MapInput.autoencoder calls this.

    Args:
        preset: the preset whose autoencoder size to use.
        kind: the modality's name.
        in_channels: channels of the modality's network input.
        num_classes: classes of a categorical map (ids 0..num_classes-1); unused otherwise.
    """
    base = preset.mask_ae
    return AutoencoderCfg(kind=kind, resolution=base.resolution, in_channels=in_channels,
                          num_classes=num_classes, widths=base.widths,
                          bottleneck_dim=base.bottleneck_dim, activation=base.activation,
                          lrelu_slope=base.lrelu_slope)


def get_preset(name: str, **overrides: object) -> PresetCfg:
    """The named preset with fields replaced by `overrides`.

    Args:
        name: a key of PRESETS.
        **overrides: PresetCfg fields to replace (e.g. parser_weights="bisenet.celebamask-79999").
    """
    return resolve_preset(PRESETS, name, overrides)
