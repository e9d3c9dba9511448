"""Batch-invariant network evaluation: a sample's numbers never depend on its batch.

Why: synth-data promises that sample i depends only on (seed, i, preset, weights), not on
which samples share its batch, nor on how many threads the worker runs. Plain PyTorch on the
CPU breaks both (probe: `python -m benchmarks.batch_invariance`):
- MKL's GEMM (F.linear, matmul, attention projections) picks its kernel, and whether to
  split the reduction across threads, from the row count and the thread count, so a row
  rounds differently at 1, 16 or 32 rows, or at 1 or 2 threads;
- PyTorch routes some convolutions (1x1 kernels, 4x4 maps, transposed ones) to its own
  GEMM code or to oneDNN by batch size and thread count, so they vary too.
Only the matrix products and convolutions are affected: elementwise ops, layer and batch norm,
softmax, pooling and scaled_dot_product_attention work row by row or position by position.

So inside `batch_invariant()` (a dispatch mode: it sees the aten ops every module and
functional call decomposes into):
- matrix products (mm, addmm, bmm, baddbmm) run as oneDNN 1x1 convolutions whose positions
  are the rows: a oneDNN forward convolution never splits its reduction across threads, and
  its result at one position does not depend on how many positions there are. One call for
  the whole batch, as fast as the GEMM at the ViT's sizes;
- convolutions run through oneDNN, forced (PyTorch would route a 1x1 or a 4x4-map
  convolution to its own GEMM code by batch size and thread count); transposed ones, which
  PyTorch computes as a GEMM, run one image at a time so that their shape is fixed;
- PyTorch's fused attention fast path (`_native_multi_head_attention`) is evaluated from the
  same invariant pieces;
- other ops that reduce across rows with BLAS (mv, addbmm, ...) raise: better a clear error
  than a dataset whose samples depend on their batch.
This replaces padding every short batch to 16 rows, which ran whole networks on 4x the work at
batch 4 and still varied with the thread count at the paper's widths.

TorchScript modules (facer's parser) run their graph in C++, out of reach of the mode: run
them one image at a time (`per_sample`). Off the CPU, whole networks run per sample: the
shapes are then the same whatever the batch, so cuBLAS/cuDNN choose the same kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mm2latent_core.errors import Mm2LatentError

aten = torch.ops.aten


class BatchVariantOpError(Mm2LatentError):
    """A network used an op whose result would depend on the batch, with no invariant route."""


def _onednn_rows(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """rows (M, K) @ weight (N, K).T + bias as a oneDNN 1x1 convolution over M positions."""
    m, k = rows.shape
    image = rows.contiguous().view(1, m, 1, k).permute(0, 3, 1, 2)  # (1, K, M, 1) channels_last
    kernel = weight.contiguous().view(weight.shape[0], k, 1, 1)  # (N, K, 1, 1)
    out = aten.mkldnn_convolution.default(image, kernel, bias, [0, 0], [1, 1], [1, 1], 1)
    return out.permute(0, 2, 3, 1).reshape(m, -1)  # (M, N)


def _onednn_ok(*tensors: torch.Tensor) -> bool:
    """Whether oneDNN can take these operands (float32 on the CPU)."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M, K) @ b (K, N), invariant to M and the thread count."""
    if not _onednn_ok(a, b):
        return aten.mm.default(a, b)
    return _onednn_rows(a, b.t(), None)


def _addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1,
           alpha: float = 1) -> torch.Tensor:
    """beta * bias + alpha * (a @ b); the bias rides on the convolution when it is a plain (N,)."""
    if not _onednn_ok(bias, a, b):
        return aten.addmm.default(bias, a, b, beta=beta, alpha=alpha)
    if beta == 1 and alpha == 1 and bias.shape == (b.shape[1],):
        return _onednn_rows(a, b.t(), bias)
    return torch.add(bias * beta, _onednn_rows(a, b.t(), None), alpha=alpha)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (M, K) @ weight (N, K).T (+ bias), through the invariant routes above."""
    return _mm(x, weight.t()) if bias is None else _addmm(bias, x, weight.t())


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (E, M, K) @ b (E, K, N), entry by entry."""
    if not _onednn_ok(a, b):
        return aten.bmm.default(a, b)
    return torch.stack([_onednn_rows(a[e], b[e].t(), None) for e in range(a.shape[0])])


def _baddbmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1,
             alpha: float = 1) -> torch.Tensor:
    """beta * bias + alpha * (a @ b) for batches of matrices."""
    if not _onednn_ok(bias, a, b):
        return aten.baddbmm.default(bias, a, b, beta=beta, alpha=alpha)
    return torch.add(bias * beta, _bmm(a, b), alpha=alpha)


