"""Speed of the benchmark: pairs/s on the tiny preset and the paper's architectures (random
weights), and CMMD time / peak memory at FFHQ scale (70 000 reference x 1 000 generated).

Usage:
    python -m benchmarks.benchmark_flow                       # tiny + paper pairs/s, CMMD 70000 x 1000
    python -m benchmarks.benchmark_flow --skip-paper --n-ref 20000

Pairs/s is reported with its ratio to bare generation (the same models' text encode + mask
encode + MappingNet + generator only) measured in the same process: the share of the time the
metric networks add. CMMD is timed against a one-shot (n x n) computation on a subset, which
also checks that both agree; at full scale its peak RSS is compared with the n x n matrix it
avoids.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from mm2latent.benchmark.cmmd import cmmd, kernel_sum
from mm2latent.benchmark.config import MetricNetsCfg
from mm2latent.benchmark.evaluate import evaluate_chunk, generate_timed
from mm2latent.benchmark.networks import build_metric_nets
from mm2latent.benchmark.pairs import Pair
from mm2latent.inference import Mm2LatentGenerator
from mm2latent.model_loading import build_component
from mm2latent.models.autoencoders import SpatialAutoencoder
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.mapping_net import MappingNet
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import CLIP_PRESETS, get_preset
from mm2latent.seeding import derive_seed, seeded_init

SEEDED = dict(generator_weights=None, farl_weights=None, parser_weights=None, deca_weights=None,
              e4e_weights=None)


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _model(preset_name: str) -> Mm2LatentGenerator:
    preset = get_preset(preset_name, **SEEDED)
    generator = build_component(preset, "generator", lambda: Generator(preset.generator), None)
    farl = build_component(preset, "farl", lambda: ClipEmbedder(preset.farl), None)
    with seeded_init(derive_seed(preset.init_seed, "bench-mapping")):
        mapping = MappingNet(preset.mapping).eval().requires_grad_(False)
        autoencoder = SpatialAutoencoder(preset.mask_ae).eval().requires_grad_(False)
    return Mm2LatentGenerator(preset, "mask", generator, farl, mapping, autoencoder,
                              torch.device("cpu"))


def pairs_per_second(preset_name: str, n_pairs: int) -> None:
    """Print evaluated pairs/s and bare generations/s of one preset (random weights)."""
    model = _model(preset_name)
    seeded = None if preset_name == "tiny" else (CLIP_PRESETS["clip-vit-b32"],
                                                 CLIP_PRESETS["clip-vit-l14-336"])
    nets = build_metric_nets(model.preset, MetricNetsCfg(None, None, None), "cpu", None, seeded)
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 19, (n_pairs, 512, 512), dtype=np.uint8)
    pairs = [Pair(i, "a smiling woman with bangs and blond hair", i) for i in range(n_pairs)]
    evaluate_chunk(model, "warm-up", nets, pairs[:1], masks[:1], 512)
    start = time.perf_counter()
    generate_timed(model, pairs, masks)
    bare = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate_chunk(model, preset_name, nets, pairs, masks, 512)
    full = time.perf_counter() - start
    stages = ", ".join(f"{k} {1000 * v / n_pairs:.0f} ms" for k, v in result.seconds.items())
    print(f"{preset_name}: {n_pairs / full:.3f} pairs/s evaluated, {n_pairs / bare:.3f} "
          f"generations/s bare (ratio {bare / full:.2f}); per pair: {stages}; "
          f"peak RSS {_peak_rss_gib():.2f} GiB")


def cmmd_scale(n_ref: int, n_gen: int, dim: int, subset: int) -> None:
    """Print CMMD time and peak RSS for n_ref x n_gen synthetic embeddings."""
    rng = np.random.default_rng(0)

    def unit(n: int, shift: float) -> np.ndarray:
        x = rng.standard_normal((n, dim), dtype=np.float32) + shift
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    y, x = unit(n_ref, 0.0), unit(n_gen, 0.05)
    ys, xs = y[:subset], x[:min(subset, n_gen)]
    start = time.perf_counter()
    blocked = cmmd(xs, ys)
    t_block = time.perf_counter() - start
    start = time.perf_counter()
    one_shot = cmmd(xs, ys, block=subset)
    t_one = time.perf_counter() - start
    print(f"CMMD {subset} x {len(xs)}: blockwise {t_block:.2f} s, one-shot {t_one:.2f} s (ratio "
          f"{t_block / t_one:.2f}); values {blocked:.6f} vs {one_shot:.6f}")
    rss_before = _peak_rss_gib()
    start = time.perf_counter()
    y_sum = kernel_sum(y)
    t_ref = time.perf_counter() - start
    start = time.perf_counter()
    value = cmmd(x, y, y_sum=y_sum)
    t_gen = time.perf_counter() - start
    print(f"CMMD {n_ref} x {n_gen} (dim {dim}): reference kernel sum {t_ref:.1f} s (cached "
          f"after the first run), per model {t_gen:.1f} s, value {value:.4f}; peak RSS "
          f"{_peak_rss_gib():.2f} GiB (embeddings and inputs {rss_before:.2f} GiB) vs "
          f"{n_ref * n_ref * 4 / 2**30:.1f} GiB for one n x n float32 matrix")


def main() -> None:
    """Run the measurements named by the options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=4, help="pairs per preset")
    parser.add_argument("--skip-paper", action="store_true", help="tiny preset only")
    parser.add_argument("--n-ref", type=int, default=70000, help="reference embeddings")
    parser.add_argument("--n-gen", type=int, default=1000, help="generated embeddings")
    parser.add_argument("--dim", type=int, default=768, help="embedding width (ViT-L/14: 768)")
    parser.add_argument("--subset", type=int, default=4000, help="one-shot comparison size")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    cmmd_scale(args.n_ref, args.n_gen, args.dim, args.subset)  # first: its peak RSS is its own
    pairs_per_second("tiny", args.pairs)
    if not args.skip_paper:
        pairs_per_second("ffhq", max(1, args.pairs // 2))


if __name__ == "__main__":
    main()
