"""DECA's 159 FLAME numbers (shape 100, exp 50, pose 6, cam 3) of the FFHQ-cropped image."""

from __future__ import annotations

from pathlib import Path

from mm2latent_core.dims import FLAME_DIM
from mm2latent.models.deca import ffhq_crop_for_deca
from mm2latent.modalities.codecs import vector_codec
from mm2latent_core.modalities.network_input import VectorInput
from mm2latent_core.modalities.spec import Annotation, ConditionHelp, ModalitySpec, SynthBatch
from mm2latent import annotation

_encode, _decode = vector_codec("flame")


def _build(preset, cache_dir: Path | None):
    # Imported here: readers use this module for its codec and should not load network code.
    from mm2latent.model_loading import build_component
    from mm2latent.models.deca import FlameEncoder

    return build_component(preset, "deca", lambda: FlameEncoder(preset.deca), cache_dir)


def _annotate(encoder, batch: SynthBatch) -> Annotation:
    crops = ffhq_crop_for_deca(batch.images01)
    return Annotation(annotation.embed(encoder.flame159, crops).cpu().numpy())  # (B, 159)


def _vector_dim(preset) -> int:
    return preset.deca.flame159_dim


def _annotator_width(net) -> int:
    return net.cfg.flame159_dim


# The MappingNet takes the 159 numbers themselves (no autoencoder).
NETWORK_INPUT = VectorInput(name="flame", dim=FLAME_DIM,
                            about="DECA shape 100 + expression 50 + pose 6 + camera 3")

HELP = ConditionHelp(file=".npy of a 159-d 3DMM code (DECA)", noun="3DMM code",
                     annotator="DECA's")

SPEC = ModalitySpec(name="flame", exts=("flame.npy",), encode=_encode, decode=_decode,
                    annotate=_annotate, build=_build, component="deca",
                    vector_dim=_vector_dim, annotator_width=_annotator_width,
                    network_input=NETWORK_INPUT,
                    help=HELP)
