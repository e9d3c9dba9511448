"""CMMD (Jayasumana et al. 2024, google-research `cmmd`) with bounded memory.

MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y), every mean over all pairs with the
diagonal included (biased estimator), k = Gaussian RBF exp(-|a - b|^2 / (2 sigma^2)) with
sigma = 10 on L2-normalised CLIP ViT-L/14@336 embeddings, reported x 1000.

Kernel sums are taken over square blocks, so memory is O(block^2) whatever n is: the reference
side of a 70 000-image FFHQ set would need a 70 000 x 70 000 matrix (18 GiB) in one shot. The
reference sum k(y, y') depends only on the reference set, so callers cache it next to the
reference embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mm2latent_core.errors import ConfigError

SIGMA = 10.0  # RBF bandwidth of the CMMD paper
SCALE = 1000.0  # CMMD is reported as MMD^2 x 1000
BLOCK = 2048  # rows / columns per kernel block: 2048^2 float32 = 16 MiB per temporary


@dataclass(frozen=True)
class KernelSum:
    """Sum of k over all ordered pairs of two sets, and how many pairs that was."""

    total: float  # float64 sum of kernel values
    count: int  # len(x) * len(y)

    @property
    def mean(self) -> float:
        """Mean kernel value."""
        return self.total / self.count


def _as_matrix(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.array(x, dtype=np.float32) if isinstance(x, np.ndarray) else x)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ConfigError(f"{name} must be (N, D) embeddings with N >= 1, got {tuple(t.shape)}.")
    return t.float()


def _block_sum(a: torch.Tensor, b: torch.Tensor, gamma: float) -> float:
    """Sum of exp(-gamma |a_i - b_j|^2) over one block, accumulated in float64."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)  # (Ba, Bb)
    return float(torch.exp(sq.clamp_(min=0.0).mul_(-gamma)).sum(dtype=torch.float64))


def kernel_sum(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor | None = None,
               sigma: float = SIGMA, block: int = BLOCK) -> KernelSum:
    """Sum of the RBF kernel over all pairs of x and y (y None = x with itself, by symmetry).

    Args:
        x: (N, D) embeddings.
        y: (M, D) embeddings, or None for the x-x sum (upper-triangle blocks counted twice).
        sigma: RBF bandwidth.
        block: rows and columns per block.
    """
    if sigma <= 0 or block < 1:
        raise ConfigError(f"sigma={sigma} and block={block} must be positive.")
    gamma = 1.0 / (2.0 * sigma * sigma)
    a = _as_matrix(x, "x")
    b = a if y is None else _as_matrix(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"x has {a.shape[1]} dims but y has {b.shape[1]}; embed both with "
                          "the same CLIP model.")
    total = 0.0
    for i in range(0, a.shape[0], block):
        start = i if y is None else 0
        for j in range(start, b.shape[0], block):
            part = _block_sum(a[i:i + block], b[j:j + block], gamma)
            total += part if (y is not None or i == j) else 2.0 * part
    return KernelSum(total=total, count=a.shape[0] * b.shape[0])


def cmmd(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, sigma: float = SIGMA,
         block: int = BLOCK, y_sum: KernelSum | None = None) -> float:
    """CMMD = 1000 x biased MMD^2 between generated embeddings x and reference embeddings y.

    Args:
        x: (N, D) L2-normalised embeddings of the generated images.
        y: (M, D) L2-normalised embeddings of the reference images.
        sigma: RBF bandwidth (10 in CMMD).
        block: block side of the kernel sums.
        y_sum: a cached kernel_sum(y) for these y and sigma; None = compute it.
    """
    y_sum = y_sum or kernel_sum(y, None, sigma, block)
    xx, xy = kernel_sum(x, None, sigma, block), kernel_sum(x, y, sigma, block)
    return SCALE * (xx.mean + y_sum.mean - 2.0 * xy.mean)
