"""e4e (Encoder4Editing) image -> W+ encoder: IR-SE50 backbone, FPN and gradual style blocks.

Reimplemented from the published architecture (Tov et al. 2021, "Designing an Encoder for
StyleGAN Image Manipulation"; models/encoders/psp_encoders.py and helpers.py of
omertov/encoder4editing) so that the official `e4e_ffhq_encode.pt` loads with its own key
names (`input_layer.0.weight`, `body.N.res_layer.M...`, `body.N.shortcut_layer...`,
`styles.N.convs.M...`, `styles.N.linear.weight`, `latlayer1.weight`, `latlayer2.weight`).

Structure matched here:
- input layer conv3x3 (no bias) + BN + PReLU (per channel); 24 bottleneck_IR_SE body blocks in
  stages of 3, 4, 14, 3 with depths 64, 128, 256, 512, each stage's first block strided by 2;
  a block is BN, conv3x3, PReLU, conv3x3 (stride), BN, SE (reduction 16, 1x1 convs without
  bias); the shortcut is MaxPool2d(1, stride) when in == out channels, else conv1x1 + BN.
- features c1, c2, c3 after body blocks 6, 20, 23 (strides 4, 8, 16 of the input);
  p2 = up(c3) + latlayer1(c2), p1 = up(p2) + latlayer2(c1), bilinear, align_corners=True.
- style i reads c3 for i < 3, p2 for i < 7, p1 otherwise; each GradualStyleBlock halves the
  map with stride-2 conv3x3 + LeakyReLU(0.01) down to 1x1, then an EqualLinear (weight x
  1/sqrt(in), lr_mul 1).
- e4e: w = style0(c3) repeated for every style, plus delta_i = style_i(...) for i >= 1 (all
  deltas at inference, the ProgressiveStage.Inference setting); w+ = w + latent_avg.
- input resized to 256 and normalised with mean = std = 0.5.

The checkpoint is a torch.save of {'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg':
(18, 512), 'opts': ...}. In omertov/encoder4editing `opts` is `vars(opts)` (a plain dict);
other pSp-family files store an argparse.Namespace, which is admitted for the load call only.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mm2latent.checkpoint_io import (check_key_sets, describe_container, load_state_checked,
                                     read_torch_checkpoint)
from mm2latent.config_utils import require_positive
from mm2latent.dims import LATENT_DIM
from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.image_checks import check_rgb_images
from mm2latent.models.stylegan2.generator import FullyConnectedLayer

logger = logging.getLogger(__name__)

IR50_UNITS = (3, 4, 14, 3)  # body blocks per stage (IR-SE50)
FEATURE_BLOCKS = (6, 20, 23)  # body indices whose outputs are c1, c2, c3
COARSE_END, MIDDLE_END = 3, 7  # styles [0, 3) read c3, [3, 7) read p2, the rest p1
STYLE_LRELU_SLOPE = 0.01  # nn.LeakyReLU() default, as in GradualStyleBlock


@dataclass(frozen=True)
class E4ECfg:
    """Architecture of the e4e encoder; the default is the official FFHQ 1024 release."""

    stylegan_size: int = 1024  # generator resolution, px; n_styles = 2 log2(size) - 2 (18)
    w_dim: int = LATENT_DIM  # width of one w (style block output)
    style_width: int | None = None  # channels of the style blocks' convs; None = w_dim (upstream)
    base_width: int = 64  # depth of the first IR-SE stage; stages are x1, x2, x4, x8 of it
    input_size: int = 256  # encoder input H = W, px; images are resized to it
    se_reduction: int = 16  # squeeze-excitation channel reduction
    bn_eps: float = 1e-5  # BatchNorm epsilon (torch default, as upstream)

    def __post_init__(self) -> None:
        require_positive(self, ("stylegan_size", "w_dim", "base_width", "input_size",
                                "se_reduction"))
        if self.style_width is not None:
            require_positive(self, ("style_width",))
        for name in ("stylegan_size", "input_size"):
            value = getattr(self, name)
            if value < 32 or value & (value - 1):
                raise ConfigError(f"E4ECfg.{name} must be a power of two >= 32, got {value}.")
        if self.base_width < self.se_reduction:
            raise ConfigError(f"E4ECfg.base_width ({self.base_width}) must be >= "
                              f"se_reduction ({self.se_reduction}): the SE bottleneck would "
                              "have no channels.")

    @property
    def n_styles(self) -> int:
        """Rows of w+ (18 at 1024 px)."""
        return 2 * int(math.log2(self.stylegan_size)) - 2

    @property
    def style_channels(self) -> int:
        """Conv width inside each GradualStyleBlock (512 upstream, = w_dim)."""
        return self.w_dim if self.style_width is None else self.style_width

    @property
    def stage_depths(self) -> tuple[int, ...]:
        """Output channels of the four IR-SE stages (64, 128, 256, 512)."""
        return tuple(self.base_width * 2**i for i in range(len(IR50_UNITS)))


class SEModule(nn.Module):
    """Squeeze-excitation: x * sigmoid(fc2(relu(fc1(avgpool(x))))), 1x1 convs, no bias."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), each channel scaled by a gate in (0, 1)."""
        gate = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(gate))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """IR-SE unit: res_layer(x) + shortcut(x), stride on the second 3x3 conv."""

    def __init__(self, in_ch: int, depth: int, stride: int, cfg: E4ECfg) -> None:
        super().__init__()
        if in_ch == depth:
            # 1x1 max-pool with a stride is plain subsampling: keep every stride-th pixel.
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_ch, depth, 1, stride, bias=False),
                nn.BatchNorm2d(depth, eps=cfg.bn_eps),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch, eps=cfg.bn_eps),
            nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth, eps=cfg.bn_eps),
            SEModule(depth, cfg.se_reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_ch, H, W) -> (B, depth, H / stride, W / stride)."""
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """log2(spatial) stride-2 conv3x3 + LeakyReLU(0.01) down to 1x1, then EqualLinear."""

    def __init__(self, in_ch: int, out_ch: int, spatial: int, w_dim: int | None = None) -> None:
        super().__init__()
        self.spatial = spatial
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, 2, 1),
                       nn.LeakyReLU(STYLE_LRELU_SLOPE)]
        self.convs = nn.Sequential(*layers)
        # rosinality's EqualLinear is NVIDIA's FullyConnectedLayer without activation (same keys).
        self.linear = FullyConnectedLayer(out_ch, out_ch if w_dim is None else w_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_ch, spatial, spatial) -> (B, w_dim)."""
        if x.shape[-2:] != (self.spatial, self.spatial):
            raise ValueError(f"style block expects a {self.spatial}x{self.spatial} map, "
                             f"got {tuple(x.shape[-2:])}.")
        x = self.convs(x)  # (B, out_ch, 1, 1)
        return self.linear(x.flatten(1))  # (B, w_dim)


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners=True) resize of `top` to `lateral`'s size, plus `lateral`."""
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear",
                         align_corners=True) + lateral


