"""One batch of synth-data: latents -> w and image -> annotations, with per-stage timings."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from mm2latent.models.deca import ffhq_crop_for_deca
from mm2latent.models.face_parser.base import MIN_FACE_FRACTION
from mm2latent.synth import stages
from mm2latent.synth.models import SynthModels


@dataclass
class BatchResult:
    """Arrays for a batch of samples (row j is sample indices[j]) and what went wrong where."""

    indices: list[int]
    w: np.ndarray                       # (B, w_dim) float32
    images: np.ndarray                  # (B, S, S, 3) uint8 RGB
    masks: np.ndarray | None = None     # (B, S, S) uint8 CelebAMask-HQ labels
    sketches: np.ndarray | None = None  # (B, S, S) uint8 {0, 255}
    flame: np.ndarray | None = None     # (B, 159) float32: shape 100, exp 50, pose 6, cam 3
    farl: np.ndarray | None = None      # (B, 512) float32, L2-normalised
    errors: list[str | None] = field(default_factory=list)  # per sample; None = ok


@contextmanager
def _timed(durations: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        durations[stage] = durations.get(stage, 0.0) + time.perf_counter() - start


@torch.inference_mode()
def synthesize_batch(models: SynthModels, dataset_seed: int, indices: Sequence[int],
                     truncation_psi: float, store_size: int,
                     durations: dict[str, float]) -> BatchResult:
    """Generate and annotate samples `indices`; adds seconds per stage into `durations`.

    A sample whose face parse finds (almost) no face keeps its arrays but gets an error, so
    the caller records it as failed instead of silently dropping it.
    """
    device = models.device
    with _timed(durations, "generate"):
        z = stages.latents(dataset_seed, indices, models.generator.cfg.z_dim).to(device)
        w, pixels = stages.generate(models.generator, z, truncation_psi, store_size)
    images01 = stages.to_float_images(pixels)
    result = BatchResult(indices=list(indices), w=w.float().cpu().numpy(),
                         images=pixels.cpu().numpy(), errors=[None] * len(indices))
    if models.parser is not None:
        with _timed(durations, "mask"):
            labels, fraction = stages.parse_masks(models.parser, images01)
        result.masks = labels.cpu().numpy()
        for j, share in enumerate(fraction.tolist()):
            if share < MIN_FACE_FRACTION:
                result.errors[j] = (f"NoFaceFound: the face parser labelled {share:.2%} of the "
                                    f"pixels as face or head (minimum {MIN_FACE_FRACTION:.0%})")
    if models.sketch is not None:
        with _timed(durations, "sketch"):
            result.sketches = stages.sketches(models.sketch, pixels.cpu())
    if models.flame is not None:
        with _timed(durations, "flame"):
            crops = ffhq_crop_for_deca(images01)
            result.flame = stages.embed(models.flame.flame159, crops).cpu().numpy()
    if models.farl is not None:
        with _timed(durations, "farl"):
            # the stored uint8 pixels: FaRL's own preprocessing is Pillow's resize of them
            result.farl = stages.embed(models.farl.encode_image,
                                       pixels.permute(0, 3, 1, 2)).cpu().numpy()  # (B, 3, S, S)
    return result
