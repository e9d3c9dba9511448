"""Batch-invariant evaluation of networks on the CPU.

BLAS and oneDNN pick their kernels (and so their rounding) from the shapes of a call, so a
sample's result can depend on how many other samples share its batch. Measured on this
project's reference CPU (2-core Zen5, torch 2.14, 2 threads; `python -m
benchmarks.batch_invariance` reprints it): every linear layer with fewer than 16 rows rounds
differently from the 16-row result, and the batch size also changes the kernels of the 3x3
and transposed convolutions on StyleGAN2's 4x4 maps (at 16 vs 17 vs 32 samples too) and of a
ViT-B/16 MLP projection (3072 -> 768 over 197 tokens: 1 image differs from 2 or more). Larger
convolutions, layer norms, attention and resampling agreed at every batch size tried at the
paper's widths, but not at the `tiny` preset's (64-channel generator convolutions differ too).
So which layers to pad depends on the CPU, the thread count and the widths.

Two tools, by cost:
- `run_per_sample`: the network sees one sample at a time, so every call has the same shapes
  whatever the batch: invariant by construction, on any CPU and at any width, and no padding
  rows are computed. synth-data runs its networks this way; their costly layers
  (high-resolution convolutions, ViT token matmuls) are large at one sample already, and the
  generator convolves one sample at a time from 128 px on anyway (`python -m
  benchmarks.synth_data --preset ffhq-arch` measures the cost against batched passes).
- `run_padded`: short batches padded to MIN_ROWS rows; for small networks evaluated over many
  short batches (the autoencoders), where one padded call is cheaper than many single ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MIN_ROWS = 16  # batch rows below which BLAS kernels (and their rounding) change


def pad_rows(x: torch.Tensor) -> torch.Tensor:
    """x padded to MIN_ROWS rows by repeating row 0 (unchanged when empty or already large)."""
    n = x.shape[0]
    if n == 0 or n >= MIN_ROWS:
        return x
    return torch.cat([x, x[:1].expand(MIN_ROWS - n, *x.shape[1:])])


def run_padded(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn(x) computed on pad_rows(x), padding removed: batch-invariant results."""
    return fn(pad_rows(x))[: x.shape[0]]


def run_per_sample(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn applied to each sample of x (B, ...) as a batch of one, outputs concatenated.

    The result for x[i] depends only on x[i]: every call has batch size 1. An empty batch
    goes through fn once, so the output keeps fn's shape and dtype.
    """
    if x.shape[0] <= 1:
        return fn(x)
    return torch.cat([fn(x[i : i + 1]) for i in range(x.shape[0])])