def _convolution(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 stride: list[int], padding: list[int], dilation: list[int], transposed: bool,
                 output_padding: list[int], groups: int) -> torch.Tensor:
    """A 2-D convolution: oneDNN on the whole batch, or (transposed) one image at a time."""
    if x.ndim != 4:
        raise BatchVariantOpError(
            f"batch_invariant: a {x.ndim - 2}-D convolution has no batch-invariant route; "
            "add one in mm2latent/batching.py")
    if not transposed and _onednn_ok(x, weight):
        return aten.mkldnn_convolution.default(x, weight, bias, padding, stride, dilation, groups)
    # PyTorch's own transposed convolution is a GEMM: fix its shape by taking one image at a time.
    return per_sample(lambda xi: aten.convolution.default(xi, weight, bias, stride, padding, dilation,
                                                          transposed, output_padding, groups), x)


def _native_mha(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, embed_dim: int,
                num_heads: int, qkv_weight: torch.Tensor, qkv_bias: torch.Tensor | None,
                proj_weight: torch.Tensor, proj_bias: torch.Tensor | None,
                mask: torch.Tensor | None = None, need_weights: bool = True,
                average_attn_weights: bool = True, mask_type: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's fused self-attention fast path, from invariant pieces (batch_first inputs)."""
    if mask is not None or need_weights or not (query is key is value):
        raise BatchVariantOpError(
            "batch_invariant: the fused attention fast path was called with a mask, attention "
            "weights or cross-attention; only self-attention without them has an invariant "
            "route here. Add one in mm2latent/batching.py")
    b, t, _ = query.shape
    qkv = _linear(query.reshape(b * t, embed_dim), qkv_weight, qkv_bias)  # (B * T, 3 * E)
    q, k, v = qkv.view(b, t, 3, num_heads, embed_dim // num_heads).permute(2, 0, 3, 1, 4)
    attended = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # (B, H, T, hd)
    merged = attended.transpose(1, 2).reshape(b * t, embed_dim)
    return _linear(merged, proj_weight, proj_bias).view(b, t, embed_dim), query.new_empty(0)


def _refuse(name: str) -> Callable[..., torch.Tensor]:
    def refuse(*args: object, **kwargs: object) -> torch.Tensor:
        raise BatchVariantOpError(
            f"batch_invariant: {name} reduces across rows with BLAS and has no batch-invariant "
            "route; express it as a matrix product or add a route in mm2latent/batching.py")
    return refuse


# Composite aten ops that may hide a matrix product or a convolution (exact names: a pattern
# would also catch upsample_bilinear2d, whose decomposition is 2.5x slower than its kernel).
_COMPOSITE_PRODUCTS = frozenset({
    "linear", "bilinear", "matmul", "einsum", "tensordot", "inner", "chain_matmul",
    "linalg_multi_dot", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "_convolution_mode",
})

_ROUTES: dict[object, Callable[..., object]] = {
    aten.mm.default: _mm,
    aten.addmm.default: _addmm,
    aten.bmm.default: _bmm,
    aten.baddbmm.default: _baddbmm,
    aten.convolution.default: _convolution,
    aten._native_multi_head_attention.default: _native_mha,
    aten.mv.default: _refuse("mv"),
    aten.addmv.default: _refuse("addmv"),
    aten.addbmm.default: _refuse("addbmm"),
}


class _BatchInvariantMode(TorchDispatchMode):
    """Routes the batch-sensitive aten ops through their invariant versions (see the module)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Nothing under this mode is torch.compile'd; wrapping __torch_dispatch__ to keep
        # Dynamo out would import torch._dynamo on first use, 1.5-3 s on every CLI start.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        route = _ROUTES.get(func)
        if route is not None:
            return route(*args, **kwargs)
        if func.overloadpacket.__name__ in _COMPOSITE_PRODUCTS:
            # Composite ops (linear, matmul, conv2d, ...) reach the mode whole under inference
            # mode: decompose them with the mode on, so their products come back here. Only
            # these: other decompositions (max_pool2d, interpolate) are slower than the kernels.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        return func(*args, **kwargs)


def batch_invariant() -> TorchDispatchMode:
    """A context manager under which CPU networks give every sample batch-invariant numbers."""
    return _BatchInvariantMode()


def per_sample(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn applied to each sample of x on its own (fixed shapes whatever the batch), concatenated."""
    if x.shape[0] <= 1:
        return fn(x)
    return torch.cat([fn(x[i : i + 1]) for i in range(x.shape[0])])


def invariant_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn(x) with every row batch-invariant: under the mode on the CPU, per sample elsewhere."""
    if x.device.type != "cpu":
        return per_sample(fn, x)
    with batch_invariant():
        return fn(x)
