"""synth-data stage by stage on the paper's architectures (`python -m benchmarks.synth_data --preset ffhq-arch`).

The `ffhq-arch` preset is `ffhq` with every network seeded instead of loaded (StyleGAN2 config F
at 1024 px, BiSeNet at its 512 px input, DECA's ResNet-50, FaRL ViT-B/16, Canny and PNG at the
stored 512 px): the paper's shapes and costs, no weight files, and images that are not faces.
This benchmark registers it in its own process only.

For each batch size b, on a shard of whole batches of at least `--min-shard` samples (8 by
default: a shard's fixed costs belong to the shard, not to the batch), and in turn so that load
from other processes hits all alike:
- bare: each stage's plain forward pass on the whole batch, with nothing added for batch
  invariance (mapping + synthesis, parser, Canny, DECA on its crop, FaRL, PNG encoding of the
  image, mask and sketch), timed stage by stage on the same models;
- library: run.run_shard for that shard with those models (per-stage seconds come
  from the shard's own stats);
- flow: the synth-data Prefect flow for the same shard (models built before timing).
Efficiency = sum of bare stages / path seconds (target >= 0.9); generate = stages.generate
(the library's generate stage: batch-invariant mapping and synthesis, resize, quantisation) / bare
mapping + synthesis on the same batch. Medians over the repeats. `--clock cpu` times with this
process's CPU time instead of wall time: on a machine shared with other jobs, run with
`--threads 1` and `--clock cpu` to count the work done rather than the turns the scheduler gave
(Prefect's server runs in another process and is not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

from benchmarks.prefect_harness import harness

PRESET = "ffhq-arch"
MODALITIES = ("mask", "sketch", "flame", "farl")
BARE_STAGES = ("synthesis", "mask", "sketch", "flame", "farl", "png")
Clock = Callable[[], float]


def register_preset() -> None:
    """Add `ffhq-arch` (ffhq with every weights file replaced by a seeded init) to this process."""
    from mm2latent import presets

    seeded = {f"{c}_weights": None for c in ("generator", "farl", "parser", "deca", "e4e")}
    presets.PRESETS.setdefault(PRESET, dataclasses.replace(presets.PRESETS["ffhq"], name=PRESET, **seeded))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def bare_stages(models, indices: list[int], store_size: int, sketch_cfg, clock: Clock
                ) -> dict[str, float]:
    """Seconds of each stage's plain batched forward pass over samples `indices`, and of the
    library's generate stage on the same batch (key "generate", not a bare stage)."""
    from mm2latent.models.deca import ffhq_crop_for_deca
    from mm2latent.models.sketch import extract_sketch
    from mm2latent import annotation
    from mm2latent.synth import stages
    from mm2latent.modalities.codecs import encode_png

    g, device, seconds = models.generator, models.device, {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        _sync(device)
        start = clock()
        out = fn()
        _sync(device)
        seconds[name] = clock() - start
        return out

    z = stages.latents(0, indices, g.cfg.z_dim).to(device)  # (B, z_dim)
    images = timed("synthesis", lambda: g.synthesis(g.mapping(z, 0.7), noise_mode="const"))
    timed("generate", lambda: stages.generate(g, z, 0.7, store_size))
    pixels = stages.store_pixels(images, store_size).cpu()  # (B, S, S, 3) uint8
    images01 = annotation.to_float_images(pixels).to(device)  # (B, 3, S, S)
    nets = models.annotators  # modality -> its network
    labels = timed("mask", lambda: nets["mask"].parse(images01).labels.cpu().numpy())
    edges = timed("sketch", lambda: extract_sketch(pixels.numpy(), sketch_cfg))
    timed("flame", lambda: nets["flame"].flame159(ffhq_crop_for_deca(images01)).cpu())
    timed("farl", lambda: nets["farl"].encode_image(images01).cpu())
    rgb = pixels.numpy()
    timed("png", lambda: [(encode_png(rgb[j]), encode_png(labels[j]), encode_png(edges[j]))
                          for j in range(len(indices))])
    return seconds


def bare_shard(models, n: int, batch: int, store_size: int, sketch_cfg, clock: Clock
               ) -> dict[str, float]:
    """bare_stages summed over samples 0..n-1 in batches of `batch`."""
    total: dict[str, float] = {}
    for start in range(0, n, batch):
        part = bare_stages(models, list(range(start, min(start + batch, n))), store_size, sketch_cfg, clock)
        total = {k: total.get(k, 0.0) + v for k, v in part.items()}
    return total


def _params(batch: int, out: str, device: str, n: int | None = None) -> dict:
    n = n or batch
    return dict(preset=PRESET, n_samples=n, samples_per_shard=n, batch_size=batch, seed=0,
                out=out, modalities=list(MODALITIES), device=device)


def library_stages(models, batch: int, n: int, out: str, device: str, clock: Clock
                   ) -> tuple[float, dict[str, float]]:
    """Seconds of run.run_shard for one shard of n samples in batches of `batch`, and its
    per-stage wall seconds (shard stats)."""
    from mm2latent.synth import run
    from mm2latent.synth.params import parse_params

    params = parse_params(**_params(batch, out, device, n))
    run.plan(params)
    start = clock()
    stats = run.run_shard(params, 0, models=models)
    return clock() - start, stats.durations_s


def flow_seconds(batch: int, n: int, out: str, device: str, clock: Clock) -> float:
    """Seconds of the synth-data flow for one shard of n samples (its cached models already built)."""
    from flows.synth_data import synth_data
    from mm2latent.synth.params import parse_params

    params = parse_params(**_params(batch, out, device, n))  # validated before the run, as the CLI does
    start = clock()
    synth_data(params)
    return clock() - start


def _warm_flow_models(device: str, out: str) -> None:
    """Build the flow's shared models untimed (the flow caches one preset's networks)."""
    from mm2latent.synth.params import parse_params
    from tasks.synth import _shared_models

    _shared_models(parse_params(**_params(1, out, device)))


def shard_size(batch: int, min_shard: int) -> int:
    """Samples per shard at this batch size: whole batches, at least min_shard samples.

    A shard has fixed costs (parquet, stats marker, Prefect task state) that real shards of
    hundreds of samples amortise; a one-batch shard at batch 1 would charge them all to one sample.
    """
    return batch * max(1, -(-min_shard // batch))


def _print_table(batches: list[int], min_shard: int, bare: dict, lib: dict, lib_stage: dict,
                 flow: dict, clock_name: str) -> None:
    """Seconds per sample per stage (medians) and the efficiency of each path."""
    med = statistics.median
    print(f"\n{clock_name} seconds per sample, medians over repeats (bare = plain batched forward passes)")
    print("batch  " + " ".join(f"{s:>9s}" for s in BARE_STAGES) + "  bare-sum   library      flow")
    for b in batches:
        n = shard_size(b, min_shard)
        per = {s: med([r[s] for r in bare[b]]) / n for s in BARE_STAGES}
        total = sum(per.values())
        row = f"{b:5d}  " + " ".join(f"{per[s]:9.3f}" for s in BARE_STAGES)
        row += f"  {total:8.3f}  {med(lib[b]) / n:8.3f}"
        row += f"  {med(flow[b]) / n:8.3f}" if flow[b] else "         -"
        print(row)
    print("\nefficiency = bare-sum / path (target >= 0.9); generate = library generate stage / bare synthesis")
    for b in batches:
        total = sum(med([r[s] for r in bare[b]]) for s in BARE_STAGES)
        generate = med([r["generate"] for r in bare[b]]) / med([r["synthesis"] for r in bare[b]])
        n = shard_size(b, min_shard)
        stages = ", ".join(f"{k} {med([d[k] for d in lib_stage[b]]) / n:.3f}" for k in sorted(lib_stage[b][0]))
        line = f"batch {b:3d}: library {total / med(lib[b]):.3f}"
        line += f"  flow {total / med(flow[b]):.3f}" if flow[b] else "  flow -"
        print(line + f"  generate/bare synthesis {generate:.3f}   library stages (wall s/sample): {stages}")


def run_stages(args: argparse.Namespace) -> None:
    """Interleave bare, library and flow at every batch size, `args.repeats` times; print the table."""
    from mm2latent.presets import get_preset
    from mm2latent.synth.models import build_synth_models

    register_preset()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    preset = get_preset(PRESET)
    models = build_synth_models(preset, MODALITIES, args.device)
    with_flow = args.paths != "library"  # the library path always runs: it gives the stage split
    bare: dict = {b: [] for b in args.batches}
    lib: dict = {b: [] for b in args.batches}
    lib_stage: dict = {b: [] for b in args.batches}
    flow: dict = {b: [] for b in args.batches}
    with tempfile.TemporaryDirectory(prefix="synth-stages-") as tmp, contextlib.ExitStack() as stack:
        if with_flow:
            stack.enter_context(harness())
            _warm_flow_models(args.device, os.path.join(tmp, "warm"))
        bare_stages(models, [0], preset.store_size, preset.sketch, clock)  # warm-up: first calls pick kernels
        for repeat in range(args.repeats):
            for b in args.batches:
                n = shard_size(b, args.min_shard)
                bare[b].append(bare_shard(models, n, b, preset.store_size, preset.sketch, clock))
                seconds, durations = library_stages(models, b, n, os.path.join(tmp, f"lib-{repeat}-{b}"),
                                                    args.device, clock)
                lib[b].append(seconds)
                lib_stage[b].append(durations)
                if with_flow:
                    flow[b].append(flow_seconds(b, n, os.path.join(tmp, f"flow-{repeat}-{b}"),
                                                args.device, clock))
                bare_sum = sum(bare[b][-1][s] for s in BARE_STAGES)
                print(f"repeat {repeat} batch {b} (shard of {n}): bare-sum {bare_sum / n:.3f} s/sample, "
                      f"library {lib[b][-1] / n:.3f}" + (f", flow {flow[b][-1] / n:.3f}" if with_flow else "")
                      + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
    _print_table(args.batches, args.min_shard, bare, lib, lib_stage, flow, args.clock)
