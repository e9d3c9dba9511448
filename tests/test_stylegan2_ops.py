"""StyleGAN2 ops against straightforward references written out in the tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mm2latent.models.stylegan2 import ops


def full_conv_depthwise(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Full (zero-padded, output grows by k-1) true convolution of every channel with f."""
    c = x.shape[1]
    kh, kw = f.shape
    k = f.flip([0, 1])[None, None].repeat(c, 1, 1, 1)  # (C, 1, kh, kw)
    return F.conv2d(x, k, padding=(kh - 1, kw - 1), groups=c)


def zero_insert(x: torch.Tensor, length_h: int, length_w: int) -> torch.Tensor:
    """Put x[m] at position 2m of a zero tensor (B, C, length_h, length_w)."""
    u = torch.zeros(*x.shape[:2], length_h, length_w, dtype=x.dtype)
    u[:, :, ::2, ::2] = x
    return u


@pytest.fixture
def asym_filter() -> torch.Tensor:
    """A non-symmetric separable filter, so that a flip error shows."""
    return ops.setup_filter([1.0, 2.0, 4.0, 3.0])


def test_setup_filter_is_normalised_outer_product() -> None:
    f = ops.setup_filter()
    expected = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.allclose(f, torch.outer(expected, expected) / 64.0)


def test_upsample2d_matches_zero_insertion_and_convolution(asym_filter: torch.Tensor) -> None:
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    f = asym_filter.double()
    u = zero_insert(x, 10, 12)  # zeros after every sample
    ref = full_conv_depthwise(u, f * 4)[:, :, 1:11, 1:13]  # NVIDIA pads (2, 1) for 4 taps
    out = ops.upsample2d(x, f)
    assert out.shape == (2, 3, 10, 12)
    torch.testing.assert_close(out, ref)


def test_downsample2d_matches_convolution_then_decimation(asym_filter: torch.Tensor) -> None:
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    f = asym_filter.double()
    ref = full_conv_depthwise(x, f)[:, :, 2:9:2, 2:11:2]  # pad (1, 1), keep every 2nd
    out = ops.downsample2d(x, f)
    assert out.shape == (2, 3, 4, 5)
    torch.testing.assert_close(out, ref)


def test_upfirdn2d_negative_padding_crops() -> None:
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    identity = torch.ones(1, 1, dtype=torch.float64)
    out = ops.upfirdn2d(x, identity, padding=(-1, -2, 0, -1))  # (x0, x1, y0, y1)
    torch.testing.assert_close(out, x[:, :, 0:5, 1:4])


def modulated_weights(weight: torch.Tensor, style: torch.Tensor, demodulate: bool) -> torch.Tensor:
    """weight * style per input channel, each output filter scaled to unit norm if demodulate."""
    w = weight * style[None, :, None, None]  # (O, I, k, k)
    if demodulate:
        w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
    return w


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_equals_per_sample_conv(demodulate: bool) -> None:
    x = torch.randn(3, 4, 7, 7, dtype=torch.float64)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 4, dtype=torch.float64)
    bias = torch.randn(5, dtype=torch.float64)
    out = ops.modulated_conv2d(x, weight, styles, demodulate=demodulate, bias=bias, gain=1.5)
    for b in range(3):
        w = modulated_weights(weight, styles[b], demodulate)
        ref = F.conv2d(x[b : b + 1], w, padding=1) * 1.5 + bias.view(1, -1, 1, 1)
        torch.testing.assert_close(out[b : b + 1], ref)


def test_modulated_conv2d_up_equals_zero_insertion_conv_and_blur(asym_filter: torch.Tensor) -> None:
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    styles = torch.randn(2, 4, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    f = asym_filter.double()
    out = ops.modulated_conv2d(x, weight, styles, up=2, resample_filter=f, bias=bias)
    assert out.shape == (2, 3, 10, 10)
    for b in range(2):
        w = modulated_weights(weight, styles[b], True)
        u = zero_insert(x[b : b + 1], 9, 9)
        a = F.conv2d(u, w.flip([2, 3]), padding=2)  # full true convolution: (1, O, 11, 11)
        ref = full_conv_depthwise(a, f * 4)[:, :, 2:12, 2:12] + bias.view(1, -1, 1, 1)
        torch.testing.assert_close(out[b : b + 1], ref)


def test_noise_lrelu_clamp_matches_reference() -> None:
    x = torch.randn(2, 3, 4, 4) * 10
    noise = torch.randn(4, 4)
    ref = F.leaky_relu(x + noise, 0.2).clamp(-5.0, 5.0)
    out = ops.noise_lrelu_(x.clone(), noise, clamp=5.0)
    torch.testing.assert_close(out, ref)
    assert out.max() == 5.0  # the clamp was hit


def test_modulated_conv2d_up_requires_filter() -> None:
    with pytest.raises(ValueError, match="up"):
        ops.modulated_conv2d(torch.randn(1, 2, 4, 4), torch.randn(2, 2, 3, 3), torch.randn(1, 2), up=2)
