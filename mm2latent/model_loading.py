"""Load a registered weights file into its network: registry name -> format -> loader.

Kept apart from mm2latent/weights.py so that listing, fetching and verifying weights never
imports torch model code (open_clip alone takes seconds to import).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from mm2latent import weights
from mm2latent.models.clip_loaders import load_farl, load_openai_clip
from mm2latent.models.deca import load_deca_flame_encoder
from mm2latent.models.e4e import load_e4e_encoder
from mm2latent.models.face_parser.bisenet import load_bisenet
from mm2latent.models.face_parser.facer_farl import load_facer_farl
from mm2latent.models.mapping_net import load_official_mapping_net
from mm2latent.models.official_models import (load_official_mask_autoencoder,
                                              load_official_sketch_autoencoder)
from mm2latent.models.stylegan2.checkpoints import load_nvidia_pickle, load_rosinality
from mm2latent.presets import PresetCfg
from mm2latent.seeding import derive_seed, seeded_init

# Every WeightSpec.format in the registry has exactly one loader (a test checks this).
LOADERS: dict[str, Callable[[Path], nn.Module]] = {
    "nvidia-pickle": load_nvidia_pickle,
    "rosinality-pt": load_rosinality,
    "e4e-pt": load_e4e_encoder,  # the decoder in the same file: stylegan2.checkpoints.load_e4e_decoder
    "farl-pth": load_farl,
    "openai-clip-jit": load_openai_clip,
    "facer-jit": load_facer_farl,
    "bisenet-pth": load_bisenet,
    "deca-tar": load_deca_flame_encoder,
    "mm2latent-mask-ae-ckpt": load_official_mask_autoencoder,
    "mm2latent-sketch-ae-ckpt": load_official_sketch_autoencoder,
    "mm2latent-mapping-ckpt": load_official_mapping_net,
}


def load_weights(name: str, cache_dir: Path | None = None) -> nn.Module:
    """Resolve (and check) the cached file of registry entry `name` and load its network.

    Args:
        name: a registry name, e.g. 'farl.ep64'.
        cache_dir: weights cache; None = the default (MM2LATENT_CACHE or ~/.cache/mm2latent).
    """
    spec = weights.get_spec(name)
    return LOADERS[spec.format](weights.resolve(name, cache_dir))


def build_component(preset: PresetCfg, component: str, make: Callable[[], nn.Module],
                    cache_dir: Path | None) -> nn.Module:
    """Load `component` from its registered weights if the preset names them, else seed it.

    Seeded parameters depend only on (preset.init_seed, component). Returned frozen, in eval mode.
    """
    name = preset.weight_names().get(component)
    if name is not None:
        net = load_weights(name, cache_dir)
    else:
        with seeded_init(derive_seed(preset.init_seed, component)):
            net = make()
    return net.eval().requires_grad_(False)  # inference networks: frozen, in eval mode