class Encoder4Editing(nn.Module):
    """The e4e network: normalised (B, 3, 256, 256) -> codes (B, n_styles, w_dim)."""

    def __init__(self, cfg: E4ECfg) -> None:
        super().__init__()
        self.cfg = cfg
        depths = cfg.stage_depths
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, cfg.base_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cfg.base_width, eps=cfg.bn_eps),
            nn.PReLU(cfg.base_width),
        )
        blocks, in_ch = [], cfg.base_width
        for depth, units in zip(depths, IR50_UNITS, strict=True):
            for j in range(units):
                blocks.append(BottleneckIRSE(in_ch, depth, 2 if j == 0 else 1, cfg))
                in_ch = depth
        self.body = nn.Sequential(*blocks)
        top = depths[-1]
        c3_size = cfg.input_size // 16  # c1, c2, c3 have strides 4, 8, 16
        self.styles = nn.ModuleList()
        for i in range(cfg.n_styles):
            level = 0 if i < COARSE_END else (1 if i < MIDDLE_END else 2)
            self.styles.append(GradualStyleBlock(top, cfg.style_channels, c3_size * 2**level,
                                                 cfg.w_dim))
        self.latlayer1 = nn.Conv2d(depths[2], top, 1)
        self.latlayer2 = nn.Conv2d(depths[1], top, 1)
        self.init_weights()

    def init_weights(self) -> None:
        """Torch defaults for convs, BN 1/0, PReLU 0.25; style linears N(0, 1) weights, 0 bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.PReLU):
                m.reset_parameters()
            elif isinstance(m, FullyConnectedLayer):
                m.init_weights()

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Body outputs after blocks 6, 20, 23: c1 (stride 4), c2 (stride 8), c3 (stride 16)."""
        x = self.input_layer(x)
        taps = []
        for i, block in enumerate(self.body):
            x = block(x)
            if i in FEATURE_BLOCKS:
                taps.append(x)
        c1, c2, c3 = taps
        return c1, c2, c3

    def forward(self, x: torch.Tensor, stage: int | None = None) -> torch.Tensor:
        """Codes relative to latent_avg, (B, n_styles, w_dim).

        Args:
            x: (B, 3, input_size, input_size) normalised to [-1, 1].
            stage: e4e progressive stage: deltas 1..stage are added; None = all (inference).
        """
        size = self.cfg.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise ValueError(f"x must be (B, 3, {size}, {size}), got {tuple(x.shape)}; "
                             "use E4EEncoder.invert for raw images.")
        n = self.cfg.n_styles
        last = n - 1 if stage is None else min(stage, n - 1)
        c1, c2, c3 = self.features(x)
        w0 = self.styles[0](c3)  # (B, w_dim)
        rows = [w0] * n
        feats = c3
        for i in range(1, last + 1):
            if i == COARSE_END:
                p2 = _upsample_add(c3, self.latlayer1(c2))
                feats = p2
            elif i == MIDDLE_END:
                feats = _upsample_add(p2, self.latlayer2(c1))
            rows[i] = w0 + self.styles[i](feats)
        return torch.stack(rows, dim=1)  # (B, n_styles, w_dim)


