"""Checks of what every model call takes: captions, image batches, edit strengths, row counts.

Shared by inference (generation, Mm2LatentGenerator.edit) and editing (text and spatial edits at
several betas); it sits below both. Each check raises one ConfigError naming the value and fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mm2latent_core.errors import ConfigError


def check_texts(texts: Sequence[str], name: str = "texts") -> list[str]:
    """The captions as a list; ConfigError for a bare str, an empty list or a blank caption."""
    if isinstance(texts, str):
        raise ConfigError(f"{name} must be a list of captions, got a bare str; wrap it: [{texts!r}].")
    texts = list(texts)
    if not texts:
        raise ConfigError(f"{name} is empty; give at least one caption.")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{name}[{i}] is {text!r}; a caption must be a non-empty string, "
                              "e.g. 'a smiling woman with blond hair'.")
    return texts


def check_beta(beta: float, name: str = "beta") -> float:
    """`beta` as a float; ConfigError if it is not a number, NaN or infinite."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta):
        raise ConfigError(f"{name}={beta!r} must be a finite number (0 = no edit, 1 = the full "
                          "direction; negative values move away from the target).")
    return float(beta)


def check_betas(betas: float | Sequence[float]) -> tuple[float, ...]:
    """Betas as a non-empty tuple of finite floats; ConfigError naming the bad one."""
    values = (betas,) if isinstance(betas, (int, float)) else tuple(betas)
    if not values:
        raise ConfigError("betas is empty; give at least one edit strength, e.g. 1.0.")
    return tuple(check_beta(beta, f"beta[{i}]") for i, beta in enumerate(values))


def check_images(images01: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float images in [0, 1]; ConfigError otherwise."""
    if not isinstance(images01, torch.Tensor) or not images01.dtype.is_floating_point:
        raise ConfigError("images must be a float torch tensor (B, 3, H, W) in [0, 1].")
    if images01.ndim != 4 or images01.shape[1] != 3 or images01.shape[0] == 0:
        raise ConfigError(f"images must be (B, 3, H, W) RGB with B >= 1, got {tuple(images01.shape)}.")
    if images01.shape[2] != images01.shape[3]:
        raise ConfigError(f"images must be square FFHQ-aligned crops, got H={images01.shape[2]}, "
                          f"W={images01.shape[3]}. Fix: align and crop the face first (FFHQ rule).")
    if float(images01.min()) < 0.0 or float(images01.max()) > 1.0:
        raise ConfigError("images must lie in [0, 1]; divide uint8 pixels by 255.")
    return images01


def broadcast(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("captions", "spatial conditions")
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a and b made equal in number: a single row is repeated, else both must agree."""
    if a.shape[0] == b.shape[0]:
        return a, b
    if a.shape[0] == 1:
        return a.expand(b.shape[0], -1), b
    if b.shape[0] == 1:
        return a, b.expand(a.shape[0], -1)
    raise ConfigError(f"{a.shape[0]} {names[0]} but {b.shape[0]} {names[1]}; give one of "
                      "either, or the same number of both.")
