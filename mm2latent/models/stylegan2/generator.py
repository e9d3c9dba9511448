"""StyleGAN2 generator (config F, skip architecture) with NVIDIA stylegan2-ada-pytorch naming.

`Generator(cfg).state_dict()` has exactly the keys, shapes and buffers of NVIDIA's
`training.networks.Generator` (c_dim=0, architecture='skip'), so an official `G_ema`
state dict loads strictly and gives the same image. Equalised-learning-rate scaling is
applied at run time, as upstream. The network is for inference and latent optimisation:
`mapping.w_avg` is never updated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mm2latent.dims import LATENT_DIM
from mm2latent.errors import ConfigError
from mm2latent.models.stylegan2 import ops

logger = logging.getLogger(__name__)

NOISE_MODES = ("const", "random", "none")


@dataclass(frozen=True)
class GeneratorCfg:
    """Shape of a StyleGAN2 generator; defaults = NVIDIA FFHQ 1024 config F."""

    z_dim: int = LATENT_DIM  # latent z width
    w_dim: int = LATENT_DIM  # intermediate w width
    img_resolution: int = 1024  # output H = W, pixels, power of two >= 4
    img_channels: int = 3  # output colour channels
    mapping_layers: int = 8  # fully connected layers in the mapping network
    mapping_lr_multiplier: float = 0.01  # equalised-lr multiplier of the mapping layers
    channel_base: int = 32768  # channels at resolution r = min(channel_base // r, channel_max)
    channel_max: int = 512  # upper bound on channels at any resolution
    conv_clamp: float | None = None  # clamp pre-activations to +-conv_clamp (ffhq.pkl: 256); None = off

    def block_resolutions(self) -> list[int]:
        """Resolutions of the synthesis blocks, 4 .. img_resolution."""
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    def channels(self, res: int) -> int:
        """Feature channels of the block at resolution `res`."""
        return min(self.channel_base // res, self.channel_max)

    def __post_init__(self) -> None:
        """Raise ConfigError if a field is out of range (at construction, so presets fail early)."""
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ConfigError(f"img_resolution must be a power of two >= 4; got {r}")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_max"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.channels(r) < 1:
            raise ConfigError(f"channel_base {self.channel_base} gives 0 channels at {r} px; raise it")
        if self.conv_clamp is not None and self.conv_clamp <= 0:
            raise ConfigError(f"conv_clamp must be > 0 or None; got {self.conv_clamp}")


def _check_shape(name: str, t: torch.Tensor, expected: tuple[int | None, ...]) -> None:
    """Raise ValueError naming the first dimension of `t` that differs from `expected` (None = any)."""
    if t.ndim != len(expected):
        raise ValueError(f"{name}: expected {len(expected)} dims {expected}, got shape {tuple(t.shape)}")
    for dim, (got, want) in enumerate(zip(t.shape, expected)):
        if want is not None and got != want:
            raise ValueError(f"{name}: dimension {dim} must be {want}, got {got} (shape {tuple(t.shape)})")


class FullyConnectedLayer(nn.Module):
    """Linear layer with runtime equalised-lr scaling (NVIDIA `FullyConnectedLayer`)."""

    def __init__(self, in_features: int, out_features: int, lrelu: bool = False,
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.lrelu = lrelu
        self.lr_multiplier = lr_multiplier
        self.bias_init = bias_init
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.init_weights()

    def init_weights(self) -> None:
        """N(0, 1/lr_mul^2) weights, constant bias, as upstream."""
        with torch.no_grad():
            self.weight.normal_().div_(self.lr_multiplier)
            self.bias.fill_(self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (N, out)."""
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_multiplier)
        if self.lrelu:
            x = F.leaky_relu(x, ops.LRELU_SLOPE) * ops.LRELU_GAIN
        return x


class MappingNetwork(nn.Module):
    """z -> w: 2nd-moment normalisation then `mapping_layers` lrelu FC layers; holds `w_avg`."""

    def __init__(self, cfg: GeneratorCfg, num_ws: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_ws = num_ws
        for idx in range(cfg.mapping_layers):
            in_features = cfg.z_dim if idx == 0 else cfg.w_dim
            layer = FullyConnectedLayer(in_features, cfg.w_dim, lrelu=True,
                                        lr_multiplier=cfg.mapping_lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.empty(cfg.w_dim))
        self.init_weights()

    def init_weights(self) -> None:
        """Zero `w_avg` (the FC layers initialise themselves)."""
        self.w_avg.zero_()

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """Map z (B, z_dim) to ws (B, num_ws, w_dim), optionally truncated toward w_avg.

        Args:
            z: (B, z_dim) latents.
            truncation_psi: 1 = no truncation, 0 = every w equals w_avg.
            truncation_cutoff: truncate only the first this-many ws; None = all.
        """
        _check_shape("z", z, (None, self.cfg.z_dim))
        x = z.to(torch.float32)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for idx in range(self.cfg.mapping_layers):
            x = getattr(self, f"fc{idx}")(x)
        # A real copy per row (not an expand view), so callers may edit rows of w+ in place.
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # (B, num_ws, w_dim)
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)


