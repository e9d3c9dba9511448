"""DECA's coarse encoder E_flame: a ResNet-50 trunk and an MLP regressing 236 FLAME parameters.

Reimplemented from the published architecture (DECA, Feng et al. 2021; `ResnetEncoder` in
decalib/models/encoders.py and resnet.py) so that the official `deca_model.tar` loads with its
own key names (`encoder.conv1.weight`, `encoder.layer1.0.conv2.weight`, ..., `layers.0.weight`,
`layers.2.weight`).

Architecture facts matched here: torchvision-style ResNet-50 ([3, 4, 6, 3] bottlenecks, stride
on the 3x3 conv, BatchNorm eps 1e-5) without the classifier, AvgPool2d(7, stride 1) on the 7x7
last map (so the input must be 224 x 224), RGB in [0, 1] with no mean/std; regressor
Linear(2048, 1024) - ReLU - Linear(1024, 236). The 236-d code is split in DECA's
`param_list` order: shape 100, tex 50, exp 50, pose 6, cam 3, light 27 (light as 9 x 3).

`deca_model.tar` is a `torch.save` of {'E_flame': state_dict, 'E_detail': ..., 'D_detail': ...}
(training checkpoints add 'opt', 'global_step', 'batch_size'); only 'E_flame' is read.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mm2latent.checkpoint_io import describe_container, load_state_checked, read_torch_checkpoint
from mm2latent.config_utils import require_positive
from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.image_checks import check_rgb_images

logger = logging.getLogger(__name__)

RESNET50_BLOCKS = (3, 4, 6, 3)  # bottlenecks per stage, fixed by DECA's ResNet-50
BOTTLENECK_EXPANSION = 4  # output channels = 4 x bottleneck width
FLAME159_ORDER = ("shape", "exp", "pose", "cam")  # the concatenation order of `flame159`

# Fixed DECA crop for FFHQ-aligned faces, as fractions of the aligned image side (x right,
# y down). Derivation: place the dlib 68-point mean face (OpenFace template) with FFHQ's
# alignment rule (eyes 1/4 of the side apart, quad centre = eye midpoint + 0.1 eye-to-mouth),
# which puts the eyes at (0.375, 0.473), (0.625, 0.473) and the mouth at (0.500, 0.745). Its
# landmark box is x 0.213..0.796, y 0.382..0.953; DECA's rule (bbox2point 'kpt68': side =
# mean(w, h) x 1.1, centre = box centre; then x 1.25) gives a square of side 0.794 centred at
# (0.505, 0.668). The x centre is set to 0.5 (FFHQ faces are centred; the template is 0.5 %
# asymmetric). The square runs past the bottom edge; DECA's warp fills outside with 0.
FFHQ_DECA_CROP_CENTER = (0.5, 0.668)  # (x, y), fraction of the aligned image side
FFHQ_DECA_CROP_SIZE = 0.794  # square side, fraction of the aligned image side


@dataclass(frozen=True)
class DecaCfg:
    """Architecture of E_flame; the default is the official DECA release."""

    base_width: int = 64  # channels of conv1 and of the first stage's bottlenecks; 64 = ResNet-50
    regressor_width: int = 1024  # hidden units of the 2-layer regressor
    img_size: int = 224  # input H = W, pixels; fixed: AvgPool2d(7) needs a 7x7 last map
    n_shape: int = 100  # FLAME identity shape coefficients
    n_tex: int = 50  # albedo (texture) coefficients
    n_exp: int = 50  # FLAME expression coefficients
    n_pose: int = 6  # global head rotation (3, axis-angle) + jaw rotation (3)
    n_cam: int = 3  # weak-perspective camera: scale, tx, ty
    n_light: int = 27  # spherical-harmonics lighting: 9 bands x RGB
    bn_eps: float = 1e-5  # BatchNorm epsilon, torch default as in DECA

    def __post_init__(self) -> None:
        require_positive(self, ("base_width", "regressor_width", "n_shape", "n_tex", "n_exp",
                                "n_pose", "n_cam", "n_light"))
        if self.img_size != 224:
            raise ConfigError(f"DecaCfg.img_size must be 224 (AvgPool2d(7) after a stride "
                              f"of 32), got {self.img_size}.")

    @property
    def feature_dim(self) -> int:
        """Width of the pooled trunk feature (2048 for ResNet-50)."""
        return self.base_width * 8 * BOTTLENECK_EXPANSION

    @property
    def code_sizes(self) -> dict[str, int]:
        """Code slices in DECA's param_list order: shape, tex, exp, pose, cam, light."""
        return {"shape": self.n_shape, "tex": self.n_tex, "exp": self.n_exp,
                "pose": self.n_pose, "cam": self.n_cam, "light": self.n_light}

    @property
    def code_dim(self) -> int:
        """Regressor output width (236 for DECA)."""
        return sum(self.code_sizes.values())

    @property
    def flame159_dim(self) -> int:
        """Width of the shape+exp+pose+cam vector (159 for DECA)."""
        return self.n_shape + self.n_exp + self.n_pose + self.n_cam


