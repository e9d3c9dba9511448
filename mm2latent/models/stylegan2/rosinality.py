"""rosinality stylegan2-pytorch generator state_dicts -> NVIDIA stylegan2-ada-pytorch names.

All renames come from one table (`rename_table`), built from per-layer suffix rows. Both
formats compute the same function of the same numbers (checked against rosinality's own
Generator: see tests/test_stylegan2_checkpoints.py and the report), so only reshapes and the
x4 kernel scale differ; no weight flips or rescaling are needed.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from mm2latent.checkpoint_io import check_key_sets
from mm2latent_core.errors import CheckpointError
from mm2latent.models.stylegan2.generator import GeneratorCfg

logger = logging.getLogger(__name__)

UPSAMPLE_KERNEL_GAIN = 4.0  # rosinality stores its 2x-upsampling FIR kernels multiplied by factor**2


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _drop_lead(t: torch.Tensor) -> torch.Tensor:
    # (1, O, I, k, k) -> (O, I, k, k); (1, C, 4, 4) -> (C, 4, 4)
    if t.shape[0] != 1:
        raise ValueError(f"leading dimension must be 1, found shape {tuple(t.shape)}")
    return t[0]


def _to_scalar(t: torch.Tensor) -> torch.Tensor:
    # (1,) -> () : NoiseInjection.weight -> noise_strength
    if t.numel() != 1:
        raise ValueError(f"expected one element, found shape {tuple(t.shape)}")
    return t.reshape(())


def _flatten_bias(t: torch.Tensor) -> torch.Tensor:
    # (1, C, 1, 1) -> (C,) : ToRGB.bias
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[2:] != (1, 1):
        raise ValueError(f"expected shape (1, C, 1, 1), found {tuple(t.shape)}")
    return t.reshape(-1)


def _noise_map(t: torch.Tensor) -> torch.Tensor:
    # (1, 1, R, R) -> (R, R) : noises.noise_i -> noise_const
    if t.dim() != 4 or t.shape[:2] != (1, 1):
        raise ValueError(f"expected shape (1, 1, R, R), found {tuple(t.shape)}")
    return t[0, 0]


def _unscale_kernel(t: torch.Tensor) -> torch.Tensor:
    return t / UPSAMPLE_KERNEL_GAIN


Convert = Callable[[torch.Tensor], torch.Tensor]

# (rosinality suffix, NVIDIA suffix, conversion) for each kind of module.
_STYLED_CONV: tuple[tuple[str, str, Convert], ...] = (
    ("conv.weight", "weight", _drop_lead),
    ("conv.modulation.weight", "affine.weight", _same),
    ("conv.modulation.bias", "affine.bias", _same),
    ("noise.weight", "noise_strength", _to_scalar),
    ("activate.bias", "bias", _same),
)
_UP_BLUR = (("conv.blur.kernel", "resample_filter", _unscale_kernel),)
_TO_RGB: tuple[tuple[str, str, Convert], ...] = (
    ("conv.weight", "weight", _drop_lead),
    ("conv.modulation.weight", "affine.weight", _same),
    ("conv.modulation.bias", "affine.bias", _same),
    ("bias", "bias", _flatten_bias),
)
_IMG_UPSAMPLE = (("kernel", "resample_filter", _unscale_kernel),)
_LINEAR = (("weight", "weight", _same), ("bias", "bias", _same))
_CONST = (("input", "const", _drop_lead),)
_NOISE = (("", "noise_const", _noise_map),)


def _module_pairs(log_size: int, n_mlp: int) -> Iterator[tuple[str, str, tuple]]:
    """(rosinality module, NVIDIA module, suffix rows) for a generator of 2**log_size pixels."""
    for i in range(n_mlp):  # style.0 is PixelNorm, so the linears start at 1
        yield f"style.{i + 1}", f"mapping.fc{i}", _LINEAR
    yield "input", "synthesis.b4", _CONST
    yield "conv1", "synthesis.b4.conv1", _STYLED_CONV
    yield "to_rgb1", "synthesis.b4.torgb", _TO_RGB
    yield "noises.noise_0", "synthesis.b4.conv1", _NOISE
    for k, log_res in enumerate(range(3, log_size + 1)):
        block = f"synthesis.b{2 ** log_res}"
        yield f"convs.{2 * k}", f"{block}.conv0", _STYLED_CONV + _UP_BLUR
        yield f"convs.{2 * k + 1}", f"{block}.conv1", _STYLED_CONV
        yield f"to_rgbs.{k}", f"{block}.torgb", _TO_RGB
        yield f"to_rgbs.{k}.upsample", block, _IMG_UPSAMPLE
        yield f"noises.noise_{2 * k + 1}", f"{block}.conv0", _NOISE
        yield f"noises.noise_{2 * k + 2}", f"{block}.conv1", _NOISE


def _join(prefix: str, suffix: str) -> str:
    return f"{prefix}.{suffix}" if suffix else prefix


def rename_table(log_size: int, n_mlp: int) -> dict[str, tuple[str, Convert]]:
    """The rename table: rosinality key -> (NVIDIA key, conversion), for one generator layout."""
    table: dict[str, tuple[str, Convert]] = {}
    for ros_module, nv_module, rows in _module_pairs(log_size, n_mlp):
        for ros_suffix, nv_suffix, convert in rows:
            table[_join(ros_module, ros_suffix)] = (_join(nv_module, nv_suffix), convert)
    return table


@dataclass(frozen=True)
class RosinalityLayout:
    """What the tensor shapes of a rosinality generator say about its architecture."""

    size: int  # output resolution, pixels
    style_dim: int  # width of z and w
    n_mlp: int  # number of mapping linears
    channels: dict[int, int]  # feature channels per block resolution
    img_channels: int  # colour channels of to_rgb


def _require(sd: dict[str, torch.Tensor], key: str, path: str, ndim: int) -> torch.Tensor:
    if key not in sd:
        raise CheckpointError(path, f"missing rosinality generator key {key!r}")
    t = sd[key]
    if not isinstance(t, torch.Tensor) or t.dim() != ndim:
        found = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise CheckpointError(path, f"{key}: expected a {ndim}-d tensor, found {found}")
    return t


def infer_layout(sd: dict[str, torch.Tensor], path: str) -> RosinalityLayout:
    """Read size, style_dim, n_mlp and channels from a rosinality generator's keys and shapes.

    Depth and resolution come from the highest layer index that any key names, so a file that
    lacks a layer's keys is refused for them (to_nvidia_state) instead of being read as a
    smaller network.
    """
    n_mlp = _highest_index(sd, r"style\.(\d+)\.")
    if n_mlp < 1:
        raise CheckpointError(path, "no rosinality generator keys (style.1.weight ...) found; "
                              f"first keys: {', '.join(list(sd)[:5])}")
    style_dim = _require(sd, "style.1.weight", path, 2).shape[1]
    # block k (resolution 2**(k+3)) owns to_rgbs.k, convs.2k / 2k+1 and noises 2k+1 / 2k+2
    n_rgbs = 1 + max(_highest_index(sd, r"to_rgbs\.(\d+)\."),
                     _highest_index(sd, r"convs\.(\d+)\.") // 2,
                     (_highest_index(sd, r"noises\.noise_(\d+)$") - 1) // 2)
    log_size = n_rgbs + 2
    channels = {4: _require(sd, "conv1.conv.weight", path, 5).shape[1]}
    for k in range(n_rgbs):
        channels[2 ** (k + 3)] = _require(sd, f"convs.{2 * k}.conv.weight", path, 5).shape[1]
    img_channels = _require(sd, "to_rgb1.conv.weight", path, 5).shape[1]
    return RosinalityLayout(2 ** log_size, style_dim, n_mlp, channels, img_channels)


def _highest_index(sd: dict[str, torch.Tensor], pattern: str) -> int:
    """The largest integer the regex group captures over the keys (prefix match); -1 if none."""
    regex = re.compile(pattern)
    return max((int(m.group(1)) for k in sd if (m := regex.match(k))), default=-1)


def cfg_from_layout(layout: RosinalityLayout, path: str) -> GeneratorCfg:
    """A GeneratorCfg whose channel rule min(base // res, max) reproduces the file's channels."""
    channel_max = layout.channels[4]
    channel_base = layout.channels[layout.size] * layout.size
    implied = {r: min(channel_base // r, channel_max) for r in layout.channels}
    if implied != layout.channels:
        raise CheckpointError(path, f"channels per resolution {layout.channels} do not follow "
                              "min(channel_base // res, channel_max); unsupported layout")
    return GeneratorCfg(z_dim=layout.style_dim, w_dim=layout.style_dim, img_resolution=layout.size,
                        img_channels=layout.img_channels, mapping_layers=layout.n_mlp,
                        channel_base=channel_base, channel_max=channel_max, conv_clamp=None)


def to_nvidia_state(sd: dict[str, torch.Tensor], layout: RosinalityLayout,
                    path: str, file_prefix: str = "") -> dict[str, torch.Tensor]:
    """Rename and reshape a rosinality generator state_dict to NVIDIA keys (resample filters /4).

    Every key of the layout must be present and no other key (CheckpointError listing them,
    with `file_prefix` as the keys carry it in the file, e.g. "decoder.").
    """
    table = rename_table(int(math.log2(layout.size)), layout.n_mlp)
    check_key_sets(path, [k for k in table if k not in sd], [k for k in sd if k not in table],
                   file_prefix)
    out: dict[str, torch.Tensor] = {}
    for ros_key, (nv_key, convert) in table.items():
        try:
            out[nv_key] = convert(sd[ros_key].detach())
        except ValueError as e:
            raise CheckpointError(path, f"{ros_key}: {e}") from e
    return out