class E4EEncoder(nn.Module):
    """Images in [0, 1] -> W+ latents of the StyleGAN2 generator e4e was trained with."""

    def __init__(self, cfg: E4ECfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder4Editing(cfg)
        self.register_buffer("latent_avg", torch.zeros(cfg.n_styles, cfg.w_dim))
        self.init_weights()

    def init_weights(self) -> None:
        """Zero latent_avg (a loaded checkpoint supplies the generator's average w)."""
        nn.init.zeros_(self.latent_avg)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] (B, 3, H, W) -> (B, 3, input_size, input_size) in [-1, 1] (mean = std = 0.5).

        Args:
            images: (B, 3, H, W) RGB in [0, 1].
        """
        check_rgb_images(images)
        size = self.cfg.input_size
        if images.shape[-2:] != (size, size):
            # upstream resizes with torchvision Resize on PIL images: bilinear, antialiased
            images = F.interpolate(images, size=(size, size), mode="bilinear",
                                   align_corners=False, antialias=True)
        return (images - 0.5) / 0.5

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Same as invert."""
        return self.invert(images)

    def invert(self, images: torch.Tensor) -> torch.Tensor:
        """W+ = encoder codes + latent_avg, (B, n_styles, w_dim).

        Args:
            images: (B, 3, H, W) RGB in [0, 1]; resized to input_size (256).
        """
        codes = self.encoder(self.preprocess(images))  # (B, n_styles, w_dim)
        return codes + self.latent_avg.unsqueeze(0)  # (B, n_styles, w_dim)


def e4e_encoder_from_checkpoint(
    checkpoint: Any, path: str | os.PathLike[str], cfg: E4ECfg | None = None
) -> E4EEncoder:
    """Build an E4EEncoder from an already-read e4e checkpoint object.

    Args:
        checkpoint: the object torch.load returned ({'state_dict', 'latent_avg', 'opts'}).
        path: where it came from (for messages).
        cfg: architecture; None = the official FFHQ 1024 release.
    """
    cfg = cfg or E4ECfg()
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        found = describe_container(checkpoint)
        raise CheckpointError(path, f"no 'state_dict' dict (found {found}).",
                              "Expected an e4e/pSp checkpoint such as e4e_ffhq_encode.pt.")
    file_state = checkpoint["state_dict"]
    # The generator ('decoder.*') is loaded by the StyleGAN2 loader; take the encoder only.
    state = {k: v for k, v in file_state.items() if k.startswith("encoder.")}
    if "latent_avg" in checkpoint:
        state["latent_avg"] = checkpoint["latent_avg"]
    check_key_sets(path, [], [k for k in file_state if not k.startswith(("encoder.", "decoder."))])
    model = E4EEncoder(cfg)
    load_state_checked(model, state, path)
    return model.eval()


def load_e4e_encoder(path: str | os.PathLike[str], cfg: E4ECfg | None = None) -> E4EEncoder:
    """Load the e4e encoder and latent_avg from `e4e_ffhq_encode.pt`, in eval mode.

    Args:
        path: local path of the checkpoint.
        cfg: architecture; None = the official FFHQ 1024 release.
    """
    checkpoint = read_torch_checkpoint(path, safe_globals=[argparse.Namespace])
    return e4e_encoder_from_checkpoint(checkpoint, path, cfg)
