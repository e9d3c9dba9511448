"""Named presets: every component's config, and where its weights come from.

`tiny` builds every network at small size from a seed (no files, seconds on 2 CPU cores; its
images are not faces). `ffhq` is the paper's setup and loads the official checkpoints from the
weights registry (mm2latent/weights.py). `ffhq-official` is `ffhq` with the authors' released
autoencoders and MappingNets (and FaRL ep16, which their notebook encodes captions with), so
their models can be run and benchmarked next to models trained here. Presets are plain frozen dataclasses; overrides go
through `dataclasses.replace` via `get_preset(name, **overrides)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from mm2latent.config_utils import resolve_preset
from mm2latent.models.autoencoders import AutoencoderCfg, autoencoder_preset
from mm2latent.models.clip_towers import ClipTowerCfg, clip_config
from mm2latent.models.deca import DecaConfig, deca_config
from mm2latent.models.e4e import E4EConfig, e4e_config
from mm2latent.models.face_parser.bisenet import BiSeNetCfg, bisenet_config
from mm2latent.models.mapping_net import MappingNetCfg, mapping_preset
from mm2latent.models.sketch import SketchCfg, sketch_config
from mm2latent.models.stylegan2.generator import PRESETS as GENERATOR_PRESETS
from mm2latent.models.stylegan2.generator import GeneratorCfg


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
    deca: DecaConfig
    e4e: E4EConfig
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
    farl=clip_config("farl-b16"),
    bisenet=bisenet_config("official"),
    sketch=sketch_config("official"),
    deca=deca_config("official"),
    e4e=e4e_config("ffhq1024"),
    mask_ae=autoencoder_preset("mask"),
    sketch_ae=autoencoder_preset("sketch"),
    mapping=mapping_preset("mask"),
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
    mask_ae=autoencoder_preset("mask_official"),
    sketch_ae=autoencoder_preset("sketch_official"),
    mask_ae_weights="mm2latent.mask-ae-official",
    sketch_ae_weights="mm2latent.sketch-ae-official",
    mapping_mask_weights="mm2latent.mapping-mask-official",
    mapping_sketch_weights="mm2latent.mapping-sketch-official",
)

PRESETS: dict[str, PresetCfg] = {
    "tiny": PresetCfg(
        name="tiny", init_seed=1234, store_size=64,
        generator=_TINY_GENERATOR,
        farl=clip_config("tiny"),
        bisenet=bisenet_config("tiny"),
        sketch=sketch_config("tiny"),
        deca=deca_config("tiny"),
        e4e=e4e_config("tiny", w_dim=512, stylegan_size=64),
        mask_ae=autoencoder_preset("tiny_mask"),
        sketch_ae=autoencoder_preset("tiny_sketch"),
        mapping=mapping_preset("mask", hidden_dim=256),
    ),
    "ffhq": _FFHQ,
    "ffhq-official": _FFHQ_OFFICIAL,
}


def get_preset(name: str, **overrides: object) -> PresetCfg:
    """The named preset with fields replaced by `overrides`.

    Args:
        name: a key of PRESETS.
        **overrides: PresetCfg fields to replace (e.g. parser_weights="bisenet.celebamask-79999").
    """
    return resolve_preset(PRESETS, name, overrides)
