"""The 19-class CelebAMask-HQ face-parsing mask: a single-channel label PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mm2latent_core.errors import ConfigError
from mm2latent.losses import mask_reconstruction_loss
from mm2latent.models.autoencoders import AutoencoderCfg, mask_to_input
from mm2latent.modalities.palette import colours_to_ids
from mm2latent.models.face_parser.base import MIN_FACE_FRACTION
from mm2latent.models.face_parser.labels import CELEBAMASK_HQ_CLASSES, NUM_CLASSES, colorize
from mm2latent.modalities.codecs import encode_png
from mm2latent_core.modalities.network_input import MapInput, Spatial, batched_maps, interpolated
from mm2latent_core.modalities.spec import Annotation, ConditionHelp, ModalitySpec, SynthBatch
from mm2latent import annotation


def _encode(labels: np.ndarray, _image_format: str) -> tuple[str, bytes]:
    return "mask.png", encode_png(labels)


def _decode(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in ("L", "P"):  # converting RGB to L would blend label values
            raise ValueError(f"mask must be a single-channel PNG, found mode {im.mode}")
        labels = np.asarray(im)  # (H, W) uint8 label ids
    return torch.from_numpy(labels.astype(np.int64))  # (H, W)


def _build(preset, cache_dir: Path | None):
    # Imported here: readers use this module for its codec and should not load network code.
    from mm2latent.model_loading import build_component
    from mm2latent.models.face_parser.bisenet import BiSeNet

    return build_component(preset, "parser", lambda: BiSeNet(preset.bisenet), cache_dir)


def _annotate(parser, batch: SynthBatch) -> Annotation:
    """Labels, and a NoFaceFound error where (almost) no pixel is face or head."""
    labels, fraction = annotation.parse_masks(parser, batch.images01)
    errors = [None if share >= MIN_FACE_FRACTION else
              (f"NoFaceFound: the face parser labelled {share:.2%} of the pixels as face or head "
               f"(minimum {MIN_FACE_FRACTION:.0%})") for share in fraction.tolist()]
    return Annotation(labels.cpu().numpy(), errors)  # (B, S, S) uint8


class ClassFrequency:
    """Pixel share of each CelebAMask-HQ class over decoded masks."""

    def __init__(self) -> None:
        self.pixels = np.zeros(NUM_CLASSES, dtype=np.int64)

    def add(self, labels: torch.Tensor) -> None:
        """Fold in one (H, W) label map."""
        self.pixels += np.bincount(labels.numpy().ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]

    def result(self) -> dict[str, float]:
        """class name -> pixel share; {} without pixels."""
        total = self.pixels.sum()
        return {name: float(c / total) for name, c in zip(CELEBAMASK_HQ_CLASSES, self.pixels)} if total else {}

    def render(self, result: dict[str, float]) -> str | None:
        """'mask classes (pixel share): ...', largest first."""
        if not result:
            return None
        shares = sorted(result.items(), key=lambda kv: -kv[1])
        return "mask classes (pixel share): " + ", ".join(f"{n} {s:.3f}" for n, s in shares if s > 0)


def _tile(labels: torch.Tensor) -> np.ndarray:
    return colorize(labels.numpy())  # (H, W, 3)


def check_masks(masks: Spatial) -> torch.Tensor:
    """(B, H, W) int64 CelebAMask-HQ ids; ConfigError for floats or ids outside 0..18."""
    t = batched_maps(masks, "mask")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ConfigError(f"mask must hold integer class ids 0..18, got dtype {t.dtype}.")
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= NUM_CLASSES:
        raise ConfigError(f"mask labels span [{lo}, {hi}] but must lie in 0..18 (CelebAMask-HQ "
                          "ids, 0 background). Fix: pass a label-id PNG, not colours or id*10 grey.")
    return t.long()


def _to_map(labels: torch.Tensor) -> torch.Tensor:
    return labels  # storage.readers already gives (H, W) ids


def resize_labels(labels: torch.Tensor, resolution: int) -> torch.Tensor:
    """(H, W) label ids -> (R, R) uint8, nearest: ids are never blended."""
    if labels.shape[-1] == resolution and labels.shape[-2] == resolution:
        return labels.to(torch.uint8)
    return interpolated(labels, resolution, "nearest").to(torch.uint8)  # (R, R)


def read_label_png(payload: bytes, num_classes: int) -> np.ndarray:
    """(H, W) uint8 ids of a single-channel label PNG; ValueError for colours or ids >= num_classes."""
    with Image.open(io.BytesIO(payload)) as im:
        if im.mode not in ("L", "P"):
            raise ValueError(f"a mask must be a single-channel label PNG (class id per pixel), "
                             f"found mode {im.mode}.")
        array = np.asarray(im)  # (H, W)
    if array.max(initial=0) >= num_classes:
        raise ValueError(f"label {int(array.max())} >= {num_classes} classes; masks must hold "
                         "CelebAMask-HQ ids 0..18, not colours or id * 10 grey levels.")
    return array.astype(np.uint8)


def read_label_ids(payload: bytes) -> np.ndarray:
    """(H, W) label ids of a mask file or tar member: a single-channel PNG (values unchecked)."""
    try:
        with Image.open(io.BytesIO(payload)) as im:
            im.load()
            if im.mode not in ("L", "P"):
                raise ValueError("a mask must be a single-channel label PNG (class id per pixel, "
                                 f"0..18), found mode {im.mode}.")
            return np.asarray(im)  # (H, W)
    except OSError as e:
        raise ValueError(f"not a readable image for the mask ({e}).") from e


def _preset_autoencoder(preset) -> AutoencoderCfg:
    return preset.mask_ae


def _reconstruction_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask_reconstruction_loss(recon, x)  # MSE of the Sigmoid output against the input


def ids_from_upload(image: Image.Image) -> np.ndarray:
    """(H, W) ids of an uploaded mask: a label-id image, or the page's palette colours."""
    if image.mode in ("L", "P", "I;16", "I"):
        return np.asarray(image)
    return colours_to_ids(np.asarray(image.convert("RGB")))


NETWORK_INPUT = MapInput(check=check_masks, to_map=_to_map, resize=resize_labels,
                         read_png=read_label_png, to_input=mask_to_input, ae_lr=1e-3, dtype=torch.int64,
                         read=read_label_ids, autoencoder=_preset_autoencoder,
                         ae_loss=_reconstruction_loss, from_upload=ids_from_upload)

HELP = ConditionHelp(file="Label-id PNG (CelebAMask-HQ ids 0..18)", noun="mask",
                     annotator="parsing it (the pivot of a spatial edit)")

SPEC = ModalitySpec(name="mask", exts=("mask.png",), encode=_encode, decode=_decode,
                    annotate=_annotate, build=_build, component="parser", stats=ClassFrequency,
                    tile=_tile, network_input=NETWORK_INPUT,
                    help=HELP)
