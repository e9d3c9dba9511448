"""Which ops change their result with the batch size on this CPU (the probe behind batching.py).

Usage: python -m benchmarks.batch_invariance [--threads 2]

For each op, at the shapes synth-data's networks use, row 0 of a batch of n is compared bitwise
with row 0 computed alone; the batch sizes where it differs are printed. Kernel choices depend
on the CPU, the BLAS/oneDNN build and the thread count, so rerun this on a new machine.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from open_clip.model import QuickGELU
from open_clip.transformer import ResidualAttentionBlock

SIZES = (1, 2, 3, 4, 5, 8, 12, 15, 16, 17, 32)


def differing(fn: Callable[[torch.Tensor], torch.Tensor], make: Callable[[int], torch.Tensor],
              sizes: tuple[int, ...] = SIZES) -> list[int]:
    """Batch sizes n at which fn(x[:n])[0] differs bitwise from fn(x[:1])[0]."""
    x = make(max(sizes))
    alone = fn(x[:1])
    return [n for n in sizes if not torch.equal(fn(x[:n])[:1], alone)]


def _randn(*shape: int) -> Callable[[int], torch.Tensor]:
    return lambda n: torch.randn(n, *shape)


def _channels_last(*shape: int) -> Callable[[int], torch.Tensor]:
    return lambda n: torch.randn(n, *shape).contiguous(memory_format=torch.channels_last)


def probes() -> dict[str, tuple[Callable, Callable, tuple[int, ...]]]:
    """name -> (op, input maker, batch sizes), at the shapes of the ffhq networks."""
    w512, w2048, w768 = torch.randn(512, 512), torch.randn(1024, 2048), torch.randn(512, 768)
    conv = torch.randn(512, 512, 3, 3).contiguous(memory_format=torch.channels_last)
    mlp_out = torch.randn(768, 3072)
    block = ResidualAttentionBlock(768, 12, act_layer=QuickGELU, batch_first=True).eval()
    small = (1, 2, 3, 4, 8, 16, 17)
    return {
        "linear 512->512 (mapping, style affines)": (lambda x: F.linear(x, w512), _randn(512), SIZES),
        "linear 2048->1024 (DECA regressor)": (lambda x: F.linear(x, w2048), _randn(2048), SIZES),
        "matmul 768->512 (FaRL projection)": (lambda x: x @ w768.t(), _randn(768), SIZES),
        "conv1x1 on pooled 256ch (BiSeNet attention)": (
            lambda x: F.conv2d(x, w512[:256, :256, None, None]), _randn(256, 1, 1), SIZES),
        "conv3x3 512ch on 4x4 (generator b4)": (lambda x: F.conv2d(x, conv, padding=1),
                                                _channels_last(512, 4, 4), small),
        "conv3x3 512ch on 8x8 (generator b8)": (lambda x: F.conv2d(x, conv, padding=1),
                                                _channels_last(512, 8, 8), small),
        "conv-transpose s2 512ch from 4x4": (lambda x: F.conv_transpose2d(x, conv, stride=2),
                                             _channels_last(512, 4, 4), small),
        "conv-transpose s2 512ch from 8x8": (lambda x: F.conv_transpose2d(x, conv, stride=2),
                                             _channels_last(512, 8, 8), small),
        "linear 3072->768 over 197 tokens (ViT-B/16 MLP)": (
            lambda x: F.linear(x, mlp_out), _randn(197, 3072), (1, 2, 3, 4, 8)),
        "ViT-B block, 197 tokens (FaRL 224)": (block, _randn(197, 768), (1, 2, 3, 4)),
        "ViT-B block, 785 tokens (facer 448)": (block, _randn(785, 768), (1, 2, 3)),
    }


@torch.inference_mode()
def main() -> None:
    """Print, per op, the batch sizes whose row 0 differs from the op run on that row alone."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (fn, make, sizes) in probes().items():
        bad = differing(fn, make, sizes)
        print(f"{name:48s} differs at batch {bad}" if bad else f"{name:48s} same at {list(sizes)}",
              flush=True)


if __name__ == "__main__":
    main()