@dataclass(frozen=True)
class FlameCode:
    """E_flame's output split into FLAME parameter groups (DECA `decompose_code`)."""

    shape: torch.Tensor  # (B, n_shape)
    tex: torch.Tensor  # (B, n_tex)
    exp: torch.Tensor  # (B, n_exp)
    pose: torch.Tensor  # (B, n_pose)
    cam: torch.Tensor  # (B, n_cam)
    light: torch.Tensor  # (B, n_light // 3, 3), as DECA reshapes it

    @property
    def flame159(self) -> torch.Tensor:
        """Concatenation [shape, exp, pose, cam] (tex and light dropped), (B, 159)."""
        return torch.cat([getattr(self, name) for name in FLAME159_ORDER], dim=1)


class Bottleneck(nn.Module):
    """torchvision v1.5 bottleneck: 1x1 -> 3x3 (carries the stride) -> 1x1 (x4), residual."""

    def __init__(self, in_ch: int, width: int, stride: int, eps: float) -> None:
        super().__init__()
        out_ch = width * BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=eps)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=eps)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=eps)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch, eps=eps),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_ch, H, W) -> (B, 4 width, H / stride, W / stride)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet50Trunk(nn.Module):
    """ResNet-50 without its classifier; returns the 7x7-average-pooled feature."""

    def __init__(self, cfg: DecaCfg) -> None:
        super().__init__()
        w = cfg.base_width
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w, eps=cfg.bn_eps)
        in_ch = w
        for i, n_blocks in enumerate(RESNET50_BLOCKS):
            width = w * 2**i
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Bottleneck(in_ch, width, stride, cfg.bn_eps))
                in_ch = width * BOTTLENECK_EXPANSION
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, 32 base_width)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        for i in range(len(RESNET50_BLOCKS)):
            x = getattr(self, f"layer{i + 1}")(x)
        x = F.avg_pool2d(x, kernel_size=7, stride=1)  # (B, C, 1, 1) for a 224 input
        return x.flatten(1)  # (B, C)


