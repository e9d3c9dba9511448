"""BiSeNet face parser with the module layout of zllrunning/face-parsing.PyTorch.

Loads that repository's `79999_iter.pth` (a plain state_dict written by `torch.save`, keys such as
`cp.resnet.conv1.weight`, `cp.arm16.conv.conv.weight`, `ffm.convblk.conv.weight`,
`conv_out.conv.conv.weight`). The upstream model has no spatial path: the ResNet-18 stride-8
features stand in for it. Its outputs are in face-parsing.PyTorch order; `FaceParser` remaps them.

Every width is a multiple of `base_width` (64 upstream) so that the `tiny` preset is small.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mm2latent.checkpoint_io import load_state_checked, read_torch_checkpoint
from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.face_parser.base import FaceParser
from mm2latent.models.face_parser.labels import BISENET_CLASSES, BISENET_TO_CELEBAMASK_LUT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BiSeNetCfg:
    """BiSeNet face parser; defaults are face-parsing.PyTorch's `79999_iter.pth` setup."""

    n_classes: int = 19  # output classes in face-parsing.PyTorch order; must be 19
    input_size: int = 512  # network input H = W, pixels; images are resized to it
    base_width: int = 64  # ResNet-18 stem channels; stages are 1x, 2x, 4x, 8x this (upstream 64)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet RGB mean, [0, 1] units
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # ImageNet RGB std, [0, 1] units
    align_corners: bool = True  # upstream's final bilinear logit upsample uses align_corners=True
    antialias: bool = True  # antialias when shrinking the input (upstream used PIL BILINEAR)

    def __post_init__(self) -> None:
        if self.n_classes != len(BISENET_CLASSES):
            raise ConfigError(f"BiSeNetCfg.n_classes must be {len(BISENET_CLASSES)} (the label "
                              f"table covers face-parsing.PyTorch's classes), got {self.n_classes}")
        if self.input_size < 32 or self.input_size % 32:
            raise ConfigError(f"BiSeNetCfg.input_size must be a multiple of 32 (>= 32), "
                              f"got {self.input_size}")
        if self.base_width < 4 or self.base_width % 4:
            raise ConfigError(f"BiSeNetCfg.base_width must be a multiple of 4 (>= 4), "
                              f"got {self.base_width}")


class ConvBNReLU(nn.Module):
    """Bias-free conv, BatchNorm, ReLU (upstream names `conv`, `bn`)."""

    def __init__(self, in_chan: int, out_chan: int, ks: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chan, out_chan, ks, stride=1, padding=ks // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, out_chan, H, W)."""
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block; `downsample` (1x1 conv + BN) only where width or stride change."""

    def __init__(self, in_chan: int, out_chan: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chan, out_chan, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chan)
        self.conv2 = nn.Conv2d(out_chan, out_chan, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chan)
        self.downsample: nn.Sequential | None = None
        if in_chan != out_chan or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chan, out_chan, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_chan))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, out_chan, H / stride, W / stride)."""
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _stage(in_chan: int, out_chan: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_chan, out_chan, stride), BasicBlock(out_chan, out_chan, 1))


class Resnet18(nn.Module):
    """ResNet-18 trunk without the classifier; returns stride-8, -16 and -32 features."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _stage(width, width, 1)
        self.layer2 = _stage(width, 2 * width, 2)
        self.layer3 = _stage(2 * width, 4 * width, 2)
        self.layer4 = _stage(4 * width, 8 * width, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 2w, H/8, W/8), (B, 4w, H/16, W/16), (B, 8w, H/32, W/32)."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))  # (B, w, H/4, W/4)
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinementModule(nn.Module):
    """Conv block re-weighted per channel by a sigmoid gate from its global average."""

    def __init__(self, in_chan: int, out_chan: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_chan, out_chan, ks=3)
        self.conv_atten = nn.Conv2d(out_chan, out_chan, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, out_chan, H, W)."""
        feat = self.conv(x)
        atten = feat.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(atten)))


