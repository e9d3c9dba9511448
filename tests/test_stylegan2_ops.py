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


# 4 taps take the polyphase path, 3 taps the generic zero-insertion path of upfirdn2d.
@pytest.mark.parametrize("taps", [[1.0, 2.0, 4.0, 3.0], [1.0, 2.0, 0.5]])
def test_upsample2d_matches_zero_insertion_and_convolution(taps: list[float]) -> None:
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    f = ops.setup_filter(taps).double()
    k = len(taps)
    u = zero_insert(x, 10, 12)  # zeros after every sample
    start = k - 1 - (k + 1) // 2  # NVIDIA pads (k+1)//2 before, (k-2)//2 after
    ref = full_conv_depthwise(u, f * 4)[:, :, start : start + 10, start : start + 12]
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


@pytest.fixture(params=["activations", "weights"])
def modulation_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Force modulated_conv2d down one of its two equivalent implementations."""
    monkeypatch.setattr(ops, "scales_activations", lambda x, w: request.param == "activations")
    return request.param


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_equals_per_sample_conv(demodulate: bool, modulation_path: str) -> None:
    x = torch.randn(3, 4, 6, 7, dtype=torch.float64)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 4, dtype=torch.float64)
    bias = torch.randn(5, dtype=torch.float64)
    out = ops.modulated_conv2d(x, weight, styles, demodulate=demodulate, bias=bias, gain=1.5)
    for b in range(3):
        w = modulated_weights(weight, styles[b], demodulate)
        ref = F.conv2d(x[b : b + 1], w, padding=1) * 1.5 + bias.view(1, -1, 1, 1)
        torch.testing.assert_close(out[b : b + 1], ref)


def test_modulated_conv2d_up_equals_zero_insertion_conv_and_blur(
    asym_filter: torch.Tensor, modulation_path: str
) -> None:
    size = 5
    x = torch.randn(2, 4, size, size, dtype=torch.float64)
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    styles = torch.randn(2, 4, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    f = asym_filter.double()
    out = ops.modulated_conv2d(x, weight, styles, up=2, resample_filter=f, bias=bias)
    n = 2 * size
    assert out.shape == (2, 3, n, n)
    for b in range(2):
        w = modulated_weights(weight, styles[b], True)
        u = zero_insert(x[b : b + 1], n - 1, n - 1)
        a = F.conv2d(u, w.flip([2, 3]), padding=2)  # full true convolution: (1, O, n+1, n+1)
        ref = full_conv_depthwise(a, f * 4)[:, :, 2 : n + 2, 2 : n + 2] + bias.view(1, -1, 1, 1)
        torch.testing.assert_close(out[b : b + 1], ref)


def test_both_modulation_paths_give_the_same_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    target = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    grads = []
    for path in (True, False):
        monkeypatch.setattr(ops, "scales_activations", lambda x, w, path=path: path)
        styles = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        styles.requires_grad_(True)
        (ops.modulated_conv2d(x, weight, styles, gain=1.5) * target).sum().backward()
        grads.append(styles.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_demodulation_is_layout_independent() -> None:
    w = torch.randn(6, 5, 3, 3, dtype=torch.float64)
    styles = torch.randn(2, 5, dtype=torch.float64)
    ref = 1.0 / (w[None] * styles[:, None, :, None, None]).square().sum(dim=[2, 3, 4]).add(1e-8).sqrt()
    transposed_layout = w.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)  # memory (I, k, k, O)
    for layout in (w, w.contiguous(memory_format=torch.channels_last), transposed_layout):
        torch.testing.assert_close(ops.demodulation(layout, styles), ref)


def test_scales_activations_only_when_activations_are_small() -> None:
    weight = torch.empty(512, 512, 3, 3)
    assert ops.scales_activations(torch.empty(4, 512, 8, 8), weight)
    assert not ops.scales_activations(torch.empty(4, 512, 64, 64), weight)


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
