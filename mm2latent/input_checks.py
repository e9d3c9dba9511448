"""Checks of command-line values that must fail before any model is built or file written.

Each raises a ConfigError whose one line names the value, what is wrong and the fix. The CLI
calls them first, so a bad value never starts Prefect, never leaves a half-written shard and
never surfaces as a traceback from deep inside torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mm2latent.errors import ConfigError

PSI_RANGE = (-1.0, 2.0)  # truncation psi accepted: 1 = none, 0 = the mean face, <0 = its opposite
_DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_psi(psi: float, option: str = "--psi") -> float:
    """A finite truncation psi inside PSI_RANGE."""
    low, high = PSI_RANGE
    if not math.isfinite(psi):
        raise ConfigError(f"{option} {psi} is not a number. Fix: give a value in [{low:g}, {high:g}] "
                          "(1 = no truncation, 0.7 = the paper's samples).")
    if not low <= psi <= high:
        raise ConfigError(f"{option} {psi:g} is outside [{low:g}, {high:g}], where images stop "
                          "looking like the generator's. Fix: give a value in that range (1 = no "
                          "truncation, 0.7 = the paper's samples).")
    return psi


def check_device(device: str, option: str = "--device") -> str:
    """A torch device string this machine can run: cpu, cuda[:N] with CUDA present, mps if built."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"{option} {device!r} is not a torch device. Fix: use one of "
                          f"{', '.join(_DEVICE_TYPES)} (or cuda:N).") from e
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{option} {device}: CUDA is not available here (no GPU or driver "
                              f"found; torch {torch.__version__}, CUDA build "
                              f"{torch.version.cuda or 'none'}). Fix: use --device cpu, or run on a "
                              "machine with an NVIDIA GPU, its driver and a CUDA build of torch.")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"{option} {device}: this machine has {count} CUDA device(s). "
                              f"Fix: use cuda:0 .. cuda:{count - 1}.")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{option} mps: Apple's Metal backend is not available here. "
                              "Fix: use --device cpu.")
    elif parsed.type != "cpu":
        raise ConfigError(f"{option} {device!r}: device type {parsed.type!r} is not supported. "
                          f"Fix: use one of {', '.join(_DEVICE_TYPES)}.")
    return device


def split_list(text: str) -> list[str]:
    """The names of a comma list such as "mask, sketch" (blanks dropped; checked by the caller)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_list(text: str, valid: Sequence[str], option: str) -> list[str]:
    """Split a comma list, refusing an empty one (e.g. `--modalities ""`) and unknown names."""
    items = split_list(text)
    if not items:
        raise ConfigError(f"{option} is empty. Fix: give a comma list of {','.join(valid)}.")
    unknown = [item for item in items if item not in valid]
    if unknown:
        raise ConfigError(f"{option}: unknown {', '.join(map(repr, unknown))}. Fix: choose from "
                          f"{','.join(valid)}.")
    return items


def check_positive(value: int, option: str) -> int:
    """An integer option that must be at least 1 (e.g. `grid --rows`)."""
    if value < 1:
        raise ConfigError(f"{option} {value}: must be at least 1.")
    return value


def check_map_size(shape: Sequence[int], modality: str, min_side: int) -> None:
    """Refuse a mask or sketch that is not square or is smaller than the models were trained on.

    Maps are resized to the autoencoder's input as in training; a non-square map would be
    squashed and a smaller one upscaled beyond what training saw, both giving embeddings unlike
    any the MappingNet learnt from.

    Args:
        shape: (..., H, W) of the map(s).
        modality: 'mask' or 'sketch', named in the message.
        min_side: smallest side accepted, pixels: the autoencoder's input side, or the preset's
            stored map side where that is smaller (training upscaled those too).
    """
    height, width = int(shape[-2]), int(shape[-1])
    fix = f"Fix: pass a square, FFHQ-aligned {modality} of at least {min_side}x{min_side} px."
    if height != width:
        raise ConfigError(f"the {modality} is {width}x{height} px, not square. {fix}")
    if height < min_side:
        raise ConfigError(f"the {modality} is {width}x{height} px, smaller than the "
                          f"{min_side}x{min_side} the models were trained on. {fix}")