class ContextPath(nn.Module):
    """ResNet-18 plus attention refinement of the stride-16/32 features with a global context."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.resnet = Resnet18(width)
        self.arm16 = AttentionRefinementModule(4 * width, 2 * width)
        self.arm32 = AttentionRefinementModule(8 * width, 2 * width)
        self.conv_head32 = ConvBNReLU(2 * width, 2 * width, ks=3)
        self.conv_head16 = ConvBNReLU(2 * width, 2 * width, ks=3)
        self.conv_avg = ConvBNReLU(8 * width, 2 * width, ks=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stride-8 ResNet features, stride-8 context, stride-16 context (2w channels each)."""
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))  # (B, 2w, 1, 1)
        # upstream upsamples the pooled vector with nearest: the same as broadcasting it
        feat32_sum = self.arm32(feat32) + avg  # (B, 2w, H/32, W/32)
        feat32_up = F.interpolate(feat32_sum, size=feat16.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(feat32_up)  # (B, 2w, H/16, W/16)
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest")
        feat16_up = self.conv_head16(feat16_up)  # (B, 2w, H/8, W/8)
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    """Concatenate two feature maps, mix them, and add a channel-attention-weighted copy."""

    def __init__(self, in_chan: int, out_chan: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_chan, out_chan, ks=1)
        self.conv1 = nn.Conv2d(out_chan, out_chan // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_chan // 4, out_chan, 1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        """(B, out_chan, H, W) from two (B, *, H, W) maps."""
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))  # (B, out_chan, H, W)
        atten = feat.mean(dim=(2, 3), keepdim=True)  # (B, out_chan, 1, 1)
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(atten))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    """3x3 ConvBNReLU then a 1x1 classifier (upstream names `conv`, `conv_out`)."""

    def __init__(self, in_chan: int, mid_chan: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_chan, mid_chan, ks=3)
        self.conv_out = nn.Conv2d(mid_chan, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_classes, H, W)."""
        return self.conv_out(self.conv(x))


class BiSeNet(FaceParser):
    """face-parsing.PyTorch BiSeNet; its state_dict keys equal those of `79999_iter.pth`."""

    def __init__(self, cfg: BiSeNetCfg) -> None:
        super().__init__(BISENET_TO_CELEBAMASK_LUT)
        self.cfg = cfg
        w = cfg.base_width
        self.cp = ContextPath(w)
        self.ffm = FeatureFusionModule(4 * w, 4 * w)
        self.conv_out = BiSeNetOutput(4 * w, 4 * w, cfg.n_classes)
        # auxiliary heads were trained as deep supervision; kept so the file loads strictly
        self.conv_out16 = BiSeNetOutput(2 * w, w, cfg.n_classes)
        self.conv_out32 = BiSeNetOutput(2 * w, w, cfg.n_classes)
        # not persistent: upstream's file holds no normalisation tensors
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1),  # (1, 3, 1, 1)
                             persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1),  # (1, 3, 1, 1)
                             persistent=False)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal (a=1) convs as upstream; BatchNorm at identity."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=1)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
                module.reset_running_stats()

    def forward_net(self, x: torch.Tensor, with_aux: bool = False) -> list[torch.Tensor]:
        """Stride-8 logits [main] (+ [aux16, aux32]) for a normalised (B, 3, S, S) input."""
        feat_res8, feat_cp8, feat_cp16 = self.cp(x)
        outs = [self.conv_out(self.ffm(feat_res8, feat_cp8))]  # (B, 19, S/8, S/8)
        if with_aux:
            outs += [self.conv_out16(feat_cp8), self.conv_out32(feat_cp16)]
        return outs

    def source_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 19, H, W) logits in face-parsing.PyTorch order for RGB [0, 1] images of any size."""
        h, w = images.shape[2:]
        size = self.cfg.input_size
        x = images
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=self.cfg.antialias)  # (B, 3, S, S)
        x = (x - self.mean) / self.std
        logits = self.forward_net(x)[0]  # (B, 19, S/8, S/8)
        # one bilinear step from stride 8 straight to the image size; at H = W = input_size this
        # is exactly upstream's final upsample (align_corners=True)
        return F.interpolate(logits, size=(h, w), mode="bilinear",
                             align_corners=self.cfg.align_corners)  # (B, 19, H, W)


def _read_state_dict(path: str | os.PathLike[str]) -> Mapping[str, torch.Tensor]:
    state = read_torch_checkpoint(path)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise CheckpointError(path, f"expected a plain state_dict of tensors, found "
                              f"{type(state).__name__}.",
                              "Pass face-parsing.PyTorch 79999_iter.pth.")
    return state


def load_bisenet(path: str | os.PathLike[str], cfg: BiSeNetCfg | None = None) -> BiSeNet:
    """A BiSeNet parser in eval mode holding the weights of a face-parsing.PyTorch state_dict file.

    Args:
        path: local `79999_iter.pth` as written by upstream's `torch.save(net.state_dict())`.
        cfg: network config; None = the official one.
    """
    model = BiSeNet(cfg or BiSeNetCfg())
    # BatchNorm counters (num_batches_tracked) may be absent: they do not affect inference
    load_state_checked(model, _read_state_dict(path), path)
    return model.eval()
