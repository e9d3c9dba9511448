"""Inference latency per stage: generation and editing, paper architectures and tiny, on this machine.

Usage:
    python -m benchmarks.inference                        # ffhq + tiny, batch 1 and 16, CPU
    python -m benchmarks.inference --presets tiny --batches 1 --runs 5
    python -m benchmarks.inference --device cuda          # on a GPU, when there is one

Every network has random weights (seeded), so no weights file is needed: `ffhq` builds the
paper's architectures (StyleGAN2 config-f 1024 px, FaRL ViT-B/16, the mask autoencoder and
MappingNet, e4e for 1024 px, BiSeNet at 512 px standing in for facer's TorchScript parser,
which cannot be built without its file). Latency does not depend on the weights' values.

Generation = FaRL text encode + spatial (mask autoencoder) encode + MappingNet + generator.
Editing = e4e inversion + annotation (face parse) + direction (FaRL text encode of target and
pivot, two MappingNet passes) + synthesis of the edited w+. Each stage is the median of
`--runs` timed runs after one warm-up, in ms per batch and per image, float32.

The paper's Table 4 (MM2Latent 41.78 ms, TediGAN 114.02 ms, Collaborative Diffusion
11071.77 ms per image) was measured on an NVIDIA P100 GPU; figures from a CPU are not
comparable in absolute terms, which the printout says next to them.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from mm2latent.editing import text_direction
from mm2latent.inference import Mm2LatentGenerator
from mm2latent.annotation import stored_pixels
from mm2latent.models.autoencoders import SpatialAutoencoder
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.e4e import E4EEncoder
from mm2latent.models.face_parser.bisenet import BiSeNet
from mm2latent.models.mapping_net import MappingNet
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import PresetCfg, get_preset
from mm2latent.seeding import derive_seed, seeded_init
from mm2latent import annotation
from mm2latent.training.mapping import mapping_net_cfg

PAPER_TABLE4_MS = {"MM2Latent": 41.78, "TediGAN": 114.02, "Collaborative Diffusion": 11071.77}
PAPER_HARDWARE = "NVIDIA Tesla P100 (paper, Table 4)"


def _seeded(preset: PresetCfg, component: str, make: Callable[[], torch.nn.Module], device: torch.device):
    with seeded_init(derive_seed(preset.init_seed, component)):
        return make().to(device).eval().requires_grad_(False)


def build(preset: PresetCfg, device: torch.device) -> tuple[Mm2LatentGenerator, E4EEncoder, BiSeNet]:
    """Random-weight networks of `preset`: the inference model, e4e and the face parser."""
    model = Mm2LatentGenerator(
        preset, "mask", _seeded(preset, "generator", lambda: Generator(preset.generator), device),
        _seeded(preset, "farl", lambda: ClipEmbedder(preset.farl), device),
        _seeded(preset, "mapping", lambda: MappingNet(mapping_net_cfg(preset.mapping, "mask")), device),
        _seeded(preset, "mask-ae", lambda: SpatialAutoencoder(preset.mask_ae), device), device)
    e4e = _seeded(preset, "e4e", lambda: E4EEncoder(preset.e4e), device)
    parser = _seeded(preset, "parser", lambda: BiSeNet(preset.bisenet), device)
    return model, e4e, parser


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], runs: int, device: torch.device) -> float:
    fn()  # warm-up: allocations, kernel selection
    times = []
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@torch.inference_mode()
def stage_times(preset: PresetCfg, batch: int, runs: int, device: torch.device) -> dict[str, dict[str, float]]:
    """{"generation": {stage: ms per batch}, "edit": {...}} for one preset and batch size."""
    model, e4e, parser = build(preset, device)
    captions = ["a smiling woman with blond hair"] * batch
    masks = np.random.default_rng(0).integers(0, 19, (batch, preset.store_size, preset.store_size), dtype=np.uint8)
    photos = torch.rand(batch, 3, preset.generator.img_resolution, preset.generator.img_resolution,
                        generator=torch.Generator().manual_seed(0)).to(device)
    text, space = model.text_embeddings(captions), model.spatial_embeddings(masks)
    w = model.mapping(text, space)
    w_plus = e4e.invert(photos)
    stored = annotation.to_float_images(stored_pixels(photos.cpu(), preset.store_size)).to(device)
    generation = {
        "FaRL text encode": lambda: model.text_embeddings(captions),
        "spatial encode": lambda: model.spatial_embeddings(masks),
        "MappingNet": lambda: model.mapping(text, space),
        "generator": lambda: model.generator.synthesize_from_w(w, noise_mode="const"),
    }
    edit = {
        "e4e inversion": lambda: e4e.invert(photos),
        "annotation (parse)": lambda: parser.parse(stored),
        "direction": lambda: text_direction(model, "a smiling face", "a face", space),
        "synthesis": lambda: model.generator.synthesize_from_w(w_plus, noise_mode="const"),
    }
    return {name: {stage: _median_ms(fn, runs, device) for stage, fn in group.items()}
            for name, group in (("generation", generation), ("edit", edit))}


def hardware(device: torch.device) -> str:
    """A one-line description of where this ran."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def report(results: dict[tuple[str, int], dict[str, dict[str, float]]], where: str) -> str:
    """Per-stage table and the comparison with the paper's Table 4."""
    lines = [f"ours: {where}; paper: {PAPER_HARDWARE}", "",
             f"{'preset':6s} {'batch':>5s}  {'stage':26s} {'ms/batch':>10s} {'ms/image':>10s}"]
    for (preset, batch), groups in results.items():
        for group, stages_ms in groups.items():
            for stage, ms in stages_ms.items():
                lines.append(f"{preset:6s} {batch:5d}  {group[:4] + ': ' + stage:26s} {ms:10.2f} {ms / batch:10.2f}")
            total = sum(stages_ms.values())
            lines.append(f"{preset:6s} {batch:5d}  {group[:4] + ': TOTAL':26s} {total:10.2f} {total / batch:10.2f}")
    lines += ["", "Generation per image next to the paper's Table 4 (text + mask to image):"]
    for name, ms in PAPER_TABLE4_MS.items():
        lines.append(f"  {name:24s} {ms:10.2f} ms  ({PAPER_HARDWARE})")
    for (preset, batch), groups in results.items():
        per_image = sum(groups["generation"].values()) / batch
        lines.append(f"  {'ours ' + preset + ' batch ' + str(batch):24s} {per_image:10.2f} ms  ({where}; "
                     f"{per_image / PAPER_TABLE4_MS['MM2Latent']:.1f}x the paper's MM2Latent)")
    return "\n".join(lines)


def main() -> None:
    """Parse options, run every (preset, batch) and print the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="ffhq,tiny", help="comma list of presets")
    parser.add_argument("--batches", default="1,16", help="comma list of batch sizes")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per stage (median)")
    parser.add_argument("--device", default="cpu", help="torch device")
    args = parser.parse_args()
    device = torch.device(args.device)
    results = {}
    for name in args.presets.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            results[(name, batch)] = stage_times(get_preset(name), batch, args.runs, device)
            print(f"done {name} batch {batch}", flush=True)
    print(report(results, hardware(device)))


if __name__ == "__main__":
    main()
