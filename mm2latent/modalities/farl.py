"""The FaRL image embedding of the stored image (CLIP ViT-B/16, 512-d, L2-normalised)."""

from __future__ import annotations

from pathlib import Path

from mm2latent.modalities.codecs import vector_codec
from mm2latent_core.modalities.spec import Annotation, ModalitySpec, SynthBatch
from mm2latent import annotation

_encode, _decode = vector_codec("farl")


def _build(preset, cache_dir: Path | None):
    # Imported here: readers use this module for its codec and should not load network code.
    from mm2latent.model_loading import build_component
    from mm2latent.models.clip_towers import ClipEmbedder

    return build_component(preset, "farl", lambda: ClipEmbedder(preset.farl), cache_dir)


def _annotate(embedder, batch: SynthBatch) -> Annotation:
    # The stored uint8 pixels: FaRL's official preprocessing is Pillow's resize of them.
    pixels = batch.pixels.permute(0, 3, 1, 2)  # (B, 3, S, S) uint8
    return Annotation(annotation.embed(embedder.encode_image, pixels).cpu().numpy())  # (B, 512)


def _vector_dim(preset) -> int:
    return preset.farl.embed_dim


def _annotator_width(net) -> int:
    return net.cfg.embed_dim


SPEC = ModalitySpec(name="farl", exts=("farl.npy",), encode=_encode, decode=_decode,
                    annotate=_annotate, build=_build, component="farl",
                    vector_dim=_vector_dim, annotator_width=_annotator_width)
