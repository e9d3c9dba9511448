"""StyleGAN2 low-level ops: FIR resampling, modulated convolution, fused bias + activation.

Semantics follow NVIDIA stylegan2-ada-pytorch (`upfirdn2d`, `conv2d_resample`,
`modulated_conv2d`, `bias_act`) so that the same tensors give the same image, but the
implementation is our own and tuned for the CPU:

- activations are kept in channels_last, which lets oneDNN convolve without reordering;
- the per-sample modulated weights go through one grouped convolution (batch folded
  into the groups), with the activation gain folded into the demodulation coefficients;
- the 2x upsampling conv is a stride-2 transposed conv followed by one depthwise blur that
  also adds the bias, and noise, leaky ReLU and clamp are applied in place, because on
  the CPU each fresh large tensor costs page faults comparable to the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2  # leaky ReLU negative slope used throughout StyleGAN2
LRELU_GAIN = math.sqrt(2.0)  # gain that keeps the activation variance of lrelu at ~1
DEMOD_EPS = 1e-8  # added to the squared weight norm before rsqrt, as in NVIDIA

Padding = int | Sequence[int]


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """A normalised 2-D FIR filter (outer product of `taps`, summing to 1), float32."""
    t = torch.as_tensor(list(taps), dtype=torch.float32)
    f = torch.outer(t, t)  # (k, k)
    return f / f.sum()


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """Padding as (x0, x1, y0, y1) from an int, (x, y) or (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    p = [int(v) for v in padding]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"padding must be an int, (x, y) or (x0, x1, y0, y1); got {padding!r}")


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = 1.0,
) -> torch.Tensor:
    """Zero-insert upsample by `up`, pad (negative = crop), convolve with `f`, keep every `down`th pixel.

    Args:
        x: (B, C, H, W) float tensor.
        f: (kh, kw) FIR filter, applied as a true convolution (flipped), times `gain`.
        up: integer upsampling factor (zeros inserted after each pixel).
        down: integer downsampling factor.
        padding: padding of the upsampled image, int, (x, y) or (x0, x1, y0, y1).
        gain: overall scale of the result.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be (B, C, H, W); got shape {tuple(x.shape)}")
    if f.ndim != 2:
        raise ValueError(f"upfirdn2d: f must be 2-D (kh, kw); got shape {tuple(f.shape)}")
    b, c, h, w = x.shape
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        z = torch.empty((b, c, h * up, w * up), dtype=x.dtype, device=x.device,
                        memory_format=_memory_format(x)).zero_()
        z[:, :, ::up, ::up] = x  # (B, C, H*up, W*up), zeros between samples
        x = z
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    # conv2d correlates, so flip the filter to convolve.
    k = (f.flip([0, 1]) * gain).to(x.dtype)
    k = k[None, None].expand(c, 1, *f.shape).contiguous()  # (C, 1, kh, kw) depthwise
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample (B, C, H, W) -> (B, C, H*up, W*up) with FIR filter `f` and DC gain preserved."""
    kh, kw = f.shape
    pad = [(kw + up - 1) // 2, (kw - up) // 2, (kh + up - 1) // 2, (kh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """Downsample (B, C, H, W) -> (B, C, H/down, W/down) after low-pass filtering with `f`."""
    kh, kw = f.shape
    pad = [(kw - down + 1) // 2, (kw - down) // 2, (kh - down + 1) // 2, (kh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=pad)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last if `x` is stored that way, else contiguous."""
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def modulation_coefficients(
    weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, gain: float = 1.0
) -> torch.Tensor:
    """Per-sample weights weight * styles (* demodulation) * gain: (B, O, I, kh, kw)."""
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]  # (B, O, I, kh, kw)
    if demodulate:
        d = (w.square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt()  # (B, O)
        w = w * (d * gain)[:, :, None, None, None]
    elif gain != 1.0:
        w = w * gain
    return w


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    gain: float = 1.0,
) -> torch.Tensor:
    """Modulated (optionally demodulated, optionally 2x-upsampling) 'same' convolution.

    Equals, per sample b, conv2d(x[b], weight * styles[b] (* demod[b])) * gain + bias,
    with NVIDIA's stride-2 transposed conv plus FIR blur when up == 2.

    Args:
        x: (B, I, H, W) input activations.
        weight: (O, I, k, k) unscaled convolution weight, k odd.
        styles: (B, I) per-sample input-channel scales.
        demodulate: normalise each output filter to unit L2 norm (per sample).
        up: 1 (same resolution) or 2 (output 2H x 2W; needs `resample_filter`).
        resample_filter: (kh, kw) FIR filter for the upsampling blur.
        bias: (O,) added after the convolution (and blur), not scaled by `gain`.
        gain: scale applied to the convolution result (folded into the weights).
    """
    b, i, h, w_ = x.shape
    o, _, kh, kw = weight.shape
    wm = modulation_coefficients(weight, styles, demodulate, gain)  # (B, O, I, kh, kw)
    xg = x.reshape(1, b * i, h, w_)  # (1, B*I, H, W): batch folded into conv groups
    bias_g = bias.repeat(b) if bias is not None else None  # (B*O,)
    if up == 1:
        wg = wm.reshape(b * o, i, kh, kw).to(memory_format=torch.channels_last)  # (B*O, I, k, k)
        y = F.conv2d(xg, wg, bias=bias_g, padding=(kh // 2, kw // 2), groups=b)
        return y.reshape(b, o, *y.shape[2:])  # (B, O, H, W)
    if up != 2 or resample_filter is None:
        raise ValueError(f"modulated_conv2d: up must be 1, or 2 with a resample_filter; got up={up}")
    # Transposed conv weight layout is (in, out/groups, k, k) per group.
    wt = wm.transpose(1, 2).reshape(b * i, o, kh, kw).to(memory_format=torch.channels_last)  # (B*I, O, k, k)
    y = F.conv_transpose2d(xg, wt, stride=2, groups=b)  # (1, B*O, 2H+k-2, 2W+k-2)
    fh, fw = resample_filter.shape
    # NVIDIA pads the 2H+k-2 transposed-conv output so that the blur returns exactly 2H.
    py0 = (fh + 1) // 2 + kh // 2 - (kh - 1)
    py1 = (fh - 2) // 2 + kh // 2 - (kh - 2)
    px0 = (fw + 1) // 2 + kw // 2 - (kw - 1)
    px1 = (fw - 2) // 2 + kw // 2 - (kw - 2)
    y = blur2d(y, resample_filter, (px0, px1, py0, py1), gain=4.0, bias=bias_g)
    return y.reshape(b, o, *y.shape[2:])  # (B, O, 2H, 2W)


def blur2d(
    x: torch.Tensor,
    f: torch.Tensor,
    padding: tuple[int, int, int, int],
    gain: float = 1.0,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depthwise FIR convolution of (B, C, H, W) with zero padding (x0, x1, y0, y1) and optional bias."""
    c = x.shape[1]
    px0, px1, py0, py1 = padding
    k = (f.flip([0, 1]) * gain).to(x.dtype)
    k = k[None, None].expand(c, 1, *f.shape).contiguous(memory_format=torch.channels_last)  # (C, 1, kh, kw)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        # Symmetric padding: let the convolution pad, avoiding a padded copy.
        return F.conv2d(x, k, bias=bias, padding=(py0, px0), groups=c)
    x = F.pad(x, [px0, px1, py0, py1])
    return F.conv2d(x, k, bias=bias, groups=c)


def noise_lrelu_(
    x: torch.Tensor, noise: torch.Tensor | None, clamp: float | None
) -> torch.Tensor:
    """In place: x += noise; leaky ReLU (slope 0.2); clamp to +-clamp. Returns x."""
    if noise is not None:
        x.add_(noise)
    F.leaky_relu_(x, LRELU_SLOPE)
    if clamp is not None:
        x.clamp_(-clamp, clamp)
    return x
