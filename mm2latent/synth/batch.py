"""One batch of synth-data: latents -> w and image -> annotations, with per-stage timings."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from mm2latent_core.modalities.spec import SynthBatch
from mm2latent.annotation import to_float_images
from mm2latent.synth import stages
from mm2latent.synth.models import SynthModels


@dataclass
class BatchResult:
    """Arrays for a batch of samples (row j is sample indices[j]) and what went wrong where."""

    indices: list[int]
    values: dict[str, np.ndarray]  # modality -> (B, ...) array, one per stored modality
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

    Every stored modality's spec annotates the batch; a selectable one is timed under its own
    name. A sample an annotator flags (e.g. no face found) keeps its arrays but gets the first
    error, so the caller records it as failed instead of silently dropping it.
    """
    with _timed(durations, "generate"):
        z = stages.latents(dataset_seed, indices, models.generator.cfg.z_dim).to(models.device)
        w, pixels = stages.generate(models.generator, z, truncation_psi, store_size)
    batch = SynthBatch(w=w, pixels=pixels, images01=to_float_images(pixels))
    result = BatchResult(indices=list(indices), values={}, errors=[None] * len(indices))
    for spec in models.specs:
        annotator = models.annotators.get(spec.name)
        if spec.selectable:
            with _timed(durations, spec.name):
                annotation = spec.annotate(annotator, batch)
        else:  # image and w come with the generator's time
            annotation = spec.annotate(annotator, batch)
        result.values[spec.name] = annotation.values
        for j, error in enumerate(annotation.errors or ()):
            if result.errors[j] is None:
                result.errors[j] = error
    return result
