"""StyleGAN2 low-level ops: FIR resampling, modulated convolution, fused bias + activation.

Semantics follow NVIDIA stylegan2-ada-pytorch (`upfirdn2d`, `conv2d_resample`,
`modulated_conv2d`, `bias_act`) so that the same tensors give the same image, but the
implementation is our own and tuned for the CPU:

- activations and conv weights are kept in channels_last, so oneDNN convolves them
  without reordering;
- demodulation coefficients come from a small matmul (no modulated-weight temporary);
- at low resolution the styles scale the activations and a shared weight convolves the
  whole batch; at high resolution the weights are modulated per sample (one pass over a
  small weight instead of extra passes over big activations);
- the activation gain and bias ride on the conv (weights, bias argument); the 2x
  upsampling conv is a stride-2 transposed conv plus one depthwise blur that adds the
  bias; the image skip path upsamples polyphase (no zero-inserted image); noise, leaky
  ReLU and clamp run in place, because on the CPU each fresh large tensor costs page
  faults comparable to the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2  # leaky ReLU negative slope used throughout StyleGAN2
LRELU_GAIN = math.sqrt(2.0)  # gain that keeps the activation variance of lrelu at ~1
DEMOD_EPS = 1e-8  # added to the squared weight norm before rsqrt, as in NVIDIA
CALL_OVERHEAD_ELEMS = 2**18  # fixed cost of one extra conv call, in element operations

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
    if up > 1:
        z = torch.empty((b, c, h * up, w * up), dtype=x.dtype, device=x.device,
                        memory_format=_memory_format(x)).zero_()
        z[:, :, ::up, ::up] = x  # (B, C, H*up, W*up), zeros between samples
        x = z
    x = blur2d(x, f, _parse_padding(padding), gain)
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample (B, C, H, W) -> (B, C, H*up, W*up) with FIR filter `f` and DC gain preserved."""
    kh, kw = f.shape
    if up == 2 and kh == kw == 4:
        return _upsample2x_polyphase(x, f)
    pad = [(kw + up - 1) // 2, (kw - up) // 2, (kh + up - 1) // 2, (kh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, gain=up * up)


def _upsample2x_polyphase(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """upsample2d for up=2 and a 4x4 filter, without the zero-inserted intermediate.

    Output pixel (2q+p) sees only input pixels q-1..q+1 through taps (f3, f1, -) for
    phase p=0 and (-, f2, f0) for p=1, so each of the 4 output phases is a 3x3
    correlation of the input; pixel_shuffle interleaves them.
    """
    b, c, h, w = x.shape
    taps = torch.tensor([[3, 1, -1], [-1, 2, 0]])  # filter index per (phase, position); -1 = none
    fz = F.pad(f.to(x.dtype) * 4.0, [0, 1, 0, 1])  # (5, 5): index 4 (= -1) reads 0
    k = fz[taps[:, None, :, None], taps[None, :, None, :]]  # (2, 2, 3, 3): (py, px, ty, tx)
    k = k.reshape(4, 1, 3, 3)  # channel 2*py + px, the order pixel_shuffle expects
    y = F.conv2d(x.reshape(b * c, 1, h, w), k, padding=1)  # (B*C, 4, H, W)
    return F.pixel_shuffle(y, 2).reshape(b, c, 2 * h, 2 * w)  # (B, C, 2H, 2W)


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


def demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / ||weight * styles[b]|| per sample and output filter: (B, O).

    sum_{i,k} (w[o,i,k] s[b,i])^2 = sum_i s[b,i]^2 sum_k w[o,i,k]^2, so one small matmul
    replaces building the (B, O, I, kh, kw) modulated weights just to take their norm.
    """
    # Reduce over the taps on a view whose last dim is dense: a strided reduction (or
    # linalg.vector_norm) is up to 50x slower on the layouts the generator stores.
    if weight.stride(0) == 1:
        wsq = weight.permute(1, 2, 3, 0).square().sum(dim=[1, 2]).t()  # (I, k, k, O) -> (O, I)
    else:
        wsq = weight.square().sum(dim=[2, 3])  # (O, I)
    return (styles.square() @ wsq.t() + DEMOD_EPS).rsqrt()  # (B, O)


def scales_activations(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether modulated_conv2d scales the activations (True) rather than the weights.

    Scaling one sample's weights costs ~weight.numel() per sample plus a per-sample
    convolution call (worth ~CALL_OVERHEAD_ELEMS element operations); scaling the input
    and output activations instead costs ~3 x one sample's input and keeps the batch whole.
    """
    return 3 * x[0].numel() < weight.numel() + CALL_OVERHEAD_ELEMS


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
    if up not in (1, 2) or (up == 2 and resample_filter is None):
        raise ValueError(f"modulated_conv2d: up must be 1, or 2 with a resample_filter; got up={up}")
    if demodulate:
        dcoefs = demodulation(weight, styles) * gain  # (B, O)
    else:
        dcoefs = styles.new_full((styles.shape[0], weight.shape[0]), gain)  # (B, O)
    if scales_activations(x, weight):
        # Small activations, big weights (low resolution): scale the activations instead of
        # the weights, as a whole batch, and the outputs after.
        y = _conv_up(x * styles[:, :, None, None], weight, up, resample_filter, None)
        y = y.mul_(dcoefs[:, :, None, None])
        return y.add_(bias[None, :, None, None]) if bias is not None else y
    outs = []
    for b in range(x.shape[0]):
        # Weight modulation: (O, I) scales applied to the (O, k, k, I) = channels_last layout.
        sd = dcoefs[b][:, None] * styles[b][None, :]  # (O, I)
        wm = (weight.permute(0, 2, 3, 1) * sd[:, None, None, :]).permute(0, 3, 1, 2)  # (O, I, k, k)
        outs.append(_conv_up(x[b : b + 1], wm, up, resample_filter, bias))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)  # (B, O, H*up, W*up)


def _conv_up(x: torch.Tensor, weight: torch.Tensor, up: int,
             resample_filter: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """Shared-weight 'same' conv (up=1), or transposed stride-2 conv + FIR blur (up=2), + bias."""
    o, i, kh, kw = weight.shape
    if up == 1:
        return F.conv2d(x, weight, bias=bias, padding=(kh // 2, kw // 2))
    # NVIDIA upsamples with a transposed conv whose weight is (in, out, k, k), unflipped.
    y = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # (B, O, 2H+k-2, 2W+k-2)
    fh, fw = resample_filter.shape
    # NVIDIA pads the transposed-conv output so that the blur returns exactly 2H x 2W.
    py0 = (fh + 1) // 2 + kh // 2 - (kh - 1)
    py1 = (fh - 2) // 2 + kh // 2 - (kh - 2)
    px0 = (fw + 1) // 2 + kw // 2 - (kw - 1)
    px1 = (fw - 2) // 2 + kw // 2 - (kw - 2)
    return blur2d(y, resample_filter, (px0, px1, py0, py1), gain=4.0, bias=bias)


def blur2d(
    x: torch.Tensor,
    f: torch.Tensor,
    padding: tuple[int, int, int, int],
    gain: float = 1.0,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depthwise true convolution of (B, C, H, W) with f * gain after padding (x0, x1, y0, y1).

    Negative padding crops. `bias` (C,) is added to the result.
    """
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
