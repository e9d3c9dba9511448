"""The generator's w (w_dim floats): always stored, in the tar and as a parquet column."""

from __future__ import annotations

from mm2latent.modalities.codecs import vector_codec
from mm2latent.modalities.spec import Annotation, ModalitySpec, SynthBatch

_encode, _decode = vector_codec("w")


def _annotate(_annotator: None, batch: SynthBatch) -> Annotation:
    return Annotation(batch.w.float().cpu().numpy())  # (B, w_dim)


def _vector_dim(preset) -> int:
    return preset.generator.w_dim


SPEC = ModalitySpec(name="w", exts=("w.npy",), encode=_encode, decode=_decode, annotate=_annotate,
                    selectable=False, vector_dim=_vector_dim)
