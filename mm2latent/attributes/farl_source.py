"""Zero-shot CelebA attributes from FaRL's two towers (prompts and temperature: farl_prompts.py).

The image tower's embedding of every sample is already stored (manifest column `farl`); the
text tower encodes the 80 prompts once per run, with the same FaRL weights the dataset's image
embeddings were made with. On the `tiny` preset both towers are seeded random networks, so the
probabilities are meaningless (the mechanics are what tiny tests).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from mm2latent.attributes import farl_prompts
from mm2latent.attributes.spec import (AttributeBatch, AttributeColumn, AttributeSource,
                                       PrepareInputs, Prepared)
from mm2latent_core.errors import ConfigError


@dataclass(frozen=True)
class PromptEmbeddings:
    """Unit-norm text embeddings of each attribute's (present, absent) prompts."""

    present: np.ndarray  # (A, E) float32, row a = attribute a of farl_prompts.PROMPTS
    absent: np.ndarray   # (A, E) float32
    scale: float         # LOGIT_SCALE / TEMPERATURE


def probabilities(image: np.ndarray, prompts: PromptEmbeddings) -> np.ndarray:
    """(B, A) probability that each attribute is present, image embeddings (B, E) unit norm."""
    image = np.asarray(image, dtype=np.float64)
    present = image @ prompts.present.T.astype(np.float64) * prompts.scale  # (B, A)
    absent = image @ prompts.absent.T.astype(np.float64) * prompts.scale  # (B, A)
    return 1.0 / (1.0 + np.exp(absent - present))  # softmax over the pair = sigmoid(difference)


def _tower_producer(inputs: PrepareInputs) -> dict:
    """Which FaRL tower: the registered weights and their sha256, or the seeded preset's config.

    Raises ConfigError when the preset's tower is not the one that made the dataset's image
    embeddings: scoring them against another tower's text embeddings is meaningless.
    """
    name = inputs.preset.farl_weights
    if name is None:
        if inputs.dataset_preset != inputs.preset.name:
            raise ConfigError(f"preset {inputs.preset.name!r} has a seeded FaRL but the dataset "
                              f"was made with preset {inputs.dataset_preset!r}. Fix: pass "
                              f"--preset {inputs.dataset_preset}.")
        return {"seeded": inputs.preset.name, "init_seed": inputs.preset.init_seed,
                "cfg": dataclasses.asdict(inputs.preset.farl)}
    if name not in inputs.dataset_weights:
        raise ConfigError(f"the dataset's FaRL image embeddings were not made with {name!r} "
                          f"(preset {inputs.preset.name!r}); it was generated with "
                          f"{', '.join(sorted(inputs.dataset_weights))}. Fix: pass --preset "
                          f"{inputs.dataset_preset}.")
    return {"weights": name, "sha256": inputs.dataset_weights[name]}


@torch.no_grad()
def prepare(inputs: PrepareInputs) -> Prepared:
    """Encode every prompt once with the preset's FaRL text tower."""
    from mm2latent.modalities import farl  # the network code loads only when this source runs

    producer = {"tower": _tower_producer(inputs), "prompts": farl_prompts.PROMPTS,
                "logit_scale": farl_prompts.LOGIT_SCALE, "temperature": farl_prompts.TEMPERATURE}
    embedder = farl.SPEC.build(inputs.preset, inputs.cache_dir)
    pairs = list(farl_prompts.PROMPTS.values())
    present = embedder.encode_text([p for p, _ in pairs]).float().cpu().numpy()  # (A, E)
    absent = embedder.encode_text([a for _, a in pairs]).float().cpu().numpy()  # (A, E)
    scale = farl_prompts.LOGIT_SCALE / farl_prompts.TEMPERATURE
    return Prepared(PromptEmbeddings(present, absent, scale), producer)


def compute(prompts: PromptEmbeddings, batch: AttributeBatch) -> dict[str, np.ndarray]:
    """The probability of every CelebA attribute."""
    image = batch.values["farl"]  # (B, E)
    if image.shape[1] != prompts.present.shape[1]:
        raise ConfigError(f"the dataset's FaRL embeddings are {image.shape[1]}-d, the text tower's "
                          f"{prompts.present.shape[1]}-d; pass the preset the dataset was made with.")
    p = probabilities(image, prompts)  # (B, A)
    return {name: p[:, a] for a, name in enumerate(farl_prompts.PROMPTS)}


COLUMNS = tuple(
    AttributeColumn(name, "probability", f"softmax over ({present!r}, {absent!r}) of "
                    "100 * cosine / temperature (farl_prompts.py)")
    for name, (present, absent) in farl_prompts.PROMPTS.items())

SOURCE = AttributeSource(
    name="farl", version="1", columns=COLUMNS, compute=compute, vectors=("farl",), prepare=prepare,
    description="zero-shot probability of the 40 CelebA attributes from FaRL's image and text towers")