def truncate(w: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """w_avg + psi * (w - w_avg) for w (B, w_dim) or (B, num_ws, w_dim); cutoff = first rows only."""
    if cutoff is not None and w.ndim == 2:
        raise ValueError("truncation cutoff selects rows of w+ (B, num_ws, w_dim); a single w "
                         f"{tuple(w.shape)} has none. Pass cutoff=None or a w+ tensor.")
    if psi == 1:
        return w
    if cutoff is None:
        return w_avg.lerp(w, psi)
    head = w_avg.lerp(w[:, :cutoff], psi)  # (B, cutoff, w_dim)
    return torch.cat([head, w[:, cutoff:]], dim=1)  # (B, num_ws, w_dim)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+2x upsampling) + noise + bias + lrelu (NVIDIA `SynthesisLayer`)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 up: int = 1, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        # Same shape and values as upstream, stored so that the conv sees a dense layout it
        # takes without a copy: channels_last (O, 3, 3, I) for the 3x3 conv, and for the
        # transposed conv (weight viewed as (I, O, 3, 3)) the memory order (I, 3, 3, O).
        # load_state_dict copies into it and keeps the layout.
        if up == 1:
            weight = torch.empty(out_channels, in_channels, 3, 3, memory_format=torch.channels_last)
        else:
            weight = torch.empty(in_channels, 3, 3, out_channels).permute(3, 0, 1, 2)  # (O, I, 3, 3)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.noise_strength = nn.Parameter(torch.empty([]))
        self.register_buffer("noise_const", torch.empty(resolution, resolution))
        self.register_buffer("resample_filter", torch.empty(4, 4))
        self.init_weights()

    def init_weights(self) -> None:
        """N(0,1) weights and constant noise, zero bias and noise strength, [1,3,3,1] filter."""
        with torch.no_grad():
            self.weight.normal_()
            self.bias.zero_()
            self.noise_strength.zero_()
            self.noise_const.normal_()
            self.resample_filter.copy_(ops.setup_filter())

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, I, R/up, R/up), w (B, w_dim) -> (B, O, R, R)."""
        styles = self.affine(w)  # (B, I)
        # lrelu(g * y) == g * lrelu(y) for g > 0, so the gain rides on the demodulated weights.
        g = ops.LRELU_GAIN
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up,
                                 resample_filter=self.resample_filter, bias=self.bias * g, gain=g)
        noise = None
        if noise_mode == "const":
            noise = self.noise_const * (self.noise_strength * g)  # (R, R)
        elif noise_mode == "random":
            r = self.resolution
            noise = torch.randn([x.shape[0], 1, r, r], generator=generator, dtype=x.dtype,
                                device=x.device)
            noise = noise.mul_(self.noise_strength * g)  # (B, 1, R, R)
        return ops.noise_lrelu_(x, noise, self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation (NVIDIA `ToRGBLayer`)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.init_weights()

    def init_weights(self) -> None:
        """N(0,1) weights, zero bias."""
        with torch.no_grad():
            self.weight.normal_()
            self.bias.zero_()

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(B, I, R, R), w (B, w_dim) -> (B, img_channels, R, R) contiguous float32."""
        b, i, h, wd = x.shape
        styles = self.affine(w) * self.weight_gain  # (B, I)
        wm = self.weight[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1)  # (B, O, I)
        # channels_last x is (B, H*W, I) in memory: one batched GEMM per sample, no reorder.
        xf = x.permute(0, 2, 3, 1).reshape(b, h * wd, i)  # (B, H*W, I)
        y = torch.baddbmm(self.bias.view(1, 1, -1), xf, wm.transpose(1, 2))  # (B, H*W, O)
        y = y.view(b, h, wd, -1).permute(0, 3, 1, 2).contiguous()  # (B, O, H, W)
        if self.conv_clamp is not None:
            y = y.clamp_(-self.conv_clamp, self.conv_clamp)
        return y


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [const |] conv0 (up) + conv1 + torgb."""

    def __init__(self, cfg: GeneratorCfg, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        out_channels = cfg.channels(resolution)
        self.is_first = resolution == 4
        if self.is_first:
            self.const = nn.Parameter(torch.empty(out_channels, 4, 4))
        else:
            self.conv0 = SynthesisLayer(cfg.channels(resolution // 2), out_channels, cfg.w_dim,
                                        resolution, up=2, conv_clamp=cfg.conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, cfg.w_dim, resolution,
                                    conv_clamp=cfg.conv_clamp)
        self.torgb = ToRGBLayer(out_channels, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp)
        self.register_buffer("resample_filter", torch.empty(4, 4))
        self.num_conv = 1 if self.is_first else 2
        self.init_weights()

    def init_weights(self) -> None:
        """N(0,1) constant input, [1,3,3,1] filter for the image skip path."""
        with torch.no_grad():
            if self.is_first:
                self.const.normal_()
            self.resample_filter.copy_(ops.setup_filter())

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws (B, num_conv + 1, w_dim): conv ws then the torgb w (= next block's first)."""
        if self.is_first:
            b = ws.shape[0]
            x = self.const.unsqueeze(0).expand(b, -1, -1, -1)  # (B, C, 4, 4)
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, generator)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode, generator)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else ops.upsample2d(img, self.resample_filter).add_(y)
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> image (B, img_channels, R, R), skip architecture."""

    def __init__(self, cfg: GeneratorCfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.block_resolutions = cfg.block_resolutions()
        for res in self.block_resolutions:
            setattr(self, f"b{res}", SynthesisBlock(cfg, res))
        self.num_ws = 2 * len(self.block_resolutions)  # 1 + 2 per block after b4 + final torgb
        self.init_weights()

    def init_weights(self) -> None:
        """Nothing of its own: each block initialises itself."""

    def forward(self, ws: torch.Tensor, noise_mode: str = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Render ws to images in [-1, 1] (roughly).

        Args:
            ws: (B, num_ws, w_dim) per-layer latents.
            noise_mode: "const" (stored noise), "random" (fresh noise), "none" (no noise).
            generator: RNG for noise_mode="random"; None = torch's global RNG.
        """
        _check_shape("ws", ws, (None, self.num_ws, self.cfg.w_dim))
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}; got {noise_mode!r}")
        ws = ws.to(torch.float32)
        return self._render(0, None, None, ws, noise_mode, generator)

    def _render(self, first: int, x: torch.Tensor | None, img: torch.Tensor | None,
                ws: torch.Tensor, noise_mode: str, generator: torch.Generator | None
                ) -> torch.Tensor:
        """Run blocks `first`.. on (x, img); ws (B, num_ws, w_dim) -> img (B, C, R, R).

        Low-resolution blocks run as a batch (ops scale the activations there). From the
        first block whose convolutions modulate the weights, each sample continues on its
        own: that path convolves one sample at a time, and splitting here avoids
        re-concatenating every layer's output.
        """
        for idx in range(first, len(self.block_resolutions)):
            block = getattr(self, f"b{self.block_resolutions[idx]}")
            if x is not None and x.shape[0] > 1 and not ops.scales_activations(x[:1], block.conv0.weight):
                parts = [self._render(idx, x[i : i + 1], img[i : i + 1], ws[i : i + 1], noise_mode, generator)
                         for i in range(x.shape[0])]
                return torch.cat(parts, dim=0)  # (B, C, R, R)
            start = max(2 * idx - 1, 0)
            x, img = block(x, img, ws[:, start : start + block.num_conv + 1], noise_mode, generator)
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: `mapping` (z -> ws) then `synthesis` (ws -> image)."""

    def __init__(self, cfg: GeneratorCfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg, self.num_ws)
        self.init_weights()

    def init_weights(self) -> None:
        """Nothing of its own: submodules initialise themselves (upstream init)."""

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate images (B, img_channels, R, R) from z (B, z_dim).

        Args:
            z: (B, z_dim) latents.
            truncation_psi: 1 = no truncation, 0 = the average face.
            truncation_cutoff: truncate only the first this-many ws; None = all.
            noise_mode: "const", "random" or "none".
            generator: RNG for noise_mode="random".
        """
        ws = self.mapping(z, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, generator=generator)

    def truncate(self, w: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """Move w (B, w_dim) or w+ (B, num_ws, w_dim) toward `mapping.w_avg` by factor psi.

        Args:
            w: single w or w+ latents.
            psi: 1 = unchanged, 0 = w_avg.
            cutoff: for w+, truncate only the first this-many rows; None = all.
        """
        self._check_w(w)
        return truncate(w, self.mapping.w_avg, psi, cutoff)

    def synthesize_from_w(self, w: torch.Tensor, noise_mode: str = "const",
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """Render w (B, w_dim), broadcast to all layers, or w+ (B, num_ws, w_dim).

        Args:
            w: latents in W or W+.
            noise_mode: "const", "random" or "none".
            generator: RNG for noise_mode="random".
        """
        self._check_w(w)
        if w.ndim == 2:
            w = w.unsqueeze(1).expand(-1, self.num_ws, -1)  # (B, num_ws, w_dim)
        return self.synthesis(w, noise_mode=noise_mode, generator=generator)

    def _check_w(self, w: torch.Tensor) -> None:
        """Accept (B, w_dim) or (B, num_ws, w_dim), else ValueError naming the dimension."""
        if w.ndim == 2:
            _check_shape("w", w, (None, self.cfg.w_dim))
        else:
            _check_shape("w", w, (None, self.num_ws, self.cfg.w_dim))
