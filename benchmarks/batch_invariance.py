"""Which ops change their result with the batch size or thread count on this CPU, plain and
under mm2latent.batching.batch_invariant() (the probe behind that module).

Usage: python -m benchmarks.batch_invariance [--threads 2]

For each op, at the shapes synth-data's networks use, row 0 of a batch of n is compared bitwise
with row 0 computed alone at one thread; the (threads, batch) pairs where it differs are
printed, for the plain op and for the op under batch_invariant() (which must print none).
Kernel choices depend on the CPU, the BLAS/oneDNN build and the thread count, so rerun this on
a new machine: a pair listed under `invariant` means the routes of batching.py do not hold
there.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from open_clip.model import QuickGELU
from open_clip.transformer import ResidualAttentionBlock

from mm2latent.batching import batch_invariant

SIZES = (1, 2, 3, 4, 5, 8, 12, 15, 16, 17, 32)


def differing(fn: Callable[[torch.Tensor], torch.Tensor], make: Callable[[int], torch.Tensor],
              sizes: tuple[int, ...], thread_counts: tuple[int, ...]) -> list[tuple[int, int]]:
    """(threads, n) pairs at which fn(x[:n])[0] differs bitwise from fn(x[:1])[0] at 1 thread."""
    x = make(max(sizes))
    torch.set_num_threads(1)
    alone = fn(x[:1])[:1]
    bad = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        bad += [(threads, n) for n in sizes if not torch.equal(fn(x[:n])[:1], alone)]
    return bad


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
        "conv-transpose s2 64ch from 128x128 (generator b256)": (
            lambda x: F.conv_transpose2d(x, conv[:64, :64], stride=2), _channels_last(64, 128, 128), (1, 2)),
        "to-RGB bmm over 4x4 positions": (
            lambda x: torch.bmm(x, w512[None, :, :3].expand(len(x), -1, -1)), _randn(16, 512), SIZES),
        "linear 3072->768 over 197 tokens (ViT-B/16 MLP)": (
            lambda x: F.linear(x, mlp_out), _randn(197, 3072), (1, 2, 3, 4, 8)),
        "ViT-B block, 197 tokens (FaRL 224)": (block, _randn(197, 768), (1, 2, 3, 4)),
        "ViT-B block, 785 tokens (facer 448)": (block, _randn(785, 768), (1, 2, 3)),
    }


@torch.inference_mode()
def main() -> None:
    """Print, per op, the batch sizes whose row 0 differs from the op run on that row alone."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2,
                        help="highest torch intra-op thread count compared (1 .. this)")
    args = parser.parse_args()
    thread_counts = tuple(range(1, args.threads + 1))
    torch.manual_seed(0)
    print(f"torch {torch.__version__}; (threads, batch) pairs whose row 0 differs from batch 1 "
          f"at 1 thread; batches up to {max(SIZES)}, threads {list(thread_counts)}")
    failures = 0
    for name, (fn, make, sizes) in probes().items():
        plain = differing(fn, make, sizes, thread_counts)
        with batch_invariant():
            routed = differing(fn, make, sizes, thread_counts)
        failures += bool(routed)
        print(f"{name:48s} plain: {plain or 'none'}\n{'':48s} invariant: {routed or 'none'}",
              flush=True)
    print("batch_invariant() held for every op" if not failures
          else f"batch_invariant() did NOT hold for {failures} ops on this machine")


if __name__ == "__main__":
    main()
