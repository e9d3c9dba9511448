"""Generate and score one chunk of pairs with one model, timing each generation stage."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mm2latent.benchmark import metrics
from mm2latent.benchmark.networks import MetricNets
from mm2latent.benchmark.pairs import Pair
from mm2latent.inference import Mm2LatentGenerator

STAGES = ("text_encode", "spatial_encode", "mapping_net", "generator")


@dataclass
class ChunkResult:
    """Per-pair metric columns, the generated images and seconds spent per stage."""

    columns: dict[str, object]  # image_id, caption, noise_seed, model, metrics, cmmd_embedding
    images: torch.Tensor  # (B, R, R, 3) uint8
    seconds: dict[str, float]  # STAGES + "metrics", summed over the chunk


@torch.no_grad()
def generate_timed(model: Mm2LatentGenerator, pairs: Sequence[Pair], masks: np.ndarray
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """(B, R, R, 3) uint8 images of the pairs, and seconds per generation stage.

    Each image gets its own noise from its pair's noise_seed, so it does not depend on which
    other pairs share the chunk.
    """
    clock = [time.perf_counter()]

    def lap() -> None:
        if model.device.type == "cuda":  # kernels run asynchronously: wait before reading the clock
            torch.cuda.synchronize(model.device)
        clock.append(time.perf_counter())

    text = model.text_embeddings([p.caption for p in pairs]); lap()
    space = model.spatial_embeddings(masks); lap()
    w = model.mapping(text, space); lap()  # (B, w_dim)
    images = torch.cat([model.synthesize(w[i:i + 1], noise_seed=p.noise_seed)
                        for i, p in enumerate(pairs)]); lap()
    return images.cpu(), {s: clock[i + 1] - clock[i] for i, s in enumerate(STAGES)}


def evaluate_chunk(model: Mm2LatentGenerator, tag: str, nets: MetricNets, pairs: Sequence[Pair],
                   masks: np.ndarray, eval_size: int) -> ChunkResult:
    """Generate the chunk's images and compute every per-pair metric.

    Args:
        model: the MappingNet version's generator.
        tag: its registry tag, stored in the `model` column.
        nets: metric networks.
        pairs: the chunk's pairs.
        masks: (B, S, S) uint8 merged CelebAMask-HQ maps of the pairs.
        eval_size: side at which mask accuracy is computed.
    """
    images, seconds = generate_timed(model, pairs, masks)
    start = time.perf_counter()
    float01 = metrics.to_float01(images)
    captions = [p.caption for p in pairs]
    columns = {
        "model": [tag] * len(pairs),
        "image_id": np.array([p.image_id for p in pairs], np.int64),
        "caption": captions,
        "noise_seed": np.array([p.noise_seed for p in pairs], np.int64),
        "clip_score": metrics.clip_scores(nets.clip_score, float01, captions).cpu().numpy(),
        "mask_accuracy": 100.0 * metrics.mask_accuracy(nets.parser, float01,
                                                       torch.from_numpy(masks), eval_size).numpy(),
        "cmmd_embedding": metrics.cmmd_embeddings(nets.cmmd, float01).numpy(),
    }
    seconds["metrics"] = time.perf_counter() - start
    return ChunkResult(columns=columns, images=images, seconds=seconds)