class FlameEncoder(nn.Module):
    """DECA's E_flame: images in [0, 1] at 224 px -> 236 FLAME/camera/light parameters."""

    def __init__(self, cfg: DecaCfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ResNet50Trunk(cfg)
        self.layers = nn.Sequential(
            nn.Linear(cfg.feature_dim, cfg.regressor_width),
            nn.ReLU(),
            nn.Linear(cfg.regressor_width, cfg.code_dim),
        )
        self.init_weights()

    def init_weights(self) -> None:
        """DECA's ResNet init (conv N(0, 2 / (k^2 out)), BN 1/0); torch default for the MLP."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw 236-d code for cropped faces.

        Args:
            images: (B, 3, 224, 224) RGB in [0, 1] (no mean/std), e.g. from ffhq_crop_for_deca.
        """
        check_rgb_images(images, size=self.cfg.img_size, hint=" Crop with ffhq_crop_for_deca.")
        return self.layers(self.encoder(images))  # (B, code_dim)

    def encode(self, images: torch.Tensor) -> FlameCode:
        """Code split into shape/tex/exp/pose/cam/light.

        Args:
            images: (B, 3, 224, 224) RGB in [0, 1].
        """
        return split_code(self(images), self.cfg)

    def flame159(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 159) = [shape 100, exp 50, pose 6, cam 3] of the code.

        Args:
            images: (B, 3, 224, 224) RGB in [0, 1].
        """
        return self.encode(images).flame159


def split_code(code: torch.Tensor, cfg: DecaCfg) -> FlameCode:
    """Split a (B, code_dim) code in DECA's param_list order.

    Args:
        code: (B, 236) regressor output.
        cfg: the sizes of each group.
    """
    if code.ndim != 2 or code.shape[1] != cfg.code_dim:
        raise ValueError(f"code must be (B, {cfg.code_dim}), got {tuple(code.shape)}.")
    parts = dict(zip(cfg.code_sizes, torch.split(code, list(cfg.code_sizes.values()), dim=1),
                     strict=True))
    light = parts.pop("light").reshape(code.shape[0], -1, 3)  # (B, 9, 3)
    return FlameCode(light=light, **parts)


def ffhq_crop_for_deca(images: torch.Tensor, out_size: int = 224) -> torch.Tensor:
    """Fixed DECA-style square crop of FFHQ-aligned faces, resized to `out_size`.

    Uses FFHQ_DECA_CROP_CENTER / FFHQ_DECA_CROP_SIZE (derivation in the module comment) in
    place of DECA's face detector. Like DECA's skimage warp, the crop's corner pixels map to
    the output's corner pixel centres, sampling is bilinear and outside the image is 0. The
    image is first resized with antialiasing so the bilinear warp is close to 1:1 (DECA warps
    without a low-pass; a 1024 px generator image would alias).

    Args:
        images: (B, 3, H, W) RGB in [0, 1], FFHQ-aligned, H == W (any size).
        out_size: output side in pixels (224 for E_flame).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}.")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be square (FFHQ-aligned), got H={images.shape[2]}, "
                         f"W={images.shape[3]}.")
    # Bring the crop to about out_size source pixels so bilinear sampling does not alias.
    target = max(round(out_size / FFHQ_DECA_CROP_SIZE), 1)
    if images.shape[2] > target:
        images = F.interpolate(images, size=(target, target), mode="bilinear",
                               align_corners=False, antialias=True)
    side = images.shape[2]
    # Crop box in source pixel-index coordinates; pixel k's centre is at k.
    size_px = FFHQ_DECA_CROP_SIZE * side
    cx, cy = (c * side - 0.5 for c in FFHQ_DECA_CROP_CENTER)
    steps = torch.linspace(-size_px / 2, size_px / 2, out_size, dtype=images.dtype,
                           device=images.device)
    # Normalised coordinates for align_corners=True: -1 = pixel 0, +1 = pixel side - 1.
    gx = (cx + steps) * 2 / (side - 1) - 1
    gy = (cy + steps) * 2 / (side - 1) - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)  # (S, S, 2) x,y
    grid = grid.unsqueeze(0).expand(images.shape[0], -1, -1, -1)  # (B, S, S, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)  # (B, 3, S, S)


def flame_encoder_from_checkpoint(
    checkpoint: Any, path: str | os.PathLike[str], cfg: DecaCfg | None = None
) -> FlameEncoder:
    """Build a FlameEncoder from an already-read `deca_model.tar` object.

    Args:
        checkpoint: the object torch.load returned.
        path: where it came from (for messages).
        cfg: architecture; None = the official DECA release.
    """
    cfg = cfg or DecaCfg()
    if not isinstance(checkpoint, dict) or "E_flame" not in checkpoint:
        raise CheckpointError(path, f"no 'E_flame' entry (found {describe_container(checkpoint)}).",
                              "Expected DECA's deca_model.tar: a dict with 'E_flame', "
                              "'E_detail', 'D_detail'.")
    state = checkpoint["E_flame"]
    if not isinstance(state, dict):
        raise CheckpointError(path, f"'E_flame' is a {type(state).__name__}, not a state dict.")
    model = FlameEncoder(cfg)
    load_state_checked(model, state, path, file_prefix="E_flame.")
    return model.eval()


def load_deca_flame_encoder(
    path: str | os.PathLike[str], cfg: DecaCfg | None = None
) -> FlameEncoder:
    """Load E_flame from DECA's `deca_model.tar` (zip or legacy torch format), in eval mode.

    Args:
        path: local path of deca_model.tar.
        cfg: architecture; None = the official DECA release.
    """
    return flame_encoder_from_checkpoint(read_torch_checkpoint(path), path, cfg)
