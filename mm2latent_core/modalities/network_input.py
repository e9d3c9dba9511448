"""How training and inference turn a modality into a network input.

A modality that can condition the MappingNet declares one of two kinds:
- MapInput: a spatial map (mask, sketch). An autoencoder is trained on it; the MappingNet
  takes the autoencoder's embedding.
- VectorInput: a stored vector (flame). The MappingNet takes the vector itself.
Every field is a module-level function or a frozen dataclass so a registry pickles (DataLoader
workers started with `spawn`, process pools).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from mm2latent_core.errors import ConfigError

# An autoencoder config (mm2latent.models.autoencoders.AutoencoderCfg) and a preset
# (mm2latent.presets.PresetCfg): the bottom layer cannot import library code, so they are typed
# loosely here; the modality's own functions take the real classes.
AutoencoderCfgLike = Any
PresetLike = Any

Spatial = np.ndarray | torch.Tensor  # a raw condition as a caller passes it


def as_tensor(x: Spatial, name: str) -> torch.Tensor:
    """A CPU tensor of a numpy array (copied: arrays read from PNGs are read-only) or tensor."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.array(x))
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    raise ConfigError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}.")


def batched_maps(x: Spatial, name: str) -> torch.Tensor:
    """(B, H, W) from (H, W) or (B, H, W); ConfigError otherwise."""
    t = as_tensor(x, name)
    if t.ndim == 2:
        t = t.unsqueeze(0)  # (1, H, W)
    if t.ndim != 3 or t.shape[0] == 0:
        raise ConfigError(f"{name} must be (H, W) or (B, H, W) with B >= 1, got {tuple(t.shape)}.")
    return t


def interpolated(x: torch.Tensor, resolution: int, mode: str) -> torch.Tensor:
    """(H, W) map -> (R, R) float by F.interpolate with `mode` ("nearest", "area", ...)."""
    grid = x.float()[None, None]  # (1, 1, H, W)
    return F.interpolate(grid, size=(resolution, resolution), mode=mode)[0, 0]  # (R, R)


@dataclass(frozen=True)
class MapInput:
    """A spatial condition: encoded by its autoencoder; the MappingNet takes that embedding.

    Args:
        check: raw (H, W) / (B, H, W) condition -> checked (B, H, W) batch of `dtype`;
            ConfigError naming the fix otherwise (inference inputs, app uploads).
        to_map: value as storage.readers decodes it -> (H, W) map.
        resize: ((H, W) map, side R) -> (R, R) uint8 map, as training and inference resize.
        read_png: (real annotation PNG bytes, classes the autoencoder takes) -> (H, W) uint8;
            ValueError saying what is wrong with the file.
        to_input: ((B, R, R) uint8 maps, AutoencoderCfg) -> (B, C, R, R) float network input.
        ae_lr: default Adam learning rate of its autoencoder (the authors' value).
        dtype: dtype of a checked batch.
        read: bytes of a condition file or of the stored tar member -> (H, W) raw map as a
            user passes it (what `check` takes); ValueError saying what is wrong with them.
        autoencoder: preset -> the AutoencoderCfg of this modality's autoencoder.
        ae_loss: (autoencoder output, its network input) -> scalar reconstruction loss.
        from_upload: an uploaded PIL image -> (H, W) raw map (the app); None = its grey levels.
    """

    check: Callable[[Spatial], torch.Tensor]
    to_map: Callable[[torch.Tensor], torch.Tensor]
    resize: Callable[[torch.Tensor, int], torch.Tensor]
    read_png: Callable[[bytes, int], np.ndarray]
    to_input: Callable[[torch.Tensor, AutoencoderCfgLike], torch.Tensor]
    ae_lr: float
    dtype: torch.dtype
    read: Callable[[bytes], np.ndarray]
    autoencoder: Callable[[PresetLike], AutoencoderCfgLike]
    ae_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    from_upload: Callable[[Any], np.ndarray] | None = None

    shape: ClassVar[str] = "(B, H, W)"


@dataclass(frozen=True)
class VectorInput:
    """A vector condition: the MappingNet takes the stored vector (its spatial_dim = dim).

    Args:
        name: the modality's name, for error messages.
        dim: vector width; the MappingNet's spatial_dim.
        about: what the numbers are, for error messages (e.g. "DECA shape 100 + ...").
    """

    name: str
    dim: int
    about: str = ""

    dtype: ClassVar[torch.dtype] = torch.float32

    @property
    def shape(self) -> str:
        """The checked batch's shape."""
        return f"(B, {self.dim})"

    def check(self, raw: Spatial) -> torch.Tensor:
        """(B, dim) float32 from (dim,) or (B, dim) finite floats; ConfigError otherwise."""
        t = as_tensor(raw, self.name)
        given = tuple(t.shape)
        if t.ndim == 1:
            t = t.unsqueeze(0)  # (1, dim)
        if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] != self.dim:
            about = f" ({self.about})" if self.about else ""
            raise ConfigError(f"{self.name} must be ({self.dim},) or (B, {self.dim}){about}, "
                              f"got {given}.")
        if not t.dtype.is_floating_point or not bool(torch.isfinite(t).all()):
            raise ConfigError(f"{self.name} must be finite floating-point values.")
        return t.to(self.dtype)

    def read(self, data: bytes) -> np.ndarray:
        """The array of a `.npy` condition file or tar member, as stored (unchecked).

        ValueError when the bytes are not a pickle-free `.npy` array.
        """
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"not a .npy array of {self.name} values ({e}).") from e

    def rows(self, checked: np.ndarray) -> np.ndarray:
        """(B, dim) float32 of an array `check` accepted ((dim,) or (B, dim))."""
        return checked.astype(np.float32).reshape(-1, self.dim)


NetworkInput = MapInput | VectorInput
