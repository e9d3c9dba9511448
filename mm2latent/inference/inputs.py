"""Validation of inference inputs: captions, spatial conditions, beta and image batches."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from mm2latent.dims import FLAME_DIM, NUM_MASK_CLASSES
from mm2latent.errors import ConfigError

MODALITIES = ("mask", "sketch", "flame")
Spatial = np.ndarray | torch.Tensor  # raw condition: mask ids, sketch 0/255 or flame vectors


def check_modality(modality: str) -> str:
    """`modality` if it is one of MODALITIES, else ConfigError listing them."""
    if modality not in MODALITIES:
        raise ConfigError(f"modality={modality!r} is not valid; choose one of "
                          f"{', '.join(MODALITIES)}.")
    return modality


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


def _as_tensor(x: Spatial, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.array(x))  # a copy: arrays read from PNGs are read-only
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    raise ConfigError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}.")


def _batched_maps(x: Spatial, name: str) -> torch.Tensor:
    """(B, H, W) from (H, W) or (B, H, W); ConfigError otherwise."""
    t = _as_tensor(x, name)
    if t.ndim == 2:
        t = t.unsqueeze(0)  # (1, H, W)
    if t.ndim != 3 or t.shape[0] == 0:
        raise ConfigError(f"{name} must be (H, W) or (B, H, W) with B >= 1, got {tuple(t.shape)}.")
    return t


def check_masks(masks: Spatial) -> torch.Tensor:
    """(B, H, W) int64 CelebAMask-HQ ids; ConfigError for floats or ids outside 0..18."""
    t = _batched_maps(masks, "mask")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ConfigError(f"mask must hold integer class ids 0..18, got dtype {t.dtype}.")
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= NUM_MASK_CLASSES:
        raise ConfigError(f"mask labels span [{lo}, {hi}] but must lie in 0..18 (CelebAMask-HQ "
                          "ids, 0 background). Fix: pass a label-id PNG, not colours or id*10 grey.")
    return t.long()


def check_sketches(sketches: Spatial) -> torch.Tensor:
    """(B, H, W) uint8 in {0, 1} from 0/255 sketches; ConfigError for any other value."""
    t = _batched_maps(sketches, "sketch")
    bad = (t != 0) & (t != 255)
    if bool(bad.any()):
        found = sorted({float(v) for v in t[bad].unique()[:5].tolist()})
        raise ConfigError(f"sketch must hold only 0 (background) and 255 (stroke); found values "
                          f"{found}. Fix: threshold it, e.g. np.where(sketch >= 128, 255, 0).")
    return (t == 255).to(torch.uint8)


def check_flame(flame: Spatial) -> torch.Tensor:
    """(B, 159) float32 3DMM codes from (159,) or (B, 159); ConfigError otherwise."""
    t = _as_tensor(flame, "flame")
    given = tuple(t.shape)
    if t.ndim == 1:
        t = t.unsqueeze(0)  # (1, 159)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] != FLAME_DIM:
        raise ConfigError(f"flame must be ({FLAME_DIM},) or (B, {FLAME_DIM}) (DECA shape 100 + "
                          f"expression 50 + pose 6 + camera 3), got {given}.")
    if not t.dtype.is_floating_point or not bool(torch.isfinite(t).all()):
        raise ConfigError("flame must be finite floating-point values.")
    return t.float()


def check_beta(beta: float) -> float:
    """`beta` as a float; ConfigError if it is NaN or infinite."""
    if not isinstance(beta, (int, float)) or not math.isfinite(beta):
        raise ConfigError(f"beta={beta!r} must be a finite number (0 = no edit, 1 = the full "
                          "direction; negative values move away from the target).")
    return float(beta)


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
