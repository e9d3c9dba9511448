"""The Canny sketch of the stored image: a {0, 255} grey PNG, decoded to float (1, H, W)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from mm2latent_core.errors import ConfigError
from mm2latent.losses import sketch_reconstruction_loss
from mm2latent.models.autoencoders import AutoencoderCfg, sketch_to_input
from mm2latent.modalities.codecs import decode_image, encode_png
from mm2latent_core.modalities.network_input import MapInput, Spatial, batched_maps, interpolated
from mm2latent_core.modalities.spec import Annotation, ConditionHelp, ModalitySpec, SynthBatch
from mm2latent import annotation


def _encode(lines: np.ndarray, _image_format: str) -> tuple[str, bytes]:
    return "sketch.png", encode_png(lines)


def _decode(data: bytes) -> torch.Tensor:
    lines = decode_image(data, "L") >= 128  # (H, W) bool; stored as 0/255
    return torch.from_numpy(lines).float().unsqueeze(0)  # (1, H, W)


def _annotate(cfg, batch: SynthBatch) -> Annotation:
    return Annotation(annotation.sketches(cfg, batch.pixels.cpu()))  # (B, S, S) uint8 {0, 255}


def _tile(lines: torch.Tensor) -> np.ndarray:
    edges = (lines[0].numpy() * 255).astype(np.uint8)  # (H, W) 0/255
    return np.repeat(edges[:, :, None], 3, axis=2)  # (H, W, 3)


class EdgeDensity:
    """Share of edge pixels over decoded sketches."""

    def __init__(self) -> None:
        self.edges = self.pixels = 0

    def add(self, lines: torch.Tensor) -> None:
        """Fold in one (1, H, W) sketch."""
        self.edges += int(lines.sum().item())
        self.pixels += lines.numel()

    def result(self) -> float | None:
        """Edge share in [0, 1], None without pixels."""
        return self.edges / self.pixels if self.pixels else None

    def render(self, result: float | None) -> str | None:
        """'sketch edge density: x'."""
        return None if result is None else f"sketch edge density: {result:.4f}"


def _build(preset, _cache_dir):
    return preset.sketch  # the sketch "annotator" is the preset's Canny settings: no network


def check_sketches(sketches: Spatial) -> torch.Tensor:
    """(B, H, W) uint8 in {0, 1} from 0/255 sketches; ConfigError for any other value."""
    t = batched_maps(sketches, "sketch")
    bad = (t != 0) & (t != 255)
    if bool(bad.any()):
        found = sorted({float(v) for v in t[bad].unique()[:5].tolist()})
        raise ConfigError(f"sketch must hold only 0 (background) and 255 (stroke); found values "
                          f"{found}. Fix: threshold it, e.g. np.where(sketch >= 128, 255, 0).")
    return (t == 255).to(torch.uint8)


def _to_map(lines: torch.Tensor) -> torch.Tensor:
    return lines[0] if lines.ndim == 3 else lines  # storage.readers gives (1, H, W)


def resize_strokes(lines: torch.Tensor, resolution: int) -> torch.Tensor:
    """(H, W) {0,1} strokes -> (R, R) uint8: area average, then re-binarised at half coverage."""
    if lines.shape[-1] == resolution and lines.shape[-2] == resolution:
        return lines.to(torch.uint8)
    return (interpolated(lines, resolution, "area") >= 0.5).to(torch.uint8)  # (R, R)


def read_stroke_png(payload: bytes, _num_classes: int) -> np.ndarray:
    """(H, W) uint8 {0, 1} of a PNG of white strokes (grey >= 128) on black."""
    with Image.open(io.BytesIO(payload)) as im:
        array = np.asarray(im.convert("L"))  # (H, W)
    return (array >= 128).astype(np.uint8)


def read_strokes(payload: bytes) -> np.ndarray:
    """(H, W) grey levels of a sketch file or tar member (values unchecked: 0/255 expected)."""
    try:
        return decode_image(payload, "L")  # (H, W)
    except OSError as e:
        raise ValueError(f"not a readable image for the sketch ({e}).") from e


def _preset_autoencoder(preset) -> AutoencoderCfg:
    return preset.sketch_ae


def _reconstruction_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sketch_reconstruction_loss(logits, (x != 0).to(x.dtype))  # strokes may be 1.02


def strokes_from_upload(image: Image.Image) -> np.ndarray:
    """(H, W) grey levels of an uploaded sketch."""
    return np.asarray(image.convert("L"))


NETWORK_INPUT = MapInput(check=check_sketches, to_map=_to_map, resize=resize_strokes,
                         read_png=read_stroke_png, to_input=sketch_to_input, ae_lr=1e-2,
                         dtype=torch.uint8, read=read_strokes, autoencoder=_preset_autoencoder,
                         ae_loss=_reconstruction_loss, from_upload=strokes_from_upload)

HELP = ConditionHelp(file="Sketch PNG, white (255) strokes on black (0)", noun="sketch",
                     annotator="its edges")

SPEC = ModalitySpec(name="sketch", exts=("sketch.png",), encode=_encode, decode=_decode,
                    annotate=_annotate, build=_build, stats=EdgeDensity, tile=_tile,
                    network_input=NETWORK_INPUT,
                    help=HELP)
